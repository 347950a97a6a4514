"""Brute-force reference forms of every measure, written apart from the library.

Everything here builds explicit n×n matrices, loops over samples, or leans on scipy routines
the library does not use (cdist, subspace_angles, orthogonal_procrustes), so that a mistake in
the library's algebra cannot hide in the reference too. Only for small n.
"""

import itertools

import numpy as np
from scipy.linalg import orthogonal_procrustes, subspace_angles
from scipy.spatial.distance import cdist, pdist

EPS = np.finfo(np.float64).eps
"""Machine epsilon of float64, 2⁻⁵²: one rounding moves a value by at most ε/2 of it."""


def rounding(terms, scale=1.0):
    """An upper bound on the float64 rounding error of a sum of ``terms`` values whose
    absolute values add up to ``scale``: terms·ε·scale.

    First-order worst case of recursive summation (Higham, Accuracy and Stability of Numerical
    Algorithms, §4.2), so it holds for any summation order, BLAS kernel, thread count or CPU;
    pairwise and blocked sums do better. ``scale`` is Σ|terms|, not |Σ terms|: cancellation is
    where the relative error grows.
    """
    return terms * EPS * scale


def centering(n):
    return np.eye(n) - np.ones((n, n)) / n


def gram(X, kernel="linear", sigma=None):
    X = np.asarray(X, dtype=np.float64)
    if kernel == "linear":
        return X @ X.T
    if sigma is None:
        sigma = np.sqrt(np.median(pdist(X, "sqeuclidean")))
    return np.exp(-cdist(X, X, "sqeuclidean") / (2 * sigma**2))


def ka(K, L):
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def hsic_biased(K, L):
    n = K.shape[0]
    H = centering(n)
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def hsic_unbiased(K, L):
    """Song et al. (2012), eq. (5), with explicit zero-diagonal matrices."""
    n = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ Kt @ Lt @ one)
    ) / (n * (n - 3))


def hsic_u_statistic(K, L):
    """HSIC as a sum of three U-statistics over distinct indices, by plain loops (tiny n).

    E[k(x,x')l(y,y')] + E[k(x,x')] E[l(y,y')] − 2 E[k(x,x') l(y,y'')], each term averaged over
    ordered tuples of distinct sample indices.
    """
    n = K.shape[0]
    pairs = list(itertools.permutations(range(n), 2))
    triples = list(itertools.permutations(range(n), 3))
    quads = list(itertools.permutations(range(n), 4))
    first = np.mean([K[i, j] * L[i, j] for i, j in pairs])
    second = np.mean([K[i, j] * L[q, r] for i, j, q, r in quads])
    third = np.mean([K[i, j] * L[i, q] for i, j, q in triples])
    return first + second - 2 * third


def cka_lange(K, L):
    H = centering(K.shape[0])
    Kc, Lc = H @ K @ H, H @ L @ H
    np.fill_diagonal(Kc, 0)
    np.fill_diagonal(Lc, 0)
    return ka(Kc, Lc)


def cka(K, L, estimator="biased"):
    if estimator == "lange":
        return cka_lange(K, L)
    h = hsic_biased if estimator == "biased" else hsic_unbiased
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


def mmd2(X, Y, kernel="rbf", sigma=None, estimator="unbiased"):
    """By loops over explicit kernel evaluations."""
    X, Y = np.asarray(X, float), np.asarray(Y, float)
    if kernel == "rbf" and sigma is None:
        sigma = np.sqrt(np.median(pdist(np.vstack([X, Y]), "sqeuclidean")))

    def k(a, b):
        if kernel == "linear":
            return float(a @ b)
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2)))

    m, n = len(X), len(Y)
    if estimator == "linear":
        h = [
            k(X[2 * i], X[2 * i + 1])
            + k(Y[2 * i], Y[2 * i + 1])
            - k(X[2 * i], Y[2 * i + 1])
            - k(X[2 * i + 1], Y[2 * i])
            for i in range(n // 2)
        ]
        return np.mean(h)
    xy = np.mean([k(a, b) for a in X for b in Y])
    if estimator == "biased":
        xx = np.mean([k(a, b) for a in X for b in X])
        yy = np.mean([k(a, b) for a in Y for b in Y])
    else:
        xx = np.mean([k(X[i], X[j]) for i in range(m) for j in range(m) if i != j])
        yy = np.mean([k(Y[i], Y[j]) for i in range(n) for j in range(n) if i != j])
    return xx + yy - 2 * xy


def _normalised_centred(X):
    Xc = X - X.mean(axis=0)
    return Xc / np.linalg.norm(Xc)


def procrustes(X, Y):
    """1 − ½ min_Q ‖X̂ − ŶQ‖²_F over orthogonal Q, both sides zero-padded to one width."""
    Xh, Yh = _normalised_centred(np.asarray(X, float)), _normalised_centred(np.asarray(Y, float))
    width = max(Xh.shape[1], Yh.shape[1])
    Xp = np.pad(Xh, ((0, 0), (0, width - Xh.shape[1])))
    Yp = np.pad(Yh, ((0, 0), (0, width - Yh.shape[1])))
    Q, _ = orthogonal_procrustes(Yp, Xp)
    return 1 - 0.5 * np.sum((Xp - Yp @ Q) ** 2)


def canonical_correlations(X, Y):
    """Cosines of the principal angles between the centred column spaces."""
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    return np.cos(subspace_angles(Xc, Yc))


def cca(X, Y, squared=False):
    rho = canonical_correlations(np.asarray(X, float), np.asarray(Y, float))
    return np.mean(rho**2 if squared else rho)


def svcca(X, Y, variance=0.99):
    def reduce(A):
        Ac = A - A.mean(axis=0)
        U, s, _ = np.linalg.svd(Ac, full_matrices=False)
        share = np.cumsum(s**2) / np.sum(s**2)
        keep = next(i + 1 for i, v in enumerate(share) if v >= variance - 1e-12)
        return U[:, :keep] * s[:keep]

    return cca(reduce(np.asarray(X, float)), reduce(np.asarray(Y, float)))


def cosine_neighbours(X, k):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T
    result = []
    for i in range(len(X)):
        order = sorted((j for j in range(len(X)) if j != i), key=lambda j: -S[i, j])
        result.append(set(order[:k]))
    return result, S


def mutual_knn(X, Y, k):
    nx, _ = cosine_neighbours(np.asarray(X, float), k)
    ny, _ = cosine_neighbours(np.asarray(Y, float), k)
    return np.mean([len(a & b) / k for a, b in zip(nx, ny, strict=True)])


def cknna(X, Y, k):
    """Dense n×n masks and kernels, then the unbiased HSIC of the masked matrices."""
    n = len(X)
    nx, K = cosine_neighbours(np.asarray(X, float), k)
    ny, L = cosine_neighbours(np.asarray(Y, float), k)
    MK, ML = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        MK[i, list(nx[i])] = 1
        ML[i, list(ny[i])] = 1
    M = MK * ML
    return hsic_unbiased(M * K, M * L) / np.sqrt(
        hsic_unbiased(MK * K, MK * K) * hsic_unbiased(ML * L, ML * L)
    )


def distance_alignment(X, Y):
    Dx = cdist(X, X, "sqeuclidean")
    Dy = cdist(Y, Y, "sqeuclidean")
    return np.mean((Dx - Dy) ** 2)
