"""Lemma 1, KARE/GCV, cumulative power, Remark 7 and the Gaussian closed forms
(docs/theory.md §2.8, §3, §5; testable facts T17–T21b and T30 of §7)."""

import itertools

import numpy as np
import pytest
from scipy.linalg import sqrtm
from scipy.spatial.distance import cdist

import repalign
from repalign import bounds, errors
from repalign.bounds import (
    KAInterval,
    bures_wasserstein_squared,
    cumulative_power,
    gaussian_mutual_information,
    gcv,
    independence_wasserstein_squared,
    kare,
    kare_sweep,
    kta_risk_bound,
    lemma1_interval,
    lemma1_radius,
)
from tests import reference

# T17/T18: whitened blocks of dimensions 2 and 3 with canonical correlations 0.3 and 0.8
RHO = np.array([0.3, 0.8])
CROSS = np.array([[0.3, 0.0, 0.0], [0.0, 0.8, 0.0]])
JOINT = np.block([[np.eye(2), CROSS], [CROSS.T, np.eye(3)]])


def random_kernel(seed, n=25, kind="linear"):
    """A PSD Gram matrix: linear of rank 4, full-rank RBF, or rank one."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4)) + 1.0
    if kind == "linear":
        return X @ X.T
    if kind == "rbf":
        return reference.gram(X, "rbf", sigma=1.5)
    return np.outer(X[:, 0], X[:, 0])


def bures_rounding(A, B):
    """An upper bound on the float64 rounding error of a computed W₂²(A, B), to first order.

    Each eigenvalue λ of M = A^½ B A^½ comes out within δ = 4d·ε·‖A‖‖B‖ (A^½ from a backward-
    stable eigensolver, two products of d terms, then the eigensolver again), and enters the
    trace as 2√λ, which moves by at most 2·min(√δ, δ/(2√λ)): δ/√λ for a well-separated λ, but
    2√δ (about 1e-8·√(‖A‖‖B‖)) for a λ that should be 0, i.e. for a singular A or B. The
    traces of A and B add d·ε·(Tr A + Tr B). So does scipy's ``sqrtm``: the trace of a Schur
    square root is the sum of the square roots of the Schur form's diagonal.
    """
    d = len(A)
    delta = 4 * d * reference.EPS * np.linalg.norm(A, 2) * np.linalg.norm(B, 2)
    root = sqrtm(A).real
    lowest = np.maximum(np.linalg.eigvalsh(root @ B @ root) - delta, 0.0)  # λ, from below
    moves = delta / np.maximum(2 * np.sqrt(lowest), np.sqrt(delta))  # min(√δ, δ/(2√λ))
    return 2 * np.sum(moves) + reference.rounding(d, np.trace(A) + np.trace(B))


def random_covariance(rng, d, rank=None):
    A = rng.standard_normal((d, rank or d + 2))
    return A @ A.T / A.shape[1]


# -- Lemma 1 radius (T21) ---------------------------------------------------------------------


def test_t21_lemma1_radius_value():
    assert lemma1_radius(1000, 0.05) == pytest.approx(0.3435755267, abs=1e-10)
    assert lemma1_radius(1000) == lemma1_radius(1000, 0.05)  # the default δ


@pytest.mark.parametrize(
    ("n", "delta", "expected"),
    [
        (100, 0.05, 1.086481),
        (100, 0.01, 1.302099),
        (1_000, 0.01, 0.411760),
        (10_000, 0.05, 0.108648),
        (10_000, 0.01, 0.130210),
        (100_000, 0.05, 0.034358),
        (100_000, 0.01, 0.041176),
    ],
)
def test_t21_lemma1_radius_matches_the_table_of_paper_spec(n, delta, expected):
    assert lemma1_radius(n, delta) == pytest.approx(expected, abs=1e-6)  # the table's 6 digits


def test_t21_lemma1_radius_is_monotone():
    radii = [lemma1_radius(n) for n in (1, 10, 100, 1000, 10**6)]
    assert all(r > s for r, s in itertools.pairwise(radii))
    by_delta = [lemma1_radius(500, d) for d in (0.5, 0.1, 0.05, 0.01, 1e-6)]
    assert all(r < s for r, s in itertools.pairwise(by_delta))
    # vacuous (≥ 1) up to n = 118 at δ = 0.05, as docs/theory.md §3 (a) says
    assert lemma1_radius(118) > 1 > lemma1_radius(119)
    # sample size for a target radius: n = 32 ln(2/δ)/ε²
    assert lemma1_radius(47_218) == pytest.approx(0.05, rel=1e-4)


# -- Lemma 1 interval (§3 (b)) ----------------------------------------------------------------


def brute_interval(a, b, c, n, delta, c1, c2):
    """docs/theory.md §3 (b), step by step."""
    r = np.sqrt(32 * np.log(6 / delta) / n)
    e12, e11, e22 = c1 * c2 * r, c1**2 * r, c2**2 * r
    lower = max(0.0, (a - e12) / np.sqrt((b + e11) * (c + e22)))
    if b - e11 <= 0 or c - e22 <= 0:
        upper = 1.0
    else:
        upper = min(1.0, (a + e12) / np.sqrt((b - e11) * (c - e22)))
    return lower, upper, r


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [200, 2_000, 50_000, 10**7])
def test_lemma1_interval_matches_the_derivation(seed, n):
    """Statistics of real RBF Grams; at n = 10⁷ both ends are informative."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))
    K, L = reference.gram(X, "rbf", 2.0), reference.gram(Y, "rbf", 2.0)
    a, b, c = (np.sum(P * Q) / 40**2 for P, Q in ((K, L), (K, K), (L, L)))
    interval = lemma1_interval(a, b, c, n, delta=0.1)
    lower, upper, r = brute_interval(a, b, c, n, 0.1, 1.0, 1.0)
    assert isinstance(interval, KAInterval)
    assert interval.lower == pytest.approx(lower, rel=1e-12, abs=1e-15)
    assert interval.upper == pytest.approx(upper, rel=1e-12)
    assert interval.radius == pytest.approx(r, rel=1e-12)
    assert interval.lower <= reference.ka(K, L) <= interval.upper  # the plug-in KA is inside
    if n == 10**7:
        assert 0 < interval.lower < interval.upper < 1 and not interval.vacuous


def test_lemma1_interval_scales_with_the_kernel_bounds():
    """Kernels C₁K₁, C₂K₂ with bounds (C₁, C₂) give the interval of K₁, K₂ with bounds 1."""
    a, b, c, n = 0.25, 0.5, 0.4, 20_000
    unit = lemma1_interval(a, b, c, n)
    scaled = lemma1_interval(6 * a, 4 * b, 9 * c, n, bounds=(2.0, 3.0))
    assert scaled.lower == pytest.approx(unit.lower, rel=1e-12)
    assert scaled.upper == pytest.approx(unit.upper, rel=1e-12)
    assert scaled.radius == unit.radius
    # with the default bounds (1, 1), the same statistics exceed C₁C₂ = 1 and are refused
    with pytest.raises(errors.InvalidParameterError, match=r"a=1\.5 exceeds its bound C₁C₂ = 1\.0"):
        lemma1_interval(6 * a, 4 * b, 9 * c, n)


def test_lemma1_statistics_over_their_bound_by_rounding_only_are_accepted():
    """A mean of n² kernel values ≤ 1 may round to n²·ε above 1 (any summation order); a
    value further above is a kernel that is not bounded by C and is refused."""
    n = 1000
    rounding = n * n * np.finfo(np.float64).eps  # 2.2e-10
    assert lemma1_interval(1.0 + 0.5 * rounding, 1.0, 1.0, n).upper == 1.0
    with pytest.raises(errors.InvalidParameterError, match="exceeds its bound"):
        lemma1_interval(1.0 + 2.0 * rounding, 1.0, 1.0, n)


def test_lemma1_interval_is_vacuous_for_small_n():
    # r = sqrt(32 ln(6/δ)/n) ≥ 1 for n ≤ 153 at δ = 0.05: the interval is [0, 1]
    for a, b, c in [(0.9, 0.95, 0.95), (1.0, 1.0, 1.0), (0.1, 0.2, 0.3)]:
        interval = lemma1_interval(a, b, c, 153)
        assert interval.radius >= 1
        assert (interval.lower, interval.upper, interval.vacuous) == (0.0, 1.0, True)
    assert not lemma1_interval(1.0, 1.0, 1.0, 154).vacuous  # r < 1: the lower end moves up
    assert lemma1_interval(1.0, 1.0, 1.0, 154).upper == 1.0


def test_lemma1_interval_is_clipped_to_the_unit_interval():
    # a barely below sqrt(bc): a + ε over sqrt((b − ε)(c − ε)) exceeds 1 and is clipped
    interval = lemma1_interval(0.5, 0.5, 0.5, 10**6)
    assert interval.upper == 1.0 and 0.95 < interval.lower < 1.0
    # a tiny ⟨K₁, K₂⟩: a − ε < 0 and the lower end is 0
    low = lemma1_interval(1e-4, 0.5, 0.5, 10**5)
    assert low.lower == 0.0 and 0 < low.upper < 1 and not low.vacuous


def ka_population(K1, K2):
    """Off-diagonal means of K₁∘K₂, K₁∘K₁, K₂∘K₂: U-statistics of E[K_q(x,x')K_q'(x,x')]."""
    off = ~np.eye(K1.shape[0], dtype=bool)
    return [np.mean((P * Q)[off]) for P, Q in ((K1, K2), (K1, K1), (K2, K2))]


def test_t21b_lemma1_coverage_for_rbf_kernels():
    """T21b, statistical, seeded. Two representations of one latent z ~ N(0, I₂), RBF kernels
    with fixed bandwidths (|K| ≤ 1): R draws of n pairs each.

    The mean of the V-statistic at n is E Â_qq' = ((n − 1)u_qq' + 1)/n, with u_qq' the
    off-diagonal expectation (the diagonal K_q K_q' of an RBF kernel is 1), estimated from an
    independent sample of N pairs; its standard error (≈ 4e-3 here) is small against the radii
    (≈ 0.49). Both checks hold by a wide margin: the bound is loose.
    """
    rng = np.random.default_rng(20250219)
    A1 = np.array([[1.0, 0.5, -0.3], [0.2, -1.0, 0.8]])
    A2 = np.array([[1.5, -0.4], [0.3, 1.2]])
    sigmas = (5.0, 3.0)
    delta, n, draws, big = 0.05, 500, 100, 2_000

    def draw(size):
        z = rng.standard_normal((size, 2))
        X1 = z @ A1 + 0.5 * rng.standard_normal((size, 3))
        X2 = np.tanh(z @ A2) + 0.3 * rng.standard_normal((size, 2))
        return [
            np.exp(-cdist(X, X, "sqeuclidean") / (2 * s**2))
            for X, s in zip((X1, X2), sigmas, strict=True)
        ]

    u12, u11, u22 = ka_population(*draw(big))
    mean12, mean11, mean22 = (((n - 1) * u + 1) / n for u in (u12, u11, u22))
    target = mean12 / np.sqrt(mean11 * mean22)  # what the lemma covers (diagonals included)
    population = u12 / np.sqrt(u11 * u22)  # Tr(L₁L₂)/sqrt(Tr L₁² Tr L₂²)

    radius = lemma1_radius(n, delta)
    deviations, covered, informative = [], [], []
    for _ in range(draws):
        K1, K2 = draw(n)
        a, b, c = (np.vdot(P, Q) / n**2 for P, Q in ((K1, K2), (K1, K1), (K2, K2)))
        deviations.append(a - mean12)
        interval = lemma1_interval(a, b, c, n, delta=delta)
        covered.append(all(interval.lower <= v <= interval.upper for v in (target, population)))
        informative.append(interval.lower > 0)
    deviations = np.array(deviations)
    # (i) the unnormalised V-statistic leaves its mean by more than ε(n, δ) with frequency ≤ δ,
    # and by more than a quarter of it, sqrt(2 ln(2/δ)/n), the sharper McDiarmid constant for
    # non-negative kernels (docs/theory.md §3 (b) 5). Measured: never; the largest is ≈ 0.03 ε.
    assert np.mean(np.abs(deviations) > radius) <= delta
    assert np.mean(np.abs(deviations) > radius / 4) <= delta
    # the draws vary, around the mean computed from the independent sample: within 4 standard
    # errors of the draws' mean plus 3 of the population sample's (≈ 4e-3)
    assert np.std(deviations) > 1e-3
    assert abs(np.mean(deviations)) < 4 * np.std(deviations) / np.sqrt(draws) + 0.012
    # (ii) the interval covers the population KA in at least 1 − δ of the draws (measured: all),
    # and it is not the trivial [0, 1] (measured: [0.16 ± 0.01, 1] around KA ≈ 0.993). The
    # normalised KA concentrates far faster than the lemma says (here even the interval of
    # 1000 n samples covers in every draw), so this checks the interval's direction more than
    # its size; the formula itself is pinned by test_lemma1_interval_matches_the_derivation.
    assert np.mean(covered) >= 1 - delta
    assert np.mean(informative) >= 0.9


# -- KARE and GCV (T19) -----------------------------------------------------------------------


def brute_kare(K, Y, lam):
    """[E30] with an explicit inverse, one output at a time."""
    n = K.shape[0]
    inverse = np.linalg.inv(K / n + lam * np.eye(n))
    Y = Y.reshape(n, -1)
    numerator = sum(Y[:, k] @ inverse @ inverse @ Y[:, k] for k in range(Y.shape[1])) / n
    return numerator / (np.trace(inverse) / n) ** 2


def brute_gcv(K, Y, lam):
    n = K.shape[0]
    smoother = K @ np.linalg.inv(K + n * lam * np.eye(n))
    residual = Y - smoother @ Y
    return np.sum(residual**2) / n / (np.trace(np.eye(n) - smoother) / n) ** 2


@pytest.mark.parametrize("kind", ["linear", "rbf", "rank_one"])
@pytest.mark.parametrize("outputs", [None, 3])
@pytest.mark.parametrize("seed", range(3))
def test_t19_kare_equals_gcv_equals_eigen_form(kind, outputs, seed):
    K = random_kernel(seed, kind=kind)
    rng = np.random.default_rng(100 + seed)
    y = rng.standard_normal(25 if outputs is None else (25, outputs))
    lambdas = [1e-3, 0.1, 2.0, 50.0]
    swept = kare_sweep(K, y, lambdas)
    assert swept.shape == (4,)
    for lam, value in zip(lambdas, swept, strict=True):
        expected = brute_kare(K, y, lam)
        # condition number of K/n + λI up to ~1e5 at λ = 1e-3: 1e-9 leaves room
        assert kare(K, y, lam) == pytest.approx(expected, rel=1e-9)
        assert gcv(K, y, lam) == pytest.approx(expected, rel=1e-9)
        assert value == pytest.approx(expected, rel=1e-9)
        assert brute_gcv(K, y, lam) == pytest.approx(expected, rel=1e-9)  # the identity itself


@pytest.mark.parametrize("c", [1e-3, 0.5, 40.0])
def test_t19_kare_is_invariant_to_scaling_kernel_and_ridge(c):
    K, y = random_kernel(0, kind="rbf"), np.random.default_rng(1).standard_normal(25)
    for estimate in (kare, gcv):
        assert estimate(c * K, y, c * 0.05) == pytest.approx(estimate(K, y, 0.05), rel=1e-10)
    assert kare_sweep(c * K, y, [c * 0.05])[0] == pytest.approx(kare(K, y, 0.05), rel=1e-10)
    # scaling y by c scales ρ by c²
    assert kare(K, c * y, 0.05) == pytest.approx(c**2 * kare(K, y, 0.05), rel=1e-10)


def test_t19_kare_tends_to_the_mean_square_of_y():
    K = random_kernel(2, kind="linear")
    y = np.random.default_rng(3).standard_normal(25) + 2.0
    for estimate in (kare, gcv):
        assert estimate(K, y, 1e9) == pytest.approx(np.mean(y**2), rel=1e-6)
    # several outputs: (1/n)‖Y‖²_F, the sum of the outputs' mean squares
    Y = np.column_stack([y, 3 * y[::-1]])
    assert kare_sweep(K, Y, [1e9])[0] == pytest.approx(np.sum(Y**2) / 25, rel=1e-6)
    # and far from it at a small ridge (the kernel fits y)
    assert kare(K, y, 1e-2) < 0.9 * np.mean(y**2)


def test_t19_several_outputs_add():
    K, Y = random_kernel(1, kind="rbf"), np.random.default_rng(4).standard_normal((25, 3))
    assert kare(K, Y, 0.1) == pytest.approx(sum(kare(K, Y[:, k], 0.1) for k in range(3)))
    assert gcv(K, Y, 0.1) == pytest.approx(sum(gcv(K, Y[:, k], 0.1) for k in range(3)))


# -- cumulative power (T20) -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "rbf"])
@pytest.mark.parametrize("seed", range(3))
def test_t20_cumulative_power(kind, seed):
    K = random_kernel(seed, kind=kind)
    y = np.random.default_rng(seed).standard_normal(25)
    curve = cumulative_power(K, y)
    assert curve.shape == (25,)
    assert np.all(np.diff(curve) >= 0) and np.all(curve >= 0)
    assert curve[-1] == 1.0
    # brute force: eigenvectors by decreasing eigenvalue, one at a time
    values, vectors = np.linalg.eigh(K)
    order = np.argsort(values)[::-1]
    powers = [float(vectors[:, i] @ y) ** 2 for i in order]
    expected = [sum(powers[: k + 1]) / np.dot(y, y) for k in range(25)]
    if kind == "rbf":  # simple eigenvalues: the curve is unique
        np.testing.assert_allclose(curve, expected, rtol=1e-10, atol=1e-12)
    else:  # rank 4: only the top 4 eigenvectors are determined, the null space is any basis
        np.testing.assert_allclose(curve[:4], expected[:4], rtol=1e-10)


def test_t20_top_eigenvector_has_all_its_power_first():
    K = random_kernel(0, kind="rbf")
    _, vectors = np.linalg.eigh(K)
    top = vectors[:, -1]
    assert cumulative_power(K, top)[0] == pytest.approx(1.0, abs=1e-12)
    assert cumulative_power(K, -3.0 * top)[0] == pytest.approx(1.0, abs=1e-12)
    # the last eigenvector gains its power only at k = n
    curve = cumulative_power(K, vectors[:, 0])
    assert curve[-2] == pytest.approx(0.0, abs=1e-12) and curve[-1] == 1.0
    # several outputs: the powers add
    both = cumulative_power(K, np.column_stack([top, vectors[:, 0]]))
    assert both[0] == pytest.approx(0.5) and both[-2] == pytest.approx(0.5)


# -- Remark 7 (T30) ---------------------------------------------------------------------------


def brute_kta(K, y):
    n = len(y)
    scale = np.sqrt(sum(K[i, j] ** 2 for i in range(n) for j in range(n)) / n**2)
    h = [sum(K[i, j] * y[j] for j in range(n)) / n / scale for i in range(n)]
    return np.mean([(y[i] - h[i]) ** 2 for i in range(n)])


def test_t30_kta_bound_holds_for_many_psd_kernels():
    """Deterministic for any PSD K: random spectra, ranks, sizes and labels (seeded)."""
    rng = np.random.default_rng(7)
    gaps = []
    for trial in range(300):
        n = int(rng.integers(2, 40))
        rank = int(rng.integers(1, n + 1))
        A = rng.standard_normal((n, rank)) * rng.exponential(1.0, rank)
        K = A @ A.T if trial % 3 else reference.gram(A, "rbf", rng.uniform(0.1, 5.0))
        y = rng.choice([-1.0, 1.0], n)
        risk, bound = kta_risk_bound(K, y)
        assert bound == pytest.approx(2 * (1 - reference.ka(K, np.outer(y, y))), abs=1e-12)
        assert risk <= bound + 1e-12  # rounding of sums of ≤ 40² terms
        gaps.append(bound - risk)
    assert min(gaps) < 0.05  # the bound is nearly tight for some kernels


@pytest.mark.parametrize("seed", range(3))
def test_t30_kta_risk_matches_a_loop(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((15, 3))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    K = X @ X.T
    assert kta_risk_bound(K, y)[0] == pytest.approx(brute_kta(K, y), rel=1e-12)


def test_t30_equality_for_the_target_kernel():
    y = np.array([1.0, -1.0, -1.0, 1.0, 1.0])
    risk, bound = kta_risk_bound(np.outer(y, y), y)  # KA = 1 and h = y
    assert risk == pytest.approx(0.0, abs=1e-15) and bound == pytest.approx(0.0, abs=1e-15)


# -- Gaussian MI and Wasserstein (T17, T18) ---------------------------------------------------


def test_t17_gaussian_mutual_information():
    mi = gaussian_mutual_information(JOINT, 2)
    assert mi == pytest.approx(0.5579809635, abs=1e-10)
    assert mi == pytest.approx(-0.5 * np.sum(np.log(1 - RHO**2)), rel=1e-12)  # [E17]


@pytest.mark.parametrize("seed", range(3))
def test_gaussian_mutual_information_equals_whitened_canonical_form(seed):
    rng = np.random.default_rng(seed)
    cov = random_covariance(rng, 6)
    d1 = 2 + seed
    s1, s2, s12 = cov[:d1, :d1], cov[d1:, d1:], cov[:d1, d1:]
    whitened = np.linalg.inv(sqrtm(s1).real) @ s12 @ np.linalg.inv(sqrtm(s2).real)
    rho = np.linalg.svd(whitened, compute_uv=False)
    expected = -0.5 * np.sum(np.log(1 - rho**2))
    assert gaussian_mutual_information(cov, d1) == pytest.approx(expected, rel=1e-10)
    # symmetric in the two blocks
    order = np.r_[d1:6, 0:d1]
    assert gaussian_mutual_information(cov[np.ix_(order, order)], 6 - d1) == pytest.approx(
        expected, rel=1e-10
    )
    # independent blocks have zero information
    block = cov.copy()
    block[:d1, d1:] = block[d1:, :d1] = 0
    assert gaussian_mutual_information(block, d1) == pytest.approx(0.0, abs=1e-12)


def test_t18_gaussian_wasserstein_and_the_papers_closed_form():
    bures = bures_wasserstein_squared(JOINT, np.eye(5))
    assert bures == pytest.approx(0.4686203327, abs=1e-10)
    corrected = independence_wasserstein_squared(RHO)
    assert corrected == pytest.approx(bures, rel=1e-12)
    paper = 2 * np.sum(1 - np.sqrt(1 - RHO**2))  # the paper's [E19-paper]
    assert paper == pytest.approx(0.8921215972, abs=1e-10)
    assert abs(paper - bures) > 0.4


@pytest.mark.parametrize("seed", range(4))
def test_bures_matches_scipy_sqrtm(seed):
    rng = np.random.default_rng(seed)
    A = random_covariance(rng, 5)
    B = random_covariance(rng, 5, rank=2 if seed % 2 else None)  # singular half the time
    root = sqrtm(A).real
    expected = np.trace(A + B - 2 * sqrtm(root @ B @ root).real)
    # a singular B loses about half the digits, in either computation (bures_rounding)
    tolerance = 2 * bures_rounding(A, B)
    assert bures_wasserstein_squared(A, B) == pytest.approx(expected, abs=tolerance)
    assert bures_wasserstein_squared(B, A) == pytest.approx(expected, abs=tolerance)  # symmetric
    assert bures_wasserstein_squared(A, A) == pytest.approx(0.0, abs=bures_rounding(A, A))


def test_bures_of_commuting_covariances():
    a, b = np.array([1.0, 4.0, 0.0]), np.array([9.0, 1.0, 2.0])
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    A, B = Q @ np.diag(a) @ Q.T, Q @ np.diag(b) @ Q.T
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # = 4 + 1 + 2
    # A is singular: its 0 eigenvalue comes out near ε‖A‖, whose square root enters the
    # trace, so only about half the digits survive (bures_rounding)
    assert bures_wasserstein_squared(A, B) == pytest.approx(expected, abs=bures_rounding(A, B))
    assert bures_wasserstein_squared(A + np.eye(3), B) == pytest.approx(
        np.sum((np.sqrt(a + 1) - np.sqrt(b)) ** 2), abs=bures_rounding(A + np.eye(3), B)
    )


@pytest.mark.parametrize("seed", range(3))
def test_independence_wasserstein_is_bures_against_the_product(seed):
    rng = np.random.default_rng(seed)
    d1, d2 = 3, 5
    rho = rng.uniform(0, 1, d1)
    U = np.linalg.qr(rng.standard_normal((d1, d1)))[0]
    V = np.linalg.qr(rng.standard_normal((d2, d2)))[0][:, :d1]
    cross = U @ np.diag(rho) @ V.T
    joint = np.block([[np.eye(d1), cross], [cross.T, np.eye(d2)]])
    expected = bures_wasserstein_squared(joint, np.eye(d1 + d2))
    assert independence_wasserstein_squared(rho) == pytest.approx(expected, rel=1e-9)
    assert independence_wasserstein_squared(np.zeros(3)) == 0.0
    small = np.array([1e-3])
    assert independence_wasserstein_squared(small) == pytest.approx(0.5e-6, rel=1e-3)


def test_distance_alignment_is_reexported():
    assert bounds.distance_alignment is repalign.distance_alignment
    assert repalign.kare is kare and repalign.lemma1_interval is lemma1_interval


# -- bad input ---------------------------------------------------------------------------------

K_OK = random_kernel(0)
Y_OK = np.random.default_rng(0).standard_normal(25)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: lemma1_radius(0), errors.InvalidParameterError, "n must be between 1 and"),
        (lambda: lemma1_radius(10.5), errors.InvalidParameterError, "n must be an integer"),
        (lambda: lemma1_radius(10, 0.0), errors.InvalidParameterError, r"delta must be in \(0"),
        (lambda: lemma1_radius(10, 1.0), errors.InvalidParameterError, "got delta=1.0"),
        (lambda: lemma1_radius(10, np.nan), errors.InvalidParameterError, "delta must be finite"),
        (lambda: lemma1_radius(10, "5%"), errors.InvalidParameterError, "delta must be a real"),
        (
            lambda: lemma1_interval(0.5, 0.5, 0.5, 100, bounds=1.0),
            errors.InvalidParameterError,
            r"bounds must be a pair \(C1, C2\)",
        ),
        (
            lambda: lemma1_interval(0.5, 0.5, 0.5, 100, bounds=(1.0, -2.0)),
            errors.InvalidParameterError,
            r"bounds\[1\] must be > 0; got bounds\[1\]=-2.0",
        ),
        (
            lambda: lemma1_interval(0.5, 1.5, 0.5, 100),
            errors.InvalidParameterError,
            "b=1.5 exceeds its bound C₁²",
        ),
        (
            lambda: lemma1_interval(0.5, 0.5, 2.0, 100),
            errors.InvalidParameterError,
            "c=2.0 exceeds its bound C₂²",
        ),
        (
            lambda: lemma1_interval(-0.1, 0.5, 0.5, 100),
            errors.InvalidParameterError,
            "a must be >= 0",
        ),
        (lambda: lemma1_interval(0.0, 0.0, 0.5, 100), errors.ZeroVarianceError, "b must be > 0"),
        (lambda: lemma1_interval(0.0, 0.5, 0.0, 100), errors.ZeroVarianceError, "c must be > 0"),
        (lambda: lemma1_interval(None, 0.5, 0.5, 100), errors.InvalidParameterError, "a must be"),
        (lambda: lemma1_interval(0.5, 0.5, 0.5, 0), errors.InvalidParameterError, "n must be"),
        (lambda: lemma1_interval(0.5, 0.5, 0.5, 9, delta=2), errors.InvalidParameterError, "delta"),
    ],
)
def test_lemma1_refuses_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


KARE_LIKE = {"kare": kare, "gcv": gcv, "kare_sweep": lambda K, y, lam: kare_sweep(K, y, [lam])}


@pytest.mark.parametrize("name", KARE_LIKE)
def test_kare_refuses_bad_input(name):
    function = KARE_LIKE[name]
    with pytest.raises(errors.ShapeError, match=r"K must be a square matrix; got shape \(25, 3\)"):
        function(K_OK[:, :3], Y_OK, 0.1)
    with pytest.raises(errors.InvalidParameterError, match="K must be symmetric"):
        function(K_OK + np.triu(np.ones((25, 25)), 1), Y_OK, 0.1)
    with pytest.raises(errors.InvalidParameterError, match="K must be positive semi-definite"):
        function(K_OK - 10 * np.eye(25), Y_OK, 0.1)
    with pytest.raises(errors.NonFiniteError, match="K holds NaN"):
        function(np.where(np.eye(25) > 0, np.nan, K_OK), Y_OK, 0.1)
    with pytest.raises(errors.RowMismatchError, match=r"K.shape=\(25, 25\), y.shape=\(24,\)"):
        function(K_OK, Y_OK[:-1], 0.1)
    with pytest.raises(errors.ShapeError, match=r"y must have shape .* got shape \(25, 1, 1\)"):
        function(K_OK, Y_OK[:, None, None], 0.1)
    with pytest.raises(errors.NonFiniteError, match="y holds NaN"):
        function(K_OK, np.where(Y_OK > 1, np.inf, Y_OK), 0.1)
    with pytest.raises(errors.NotNumericError, match="y must hold real numbers"):
        function(K_OK, ["a"] * 25, 0.1)
    if name == "kare_sweep":
        with pytest.raises(errors.InvalidParameterError, match=r"lambdas\[0\]=0.0"):
            function(K_OK, Y_OK, 0.0)
    else:
        with pytest.raises(errors.InvalidParameterError, match=r"lam must be > 0; got lam=-1\.0"):
            function(K_OK, Y_OK, -1.0)


def test_kare_sweep_refuses_bad_lambdas():
    with pytest.raises(errors.ShapeError, match="lambdas must be a non-empty 1-D"):
        kare_sweep(K_OK, Y_OK, [])
    with pytest.raises(errors.ShapeError, match=r"got shape \(2, 1\)"):
        kare_sweep(K_OK, Y_OK, [[0.1], [0.2]])
    with pytest.raises(errors.InvalidParameterError, match=r"lambdas\[1\]=-0.2"):
        kare_sweep(K_OK, Y_OK, [0.1, -0.2])
    with pytest.raises(errors.NonFiniteError, match="lambdas holds NaN"):
        kare_sweep(K_OK, Y_OK, [np.nan])


def test_cumulative_power_and_kta_refuse_bad_input():
    with pytest.raises(errors.InvalidParameterError, match="y must not be zero"):
        cumulative_power(K_OK, np.zeros(25))
    with pytest.raises(errors.InvalidParameterError, match="K must be symmetric"):
        cumulative_power(K_OK + np.triu(np.ones((25, 25)), 1), Y_OK)
    labels = np.sign(Y_OK)
    with pytest.raises(errors.InvalidParameterError, match=r"labels in \{-1, \+1\}; got 0.5"):
        kta_risk_bound(K_OK, np.r_[0.5, labels[1:]])
    with pytest.raises(errors.ShapeError, match="y must be 1-D labels"):
        kta_risk_bound(K_OK, labels[:, None])
    with pytest.raises(errors.ZeroVarianceError, match="K is zero"):
        kta_risk_bound(np.zeros((25, 25)), labels)
    with pytest.raises(errors.RowMismatchError, match="K and y must have one row per sample"):
        kta_risk_bound(K_OK, labels[:-1])


def test_gaussian_forms_refuse_bad_input():
    with pytest.raises(errors.InvalidParameterError, match="cov must be positive definite"):
        gaussian_mutual_information(np.ones((4, 4)), 2)
    with pytest.raises(errors.InvalidParameterError, match=r"d1 must be between 1 and 4 \(two"):
        gaussian_mutual_information(JOINT, 5)
    with pytest.raises(errors.InvalidParameterError, match="d1 must be between"):
        gaussian_mutual_information(JOINT, 0)
    with pytest.raises(errors.ShapeError, match="cov must be a square matrix"):
        gaussian_mutual_information(JOINT[:4], 2)
    with pytest.raises(errors.InvalidParameterError, match="cov_b must be positive semi-def"):
        bures_wasserstein_squared(np.eye(3), -np.eye(3))
    with pytest.raises(errors.InvalidParameterError, match="cov_a must be symmetric"):
        bures_wasserstein_squared(np.triu(np.ones((3, 3))), np.eye(3))
    with pytest.raises(errors.ShapeError, match=r"cov_a.shape=\(3, 3\), cov_b.shape=\(2, 2\)"):
        bures_wasserstein_squared(np.eye(3), np.eye(2))
    with pytest.raises(errors.InvalidParameterError, match=r"in \[0, 1\]; got rho\[1\]=1.2"):
        independence_wasserstein_squared([0.5, 1.2])
    with pytest.raises(errors.InvalidParameterError, match=r"got rho\[0\]=-0.1"):
        independence_wasserstein_squared([-0.1])
    with pytest.raises(errors.ShapeError, match="rho must be 1-D"):
        independence_wasserstein_squared(np.eye(2))
    with pytest.raises(errors.NonFiniteError, match="rho holds NaN"):
        independence_wasserstein_squared([np.nan])
