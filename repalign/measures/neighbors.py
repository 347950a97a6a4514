"""Nearest-neighbour alignment: mutual k-NN and CKNNA (Huh et al. 2024).

Neighbours are by cosine similarity: rows are L2-normalised, each row's own index is
excluded, and the k most similar rows are its neighbours (ties are broken arbitrarily but
deterministically). Neighbour search is exact and blocked: O(n²·d) time, O(n·k) memory plus
one block of similarities; no n×n matrix is held.
"""

from functools import cached_property

import numpy as np

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
    neighbors = [
        NeighborSets(*nearest_neighbors(_unit_rows(A, name), k)) for A, name in ((X, "X"), (Y, "Y"))
    ]
    return mutual_knn_from_neighbors(*neighbors)


def mutual_knn_from_neighbors(neighbors_x, neighbors_y):
    """Mutual k-NN from the `NeighborSets` of X and Y: the shared (row, neighbour) entries
    over n·k."""
    shared, _ = neighbors_x.shared_with(neighbors_y)
    return float(shared.sum() / neighbors_x.keys.size)


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
    neighbors = [
        NeighborSets(*nearest_neighbors(_unit_rows(A, name), k)) for A, name in ((X, "X"), (Y, "Y"))
    ]
    return cknna_from_neighbors(*neighbors)


def cknna_from_neighbors(neighbors_x, neighbors_y):
    """CKNNA from the `NeighborSets` of X and Y."""
    shared, positions = neighbors_x.shared_with(neighbors_y)
    keys = neighbors_x.keys[shared]
    n = neighbors_x.n
    cross = _song_on_entries(
        n, keys, neighbors_x.similarities[shared], neighbors_y.similarities[positions[shared]]
    )
    for sets, name in ((neighbors_x, "X"), (neighbors_y, "Y")):
        if not sets.hsic > 0:
            raise ZeroVarianceError(
                f"CKNNA is undefined: the k-NN kernel of {name} has no variation "
                f"(HSIC_u = {sets.hsic:.3g}); try a larger k."
            )
    return float(cross / np.sqrt(neighbors_x.hsic * neighbors_y.hsic))


class NeighborSets:
    """The k nearest neighbours of every row of one representation, as the n·k entries of its
    k-NN kernel M_K∘K: entry (i, j) has key i·n + j and value K_ij, the cosine similarity.

    Keys are sorted, so the entries two representations share (the mutual mask M = M_K∘M_L)
    come from one binary search, O(n·k·log(n·k)) per pair: an all-pairs job builds this once
    per representation and never an n×n matrix.

    Parameters
    ----------
    indices, similarities : ndarray of shape (n_samples, k)
        As `nearest_neighbors` returns them.
    """

    def __init__(self, indices, similarities):
        self.n = indices.shape[0]
        keys = np.arange(self.n)[:, None] * self.n + indices
        order = np.argsort(keys, axis=1)
        self.keys = np.take_along_axis(keys, order, axis=1).ravel()
        self.similarities = np.take_along_axis(similarities, order, axis=1).ravel()

    def shared_with(self, other):
        """A mask of this set's entries that ``other`` also has, and where each lies in
        ``other``'s entries (meaningful where the mask is true)."""
        positions = np.searchsorted(other.keys, self.keys).clip(max=other.keys.size - 1)
        return other.keys[positions] == self.keys, positions

    @cached_property
    def hsic(self):
        """HSIC_u(M_K∘K, M_K∘K), CKNNA's normaliser for this representation."""
        return _song_on_entries(self.n, self.keys, self.similarities, self.similarities)


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


def _song_on_entries(n, keys, a, b):
    """HSIC_u of two n×n matrices A, B with zero diagonals that are zero outside the sorted
    entries ``keys`` (key i·n + j), where they hold ``a`` and ``b`` (`song_hsic`).

    Tr(AB) = Σᵢⱼ Aᵢⱼ Bⱼᵢ pairs each entry with its transpose, found by binary search;
    1ᵀAB1 = Σⱼ (column sums of A)ⱼ (row sums of B)ⱼ.
    """
    if keys.size == 0:
        return 0.0
    rows, columns = np.divmod(keys, n)
    transposed = columns * n + rows
    positions = np.searchsorted(keys, transposed).clip(max=keys.size - 1)
    found = keys[positions] == transposed
    trace = a[found] @ b[positions[found]]
    cross_sum = np.bincount(columns, a, minlength=n) @ np.bincount(rows, b, minlength=n)
    return song_hsic(n, trace=trace, sum_r=a.sum(), sum_s=b.sum(), cross_sum=cross_sum)
