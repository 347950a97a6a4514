"""Nearest-neighbour alignment: mutual k-NN and CKNNA (Huh et al. 2024).

Neighbours are by cosine similarity: rows are L2-normalised, each row's own index is
excluded, and the k most similar rows are its neighbours (ties are broken arbitrarily but
deterministically). Neighbour search is exact and blocked: O(n²·d) time, O(n·k) memory plus
one block of similarities; no n×n matrix is held.
"""

import numpy as np
from scipy import sparse

from repalign.blocks import row_slices
from repalign.errors import ZeroVarianceError
from repalign.measures.kernel_products import song_hsic
from repalign.validation import check_int_in_range, check_pair


def mutual_knn(X, Y, *, k=10):
    """Mutual k-nearest-neighbour alignment.

        mutual_knn = (1/n) Σᵢ |N_X(i) ∩ N_Y(i)| / k

    with N_X(i) the k nearest neighbours of row i of X by cosine similarity, itself excluded.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
        Paired; no row may be all zeros (its cosine similarity is undefined).
    k : int, default=10
        1 ≤ k ≤ n_samples − 1.

    Returns
    -------
    float
        In [0, 1]; about k/(n−1) for unrelated representations.

    References
    ----------
    Huh, Cheung, Wang & Isola (2024). The Platonic Representation Hypothesis, ICML.
    """
    X, Y, k = _check(X, Y, k)
    neighbors_x, _ = nearest_neighbors(_unit_rows(X, "X"), k)
    neighbors_y, _ = nearest_neighbors(_unit_rows(Y, "Y"), k)
    return mutual_knn_from_neighbors(neighbors_x, neighbors_y)


def mutual_knn_from_neighbors(neighbors_x, neighbors_y):
    """Mutual k-NN from two (n, k) arrays of neighbour indices (`nearest_neighbors`)."""
    both = np.sort(np.concatenate([neighbors_x, neighbors_y], axis=1), axis=1)
    shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)  # each set has distinct members
    return float(shared.mean() / neighbors_x.shape[1])


def cknna(X, Y, *, k=10):
    """Centered kernel nearest-neighbour alignment (CKNNA).

        CKNNA = HSIC_u(M∘K, M∘L) / sqrt(HSIC_u(M_K∘K, M_K∘K) · HSIC_u(M_L∘L, M_L∘L))

    K, L are the cosine-similarity kernels of X and Y; M_K[i, j] = 1 when j is one of the
    k nearest neighbours of i under K (i excluded), M_L likewise, M = M_K∘M_L; HSIC_u is the
    unbiased estimator of `repalign.hsic` applied to these (non-symmetric) matrices, with
    Tr(AB) = Σᵢⱼ Aᵢⱼ Bⱼᵢ. It is CKA restricted to pairs that are neighbours in both.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
        Paired; n_samples ≥ 4; no row may be all zeros.
    k : int, default=10
        1 ≤ k ≤ n_samples − 1.

    Returns
    -------
    float
        Returned as computed; it can be negative.

    References
    ----------
    Huh, Cheung, Wang & Isola (2024). The Platonic Representation Hypothesis, ICML, §A.
    """
    X, Y, k = _check(X, Y, k, min_rows=4)
    neighbors = [nearest_neighbors(_unit_rows(A, name), k) for A, name in ((X, "X"), (Y, "Y"))]
    return cknna_from_neighbors(*neighbors)


def cknna_from_neighbors(neighbors_x, neighbors_y):
    """CKNNA from the (indices, similarities) pairs that `nearest_neighbors` gives X and Y."""
    neighbors = (neighbors_x, neighbors_y)
    n = neighbors_x[0].shape[0]
    kernels = [_sparse_rows(n, idx, values) for idx, values in neighbors]
    masks = [_sparse_rows(n, idx, np.ones_like(values)) for idx, values in neighbors]
    mutual = masks[0].multiply(masks[1])
    cross = _sparse_song(kernels[0].multiply(mutual), kernels[1].multiply(mutual))
    selfs = [_sparse_song(G, G) for G in kernels]
    for value, name in zip(selfs, ("X", "Y"), strict=True):
        if not value > 0:
            raise ZeroVarianceError(
                f"CKNNA is undefined: the k-NN kernel of {name} has no variation "
                f"(HSIC_u = {value:.3g}); try a larger k."
            )
    return float(cross / np.sqrt(selfs[0] * selfs[1]))


def nearest_neighbors(U, k):
    """Indices and similarities of the k rows most similar to each row of ``U`` (itself excluded).

    ``U`` has unit-norm float64 rows, so similarity is the cosine. Returns two (n, k) arrays,
    each row sorted from most to least similar.
    """
    n = U.shape[0]
    indices = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k))
    for rows in row_slices(n, n):
        S = U[rows] @ U.T
        S[np.arange(S.shape[0]), np.arange(rows.start, rows.stop)] = -np.inf
        top = np.argpartition(-S, k - 1, axis=1)[:, :k]
        top_values = np.take_along_axis(S, top, axis=1)
        order = np.argsort(-top_values, axis=1, kind="stable")
        indices[rows] = np.take_along_axis(top, order, axis=1)
        values[rows] = np.take_along_axis(top_values, order, axis=1)
    return indices, values


def _check(X, Y, k, *, min_rows=2):
    X, Y = check_pair(X, Y, min_rows=min_rows)
    n = X.shape[0]
    k = check_int_in_range(k, name="k", low=1, high=n - 1, why=f" (n_samples − 1 with n={n})")
    return X, Y, k


def _unit_rows(A, name):
    A = np.asarray(A, dtype=np.float64)
    norms = np.linalg.norm(A, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ZeroVarianceError(
            f"{name} has {zero.size} rows of zero norm (the first is row {zero[0]}); "
            "cosine similarity is undefined for them."
        )
    return A / norms[:, None]


def _sparse_rows(n, indices, values):
    rows = np.repeat(np.arange(n), indices.shape[1])
    return sparse.csr_array((values.ravel(), (rows, indices.ravel())), shape=(n, n))


def _sparse_song(A, B):
    """HSIC_u of two sparse matrices with zero diagonals, without densifying them."""
    n = A.shape[0]
    return song_hsic(
        n,
        trace=A.multiply(B.T).sum(),
        sum_r=A.sum(),
        sum_s=B.sum(),
        cross_sum=np.asarray(A.sum(axis=0)) @ np.asarray(B.sum(axis=1)),
    )
