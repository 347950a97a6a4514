"""Maximum mean discrepancy between two samples in one space (docs/design.md §3)."""

import numpy as np

from repalign.blocks import row_slices
from repalign.errors import RowMismatchError
from repalign.measures.kernels import _rbf_gram, resolve_sigma
from repalign.registry import MEASURES
from repalign.validation import check_option, check_sigma, check_two_samples

MMD_KERNELS = MEASURES["mmd2"].kernels
MMD_ESTIMATORS = MEASURES["mmd2"].estimators


def mmd2(X, Y, *, kernel="rbf", sigma="median", estimator="unbiased"):
    """Squared maximum mean discrepancy between the distributions of the rows of X and of Y.

        biased    MMD²_b = mean(Kₓₓ) + mean(K_yy) − 2 mean(Kₓ_y)            (V-statistic)
        unbiased  MMD²_u = Σ_{i≠j} k(xᵢ,xⱼ)/(m(m−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(n(n−1))
                           − 2 Σᵢⱼ k(xᵢ,yⱼ)/(mn)                              (U-statistic)
        linear    MMD²_l = (1/⌊n/2⌋) Σᵢ h(zᵢ), zᵢ = (x₂ᵢ, x₂ᵢ₊₁, y₂ᵢ, y₂ᵢ₊₁),
                  h = k(x₂ᵢ,x₂ᵢ₊₁) + k(y₂ᵢ,y₂ᵢ₊₁) − k(x₂ᵢ,y₂ᵢ₊₁) − k(x₂ᵢ₊₁,y₂ᵢ)

    Unlike the other measures, X and Y are not paired: they are two samples in the same space
    (equal widths), compared as distributions, e.g. a layer before and after fine-tuning.

    Parameters
    ----------
    X : array-like of shape (m_samples, n_features)
    Y : array-like of shape (n_samples, n_features)
        m and n may differ, except for the "linear" estimator, which pairs rows.
    kernel : {"rbf", "linear"}, default="rbf"
    sigma : float or "median", default="median"
        RBF bandwidth; "median" is the median heuristic on the pooled sample [X; Y].
    estimator : {"unbiased", "biased", "linear"}, default="unbiased"

    Returns
    -------
    float
        MMD²_b ≥ 0 and is exactly 0 for identical samples. MMD²_u and MMD²_l are unbiased
        and may be negative; they are returned as computed.

    Notes
    -----
    RBF unbiased and biased: O((m+n)²·d) time and O((m+n)²) memory. The linear kernel uses
    mean embeddings, O((m+n)·d). The linear-time estimator is O(n·d) for either kernel.

    References
    ----------
    Gretton, Borgwardt, Rasch, Schölkopf & Smola (2012). A Kernel Two-Sample Test, JMLR 13:
    eq. (3) (unbiased), eq. (5) (biased), Lemma 14 (linear time).
    """
    check_option(kernel, name="kernel", allowed=MMD_KERNELS)
    check_option(estimator, name="estimator", allowed=MMD_ESTIMATORS)
    sigma = check_sigma(sigma)
    X, Y = check_two_samples(X, Y)
    if estimator == "linear" and X.shape[0] != Y.shape[0]:
        raise RowMismatchError(
            "the 'linear' estimator pairs the rows of X and Y, so they need equal row counts; "
            f"got X.shape={X.shape}, Y.shape={Y.shape}."
        )
    if kernel == "rbf":
        sigma = resolve_sigma(np.concatenate([X, Y]), sigma, name="the pooled sample [X; Y]")
    if estimator == "linear":
        return _linear_time(X, Y, kernel, sigma)
    if kernel == "linear":
        return _linear_kernel(X, Y, biased=estimator == "biased")
    return _rbf(X, Y, sigma, biased=estimator == "biased")


def _rbf(X, Y, sigma, *, biased):
    m = X.shape[0]
    K = _rbf_gram(np.concatenate([X, Y]), sigma)
    Kxx, Kyy, Kxy = K[:m, :m], K[m:, m:], K[:m, m:]
    if biased:
        return float(Kxx.mean() + Kyy.mean() - 2.0 * Kxy.mean())
    n = Y.shape[0]
    within_x = (Kxx.sum() - np.trace(Kxx)) / (m * (m - 1))
    within_y = (Kyy.sum() - np.trace(Kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * Kxy.mean())


def _linear_kernel(X, Y, *, biased):
    """Linear kernel from mean embeddings: MMD²_b = ‖x̄ − ȳ‖², and for the U-statistic
    Σ_{i≠j}⟨xᵢ, xⱼ⟩ = ‖Σxᵢ‖² − Σ‖xᵢ‖². Rows are first shifted by the pooled mean (MMD is
    invariant to a common translation), which keeps the differences well conditioned."""
    center = (X.sum(axis=0, dtype=np.float64) + Y.sum(axis=0, dtype=np.float64)) / (
        X.shape[0] + Y.shape[0]
    )
    (sum_x, sq_x), (sum_y, sq_y) = (_sum_and_squares(A, center) for A in (X, Y))
    m, n = X.shape[0], Y.shape[0]
    if biased:
        difference = sum_x / m - sum_y / n
        return float(difference @ difference)
    within_x = (sum_x @ sum_x - sq_x) / (m * (m - 1))
    within_y = (sum_y @ sum_y - sq_y) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * (sum_x @ sum_y) / (m * n))


def _sum_and_squares(A, center):
    """Σᵢ (aᵢ − c) and Σᵢ ‖aᵢ − c‖², in float64 block by block."""
    total, squares = np.zeros(A.shape[1]), 0.0
    for rows in row_slices(A.shape[0], A.shape[1]):
        block = A[rows] - center
        total += block.sum(axis=0)
        squares += np.einsum("ij,ij->", block, block)
    return total, squares


def _linear_time(X, Y, kernel, sigma):
    half = X.shape[0] // 2
    x0, x1 = X[0 : 2 * half : 2], X[1 : 2 * half : 2]
    y0, y1 = Y[0 : 2 * half : 2], Y[1 : 2 * half : 2]
    h = (
        _rowwise_kernel(x0, x1, kernel, sigma)
        + _rowwise_kernel(y0, y1, kernel, sigma)
        - _rowwise_kernel(x0, y1, kernel, sigma)
        - _rowwise_kernel(x1, y0, kernel, sigma)
    )
    return float(h.mean())


def _rowwise_kernel(A, B, kernel, sigma):
    """k(aᵢ, bᵢ) for each row i."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if kernel == "linear":
        return np.einsum("ij,ij->i", A, B)
    difference = A - B
    return np.exp(np.einsum("ij,ij->i", difference, difference) / (-2.0 * sigma * sigma))
