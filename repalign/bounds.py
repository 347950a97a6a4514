"""Bounds, risk estimates and closed forms around kernel alignment (docs/theory.md §2.8, §3, §5).

The quantities of Insulla, Huang & Rosasco (2025) that are not alignments of two
representations: the concentration radius of Lemma 1 and an interval derived from it, the
kernel alignment risk estimator (KARE) and its GCV form, the cumulative power of a target, the
risk bound of Remark 7, and the Gaussian closed forms of mutual information and Wasserstein
distance. Equation tags such as [E30] are those of docs/theory.md, not the paper's.

Every function takes small dense inputs (an n×n Gram matrix, a covariance matrix) and costs up
to O(n³); none is streamed.
"""

import numbers
from dataclasses import dataclass

import numpy as np

from repalign.errors import (
    InvalidParameterError,
    NonFiniteError,
    NotNumericError,
    RowMismatchError,
    ShapeError,
    ZeroVarianceError,
)
from repalign.measures.distance import distance_alignment
from repalign.validation import check_int_in_range, check_representation

__all__ = [
    "KAInterval",
    "bures_wasserstein_squared",
    "cumulative_power",
    "distance_alignment",
    "gaussian_mutual_information",
    "gcv",
    "independence_wasserstein_squared",
    "kare",
    "kare_sweep",
    "kta_risk_bound",
    "lemma1_interval",
    "lemma1_radius",
]

SYMMETRY_RTOL = 1e-10
"""A matrix counts as symmetric when max|A − Aᵀ| ≤ SYMMETRY_RTOL · max|A|."""
PSD_RTOL = 1e-10
"""A symmetric matrix counts as positive semi-definite when its smallest eigenvalue is at
least −PSD_RTOL times its largest absolute eigenvalue (rounding leaves tiny negative ones)."""


# -- Lemma 1 ----------------------------------------------------------------------------------


def lemma1_radius(n, delta=0.05):
    """Lemma 1 of Insulla et al.: the radius of the empirical kernel alignment.

        ε(n, δ) = sqrt(32 · ln(2/δ) / n)                                    [E20]

    As printed in §3.1.3 of the paper: with probability ≥ 1 − δ, Â(K₁ₙ, K₂ₙ) − A(K₁, K₂) ≤ ε.

    Parameters
    ----------
    n : int
        Number of paired samples, n ≥ 1.
    delta : float, default=0.05
        Failure probability, 0 < δ < 1.

    Returns
    -------
    float
        The radius; ≥ 1 (vacuous for KA, which lies in [0, 1]) for n ≤ 118 at δ = 0.05.

    Notes
    -----
    What the appendix (Lemma 4, via McDiarmid) proves is weaker than the main-text statement
    (docs/theory.md §3, §8 item 2): |Â₁₂ − E Â₁₂| ≤ C₁C₂ · ε for the *unnormalised* V-statistic
    Â₁₂ = (1/n²)⟨K₁, K₂⟩_F of kernels bounded by |K_q| ≤ C_q, with E Â₁₂ including the diagonal
    terms. The paper takes C₁C₂ = 1 (e.g. RBF kernels) and applies the radius to the normalised
    KA without proof. `lemma1_interval` gives a rigorous interval for the normalised KA.

    References
    ----------
    Insulla, Huang & Rosasco (2025). Towards a Learning Theory of Representation Alignment,
    Lemma 1 (§3.1.3) and Lemma 4 (App. 6.3).
    """
    n = check_int_in_range(n, name="n", low=1, high=np.iinfo(np.int64).max)
    delta = _check_delta(delta)
    return float(np.sqrt(32.0 * np.log(2.0 / delta) / n))


@dataclass(frozen=True)
class KAInterval:
    """An interval for the population kernel alignment (see `lemma1_interval`).

    Attributes
    ----------
    lower, upper : float
        The interval, within [0, 1].
    radius : float
        r = sqrt(32 ln(6/δ)/n); the V-statistic Â_qq' has radius C_q C_q' · r.
    vacuous : bool
        True when the interval is all of [0, 1]: it says nothing that KA's own range does not.
    """

    lower: float
    upper: float
    radius: float
    vacuous: bool


def lemma1_interval(a, b, c, n, *, delta=0.05, bounds=(1.0, 1.0)):
    """An interval for the population kernel alignment from the unnormalised V-statistics.

    **Derived in docs/theory.md §3 (b) from the appendix's Lemma 4; it is not in the paper.**
    With a = Â₁₂, b = Â₁₁, c = Â₂₂, where Â_qq' = (1/n²)⟨K_q, K_q'⟩_F, kernels bounded by
    |K_q| ≤ C_q, and the McDiarmid radius of Lemma 4 taken at level δ/3 for each of the three
    statistics (a union bound):

        r     = sqrt(32 ln(6/δ) / n)
        ε₁₂   = C₁C₂ r,   ε₁₁ = C₁² r,   ε₂₂ = C₂² r
        lower = max(0, (a − ε₁₂) / sqrt((b + ε₁₁)(c + ε₂₂)))
        upper = min(1, (a + ε₁₂) / sqrt((b − ε₁₁)(c − ε₂₂)))   (1 if b ≤ ε₁₁ or c ≤ ε₂₂)

    With probability ≥ 1 − δ over the n paired samples, [lower, upper] contains
    A = A₁₂ / sqrt(A₁₁A₂₂), A_qq' = E Â_qq', because A is increasing in A₁₂ and decreasing in
    A₁₁ and A₂₂ for positive semi-definite kernels (A₁₂ ≥ 0).

    Parameters
    ----------
    a, b, c : float
        (1/n²)⟨K₁, K₂⟩_F, (1/n²)‖K₁‖²_F and (1/n²)‖K₂‖²_F of positive semi-definite kernels:
        0 ≤ a ≤ C₁C₂, 0 < b ≤ C₁², 0 < c ≤ C₂², up to float64 rounding: a mean of n² values
        ≤ C, summed in any order, exceeds C by at most n²·ε relatively (first order).
    n : int
        Number of paired samples the statistics were computed on, n ≥ 1.
    delta : float, default=0.05
        Failure probability of the whole interval, 0 < δ < 1.
    bounds : (float, float), default=(1.0, 1.0)
        C₁, C₂ > 0 with |K_q(x, x')| ≤ C_q for all x, x'. 1 is exact for RBF kernels and for
        linear kernels on ℓ₂-normalised rows. A bound read off the data (max_i ‖z_q^i‖² for a
        linear kernel) makes the interval heuristic.

    Returns
    -------
    KAInterval
        ``vacuous`` is True when the interval is [0, 1]; this always happens when r ≥ 1
        (n ≤ 32 ln(6/δ), that is n ≤ 153 at δ = 0.05), since b ≤ C₁² and a ≤ C₁C₂.

    Notes
    -----
    The target A_qq' = E Â_qq' includes the diagonal terms i = j, so it differs from the
    population Tr(L_K_q L_K_q') by at most 2C_qC_q'/n (C_qC_q'/n for non-negative kernels such
    as RBF); this interval does not add that term. The constant 32 comes from the appendix's
    bounded-difference step (a change of 4C per entry); it is loose, and the interval is wide.

    References
    ----------
    Insulla, Huang & Rosasco (2025). Towards a Learning Theory of Representation Alignment,
    Lemma 4 (App. 6.3). McDiarmid (1989). On the Method of Bounded Differences.
    """
    n = check_int_in_range(n, name="n", low=1, high=np.iinfo(np.int64).max)
    delta = _check_delta(delta)
    c1, c2 = _check_bounds(bounds)
    a = _check_real(a, name="a")
    b = _check_real(b, name="b")
    c = _check_real(c, name="c")
    rounding = float(n) * float(n) * np.finfo(np.float64).eps
    for value, name, bound, what in (
        (a, "a", c1 * c2, "C₁C₂"),
        (b, "b", c1 * c1, "C₁²"),
        (c, "c", c2 * c2, "C₂²"),
    ):
        if value > bound * (1.0 + rounding):
            raise InvalidParameterError(
                f"{name}={value!r} exceeds its bound {what} = {bound!r}: the kernels are not "
                f"bounded by bounds={bounds!r}, so Lemma 1 does not apply."
            )
    if a < 0:
        raise InvalidParameterError(
            f"a must be >= 0, as ⟨K₁, K₂⟩_F is for positive semi-definite kernels; got a={a!r}."
        )
    for value, name in ((b, "b"), (c, "c")):
        if not value > 0:
            raise ZeroVarianceError(
                f"{name} must be > 0 (a zero kernel has no alignment); got {name}={value!r}."
            )
    r = float(np.sqrt(32.0 * np.log(6.0 / delta) / n))
    e12, e11, e22 = c1 * c2 * r, c1 * c1 * r, c2 * c2 * r
    lower = min(1.0, max(0.0, (a - e12) / np.sqrt((b + e11) * (c + e22))))
    if b <= e11 or c <= e22:
        upper = 1.0
    else:
        upper = min(1.0, (a + e12) / np.sqrt((b - e11) * (c - e22)))
    lower, upper = float(lower), float(upper)
    return KAInterval(lower, upper, r, lower == 0.0 and upper == 1.0)


# -- KARE and task alignment ------------------------------------------------------------------


def kare(K, y, lam):
    """Kernel alignment risk estimator (KARE) of kernel ridge regression, direct form.

        ρ(λ, y, K) = [(1/n) ⟨(K/n + λI)⁻², y yᵀ⟩] / [(1/n) Tr (K/n + λI)⁻¹]²          [E30]

    computed with solves of M = K/n + λI: ⟨M⁻², yyᵀ⟩ = ‖M⁻¹y‖². It estimates the test mean
    squared error of the ridge predictor (K + nλI)α = y from the training data alone; it equals
    `gcv` and `kare_sweep`.

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples)
        Symmetric positive semi-definite Gram matrix of the training inputs.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets. With several outputs the numerator is Σ_k y_kᵀ M⁻² y_k, the sum of the
        outputs' errors (derived, docs/theory.md §5.1), and ρ → (1/n)‖Y‖²_F as λ → ∞.
    lam : float
        Ridge λ > 0, on the K/n scale.

    Returns
    -------
    float
        ρ ≥ 0. Invariant to (K, λ) → (cK, cλ); scaling y by c scales ρ by c²; ρ → (1/n)‖y‖²
        as λ → ∞. O(n³).

    References
    ----------
    Jacot, Şimşek, Spadaro, Hongler & Gabriel (2020). Kernel Alignment Risk Estimator: Risk
    Prediction from Training Data, NeurIPS. Insulla, Huang & Rosasco (2025), App. 6.1.
    """
    K, Y = _check_kernel_and_targets(K, y)
    lam = _check_positive(lam, name="lam")
    n = K.shape[0]
    M = K / n + lam * np.eye(n)
    solved = np.linalg.solve(M, Y)
    inverse_trace = np.trace(np.linalg.solve(M, np.eye(n)))
    return float((np.vdot(solved, solved) / n) / (inverse_trace / n) ** 2)


def gcv(K, y, lam):
    """Generalised cross-validation score of kernel ridge regression.

        GCV(λ) = [(1/n) ‖y − Ŝy‖²] / [(1/n) Tr(I − Ŝ)]²,   Ŝ = K (K + nλI)⁻¹

    Equal to KARE [E30], since the ridge residual is y − Ŝy = λ(K/n + λI)⁻¹y and
    I − Ŝ = λ(K/n + λI)⁻¹ (docs/theory.md §5.1).

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples)
        Symmetric positive semi-definite Gram matrix.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets; several outputs add their squared residuals, as in `kare`.
    lam : float
        Ridge λ > 0, on the K/n scale.

    Returns
    -------
    float
        O(n³).

    References
    ----------
    Craven & Wahba (1978). Smoothing Noisy Data with Spline Functions. Golub, Heath & Wahba
    (1979). Generalized Cross-Validation as a Method for Choosing a Good Ridge Parameter.
    """
    K, Y = _check_kernel_and_targets(K, y)
    lam = _check_positive(lam, name="lam")
    n = K.shape[0]
    smoother = np.linalg.solve(K + n * lam * np.eye(n), K)  # (K + nλI)⁻¹K = K(K + nλI)⁻¹
    residual = Y - smoother @ Y
    return float((np.vdot(residual, residual) / n) / (1.0 - np.trace(smoother) / n) ** 2)


def kare_sweep(K, y, lambdas):
    """KARE [E30] over many ridges from one eigendecomposition.

        K/n = U diag(e) Uᵀ,   aᵢ² = Σ_k (Uᵀy_k)ᵢ²
        ρ(λ) = [(1/n) Σᵢ aᵢ² / (eᵢ + λ)²] / [(1/n) Σᵢ 1 / (eᵢ + λ)]²

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples)
        Symmetric positive semi-definite Gram matrix.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets, as in `kare`.
    lambdas : array-like of shape (n_lambdas,)
        Ridges λ > 0.

    Returns
    -------
    ndarray of shape (n_lambdas,)
        ρ(λ) for each λ, in the given order.

    Notes
    -----
    O(n³) once for the eigendecomposition, then O(n) per λ. Eigenvalues within rounding of 0
    (negative ones allowed by the positive semi-definite check) are set to 0.
    """
    K, Y = _check_kernel_and_targets(K, y)
    lambdas = _check_lambdas(lambdas)
    n = K.shape[0]
    eigenvalues, U = np.linalg.eigh(K / n)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    squared = np.sum((U.T @ Y.reshape(n, -1)) ** 2, axis=1)
    shifted = eigenvalues[:, None] + lambdas[None, :]
    numerator = (squared @ shifted**-2) / n
    denominator = (np.sum(1.0 / shifted, axis=0) / n) ** 2
    return numerator / denominator


def cumulative_power(K, y):
    """Cumulative power of the target along the kernel's eigenvectors, empirical version.

        C(k) = Σ_{i≤k} (uᵢᵀy)² / Σᵢ (uᵢᵀy)²,   K = Σᵢ ηᵢ uᵢuᵢᵀ,  η₁ ≥ η₂ ≥ … ≥ ηₙ

    the empirical form of C(k) = Σ_{i≤k} ηᵢwᵢ² / Σᵢ ηᵢwᵢ² [E31] (docs/theory.md §5.2): the fraction
    of the target's squared norm in the top-k eigenvectors. A faster rise to 1 means a target
    better aligned with the kernel.

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples)
        Symmetric positive semi-definite Gram matrix.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Target, not zero; several outputs add their squared coefficients.

    Returns
    -------
    ndarray of shape (n_samples,)
        C(1), …, C(n): non-decreasing, in [0, 1], with C(n) = 1 exactly.

    Notes
    -----
    Within a repeated eigenvalue the eigenvectors are any basis of its eigenspace, so C(k) for
    k inside such a block depends on that choice; its values at the ends of the block do not.
    O(n³).

    References
    ----------
    Canatar, Bordelon & Pehlevan (2021). Spectral Bias and Task-Model Alignment Explain
    Generalization in Kernel Regression and Infinitely Wide Neural Networks, Nature Comms.
    """
    K, Y = _check_kernel_and_targets(K, y)
    if not np.any(Y):
        raise InvalidParameterError("y must not be zero: the cumulative power of 0 is undefined.")
    _, U = np.linalg.eigh(K)
    power = np.cumsum(np.sum((U[:, ::-1].T @ Y.reshape(len(Y), -1)) ** 2, axis=1))
    return power / power[-1]


def kta_risk_bound(K, y):
    """Remark 7: kernel–target alignment bounds the risk of a simple predictor.

        hᵢ = (1/n) Σⱼ Kᵢⱼ yⱼ / sqrt((1/n²) Σᵢⱼ Kᵢⱼ²)
        R̂(h) = (1/n) Σᵢ (yᵢ − hᵢ)² ≤ 2 (1 − KA(K, yyᵀ))                              [E32]

    the empirical version of docs/theory.md §5.4, which holds deterministically: R̂ = 1 − 2KA +
    mean(h²), and mean(h²) ≤ 1 by Cauchy–Schwarz since yᵢ² = 1. (The square root in the
    denominator of h is the reconstruction of docs/theory.md §8 item 13.)

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples)
        Symmetric positive semi-definite Gram matrix, not zero.
    y : array-like of shape (n_samples,)
        Labels in {−1, +1}.

    Returns
    -------
    risk, bound : float, float
        R̂(h) and 2(1 − KA(K, yyᵀ)), with KA = yᵀKy / (n ‖K‖_F) [E1].

    References
    ----------
    Cristianini, Shawe-Taylor, Elisseeff & Kandola (2006). On Kernel-Target Alignment.
    Cortes, Mohri & Rostamizadeh (2012). Algorithms for Learning Kernels Based on Centered
    Alignment, JMLR 13. Insulla, Huang & Rosasco (2025), Remark 7.
    """
    K, y = _check_kernel_and_targets(K, y)
    if y.ndim != 1:
        raise ShapeError(f"y must be 1-D labels of shape (n_samples,); got shape {y.shape}.")
    wrong = np.flatnonzero(np.abs(y) != 1.0)
    if wrong.size:
        raise InvalidParameterError(
            f"y must hold labels in {{-1, +1}}; got {float(y[wrong[0]])!r} at index {wrong[0]} "
            f"({wrong.size} of {y.size} values are not ±1)."
        )
    n = K.shape[0]
    frobenius = np.sqrt(np.vdot(K, K))
    if not frobenius > 0:
        raise ZeroVarianceError("K is zero: its alignment with any target is undefined.")
    h = (K @ y) / n / (frobenius / n)
    risk = float(np.mean((y - h) ** 2))
    alignment = float(y @ K @ y / (n * frobenius))
    return risk, 2.0 * (1.0 - alignment)


# -- Gaussian closed forms --------------------------------------------------------------------


def gaussian_mutual_information(cov, d1):
    """Mutual information of the two blocks of a joint Gaussian, in nats.

        I = ½ log( |Σ₁| |Σ₂| / |Σ| ),   Σ = [[Σ₁, Σ₁₂], [Σ₂₁, Σ₂]]                       [E16]

    With Σ₁ = I and Σ₂ = I it equals −½ Σᵢ log(1 − ρᵢ²), ρᵢ the canonical correlations [E17].

    Parameters
    ----------
    cov : array-like of shape (d, d)
        Joint covariance, symmetric positive definite.
    d1 : int
        Dimension of the first block, 1 ≤ d1 ≤ d − 1.

    Returns
    -------
    float
        I ≥ 0 (up to rounding), from log-determinants (`numpy.linalg.slogdet`).

    Raises
    ------
    InvalidParameterError
        ``cov`` is singular to working precision (the test of `numpy.linalg.matrix_rank`:
        smallest eigenvalue ≤ d · eps · largest); the information is then infinite.

    References
    ----------
    Insulla, Huang & Rosasco (2025), §3.4.
    """
    cov = _check_covariance(cov, name="cov", definite=True)
    d = cov.shape[0]
    d1 = check_int_in_range(d1, name="d1", low=1, high=d - 1, why=" (two non-empty blocks)")
    logdets = [np.linalg.slogdet(block)[1] for block in (cov[:d1, :d1], cov[d1:, d1:], cov)]
    return float(0.5 * (logdets[0] + logdets[1] - logdets[2]))


def bures_wasserstein_squared(cov_a, cov_b):
    """Squared 2-Wasserstein distance between two mean-zero Gaussians (Bures formula).

        W₂²(N(0, A), N(0, B)) = Tr[ A + B − 2 (A^{1/2} B A^{1/2})^{1/2} ]                 [E18]

    The paper writes W₂ for this squared distance (docs/theory.md §2.8).

    Parameters
    ----------
    cov_a, cov_b : array-like of shape (d, d)
        Covariances, symmetric positive semi-definite.

    Returns
    -------
    float
        ≥ 0 up to rounding (returned as computed: equal inputs may give about −1e-15).

    Notes
    -----
    Square roots come from `numpy.linalg.eigh` of the symmetric matrices, with eigenvalues
    within rounding of 0 (see `PSD_RTOL`) set to 0, not from `scipy.linalg.sqrtm`, which may
    return complex values for a singular input. Only the eigenvalues of A^{1/2}BA^{1/2} are
    needed for the trace of its square root. O(d³). A singular input loses about half the
    digits: an eigenvalue that should be 0 comes out near eps·‖A‖, and its square root, near
    1e-8·sqrt(‖A‖), enters the trace.

    References
    ----------
    Dowson & Landau (1982). The Fréchet Distance between Multivariate Normal Distributions.
    Insulla, Huang & Rosasco (2025), §3.4.
    """
    A = _check_covariance(cov_a, name="cov_a")
    B = _check_covariance(cov_b, name="cov_b")
    if A.shape != B.shape:
        raise ShapeError(
            "cov_a and cov_b must be covariances of one space; "
            f"got cov_a.shape={A.shape}, cov_b.shape={B.shape}."
        )
    eigenvalues, V = np.linalg.eigh(A)
    root = (V * np.sqrt(np.maximum(eigenvalues, 0.0))) @ V.T
    middle = root @ B @ root
    middle = (middle + middle.T) / 2.0
    cross = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(middle), 0.0)))
    return float(np.trace(A) + np.trace(B) - 2.0 * cross)


def independence_wasserstein_squared(rho):
    """W₂² between a whitened joint Gaussian and the product of its marginals.

        W₂²(µ, µ₁ ⊗ µ₂) = 2 Σᵢ (2 − sqrt(1 + ρᵢ) − sqrt(1 − ρᵢ))                       [E19]

    for µ = N(0, [[I, Σ₁₂], [Σ₂₁, I]]), ρᵢ the canonical correlations (singular values of
    Σ₁₂). This is [E18] applied to µ against N(0, I): the joint covariance has eigenvalues
    1 ± ρᵢ (the others 1), each contributing (sqrt(λ) − 1)².

    **Corrected form.** The paper's closed form 2 Σᵢ (1 − sqrt(1 − ρᵢ²)) does not match the
    Bures formula [E18]; for small ρ it is about twice this value (docs/theory.md §2.8, §8 item 7).

    Parameters
    ----------
    rho : array-like of shape (n_correlations,)
        Canonical correlations, 0 ≤ ρᵢ ≤ 1.

    Returns
    -------
    float
        ≥ 0; 0 when every ρᵢ = 0; about ρᵢ²/2 per small ρᵢ.
    """
    rho = _check_finite_array(rho, name="rho")
    if rho.ndim != 1:
        raise ShapeError(f"rho must be 1-D; got an array of shape {rho.shape}.")
    outside = np.flatnonzero((rho < 0) | (rho > 1))
    if outside.size:
        raise InvalidParameterError(
            "rho must hold canonical correlations in [0, 1]; "
            f"got rho[{outside[0]}]={float(rho[outside[0]])!r}."
        )
    return float(2.0 * np.sum(2.0 - np.sqrt(1.0 + rho) - np.sqrt(1.0 - rho)))


# -- input checks -----------------------------------------------------------------------------


def _check_real(value, *, name):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be a real number; got {value!r}.")
    value = float(value)
    if not np.isfinite(value):
        raise InvalidParameterError(f"{name} must be finite; got {name}={value!r}.")
    return value


def _check_positive(value, *, name):
    value = _check_real(value, name=name)
    if not value > 0:
        raise InvalidParameterError(f"{name} must be > 0; got {name}={value!r}.")
    return value


def _check_delta(delta):
    delta = _check_real(delta, name="delta")
    if not 0 < delta < 1:
        raise InvalidParameterError(f"delta must be in (0, 1); got delta={delta!r}.")
    return delta


def _check_bounds(bounds):
    if isinstance(bounds, str) or not hasattr(bounds, "__len__") or len(bounds) != 2:
        raise InvalidParameterError(
            f"bounds must be a pair (C1, C2) of kernel bounds; got {bounds!r}."
        )
    return tuple(_check_positive(bound, name=f"bounds[{q}]") for q, bound in enumerate(bounds))


def _check_lambdas(lambdas):
    lambdas = _check_finite_array(lambdas, name="lambdas")
    if lambdas.ndim != 1 or lambdas.size == 0:
        raise ShapeError(f"lambdas must be a non-empty 1-D array; got shape {lambdas.shape}.")
    bad = np.flatnonzero(~(lambdas > 0))
    if bad.size:
        raise InvalidParameterError(
            f"lambdas must all be > 0; got lambdas[{bad[0]}]={float(lambdas[bad[0]])!r}."
        )
    return lambdas


def _check_finite_array(values, *, name):
    """``values`` as a float64 array: real numbers, all finite."""
    array = np.asarray(values)
    if array.dtype.kind not in "fiub":
        raise NotNumericError(f"{name} must hold real numbers; got dtype {array.dtype}.")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise NonFiniteError(f"{name} holds NaN or infinite values.")
    return array


def _check_square_symmetric(M, *, name, min_rows):
    M = check_representation(M, name=name, min_rows=min_rows, constant_ok=True)
    if M.shape[0] != M.shape[1]:
        raise ShapeError(f"{name} must be a square matrix; got shape {M.shape}.")
    M = np.asarray(M, dtype=np.float64)
    asymmetry = np.max(np.abs(M - M.T))
    if asymmetry > SYMMETRY_RTOL * np.max(np.abs(M)):
        raise InvalidParameterError(
            f"{name} must be symmetric; got max|{name} − {name}ᵀ| = {asymmetry:.3g}."
        )
    return (M + M.T) / 2.0


def _check_covariance(cov, *, name, definite=False):
    """A symmetric positive semi-definite (or definite) matrix, as float64."""
    cov = _check_square_symmetric(cov, name=name, min_rows=1)
    eigenvalues = np.linalg.eigvalsh(cov)
    largest = np.max(np.abs(eigenvalues))
    if definite:
        threshold = cov.shape[0] * np.finfo(np.float64).eps * largest
        if not eigenvalues[0] > threshold:
            raise InvalidParameterError(
                f"{name} must be positive definite; its smallest eigenvalue is "
                f"{eigenvalues[0]:.3g} (largest {largest:.3g})."
            )
    elif eigenvalues[0] < -PSD_RTOL * largest:
        raise InvalidParameterError(
            f"{name} must be positive semi-definite; it has the eigenvalue {eigenvalues[0]:.3g}."
        )
    return cov


def _check_kernel_and_targets(K, y):
    """K: a symmetric positive semi-definite n×n matrix; y: n rows, 1-D or 2-D, finite."""
    K = _check_covariance(K, name="K")
    Y = _check_finite_array(y, name="y")
    if Y.ndim not in (1, 2):
        raise ShapeError(
            f"y must have shape (n_samples,) or (n_samples, n_outputs); got shape {Y.shape}."
        )
    if Y.shape[0] != K.shape[0]:
        raise RowMismatchError(
            f"K and y must have one row per sample; got K.shape={K.shape}, y.shape={Y.shape}."
        )
    return K, Y
