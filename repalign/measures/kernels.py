"""Kernels on representations: Gram matrices and the median bandwidth (docs/design.md §3).

    linear  k(x, y) = ⟨x, y⟩
    rbf     k(x, y) = exp(−‖x − y‖² / (2σ²))

``sigma="median"`` sets σ = sqrt(median of ‖xᵢ − xⱼ‖² over pairs i < j), the median heuristic
(Gretton et al. 2012, §8), computed on a seeded subsample of `MEDIAN_MAX_ROWS` rows when n is
larger. Gram matrices cost O(n²·d) time and O(n²) memory.
"""

import numpy as np

from repalign.errors import ZeroVarianceError
from repalign.validation import check_representation, check_sigma

MEDIAN_MAX_ROWS = 4096
"""Rows used by the median heuristic; larger inputs are subsampled without replacement."""

MEDIAN_SEED = 0
"""Seed of the median heuristic's subsample (``numpy.random.default_rng``)."""


def linear_gram(X):
    """Linear Gram matrix K = X Xᵀ, shape (n, n), in float64.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    """
    X = check_representation(X, name="X", min_rows=1)
    return _linear_gram(X)


def rbf_gram(X, sigma="median"):
    """Gaussian Gram matrix Kᵢⱼ = exp(−‖xᵢ − xⱼ‖² / (2σ²)), shape (n, n), in float64.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    sigma : float or "median", default="median"
        Bandwidth σ > 0, or the median heuristic (see `median_sigma`).
    """
    X = check_representation(X, name="X", min_rows=2)
    return _rbf_gram(X, resolve_sigma(X, check_sigma(sigma), name="X"))


def median_sigma(X):
    """Median heuristic bandwidth σ = sqrt(median_{i<j} ‖xᵢ − xⱼ‖²).

    On more than `MEDIAN_MAX_ROWS` rows it uses a subsample of that many rows drawn without
    replacement with seed `MEDIAN_SEED`, so the value is deterministic.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    """
    X = check_representation(X, name="X", min_rows=2)
    return resolve_sigma(X, "median", name="X")


def resolve_sigma(X, sigma, *, name):
    """σ itself, or the median heuristic on checked input ``X`` when ``sigma == "median"``."""
    if sigma != "median":
        return sigma
    if X.shape[0] > MEDIAN_MAX_ROWS:
        rng = np.random.default_rng(MEDIAN_SEED)
        X = X[np.sort(rng.choice(X.shape[0], MEDIAN_MAX_ROWS, replace=False))]
    distances = _squared_distances(np.asarray(X, dtype=np.float64))
    median = float(np.median(distances[np.triu(np.ones(distances.shape, dtype=bool), k=1)]))
    if median <= 0:
        raise ZeroVarianceError(
            f"the median heuristic gives sigma=0 for {name}: more than half of its pairs of "
            "rows are identical; pass sigma as a positive number."
        )
    return float(np.sqrt(median))


def _linear_gram(X):
    X = np.asarray(X, dtype=np.float64)
    return X @ X.T


def _rbf_gram(X, sigma):
    D = _squared_distances(np.asarray(X, dtype=np.float64))
    return np.exp(D / (-2.0 * sigma * sigma), out=D)


def _cross_squared_distances(A, B):
    """‖aᵢ − bⱼ‖² for the rows of A and B, on rows shifted by their common mean; clipped at 0."""
    center = (A.sum(axis=0) + B.sum(axis=0)) / (len(A) + len(B))
    A, B = A - center, B - center
    D = A @ B.T
    D *= -2.0
    D += np.einsum("ij,ij->i", A, A)[:, None]
    D += np.einsum("ij,ij->i", B, B)[None, :]
    return np.maximum(D, 0.0, out=D)


def _squared_distances(X):
    """‖xᵢ − xⱼ‖² = ‖xᵢ‖² + ‖xⱼ‖² − 2⟨xᵢ, xⱼ⟩, on centred rows to limit cancellation.

    Rounding can leave tiny negative values: they are set to 0, and the diagonal to exactly 0.
    """
    X = X - X.mean(axis=0)
    norms = np.einsum("ij,ij->i", X, X)
    D = X @ X.T
    D *= -2.0
    D += norms[:, None]
    D += norms[None, :]
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D
