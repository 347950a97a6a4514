"""Random-feature RBF measures (repalign.approx) against exact values and their own claims.

Exact RBF products at n = 20,000 come from row tiles of K and L (`exact_rbf_products`, checked
against `repalign.cka` at small n), never from a full n×n matrix: 3.2 GB each would crowd a
shared machine. Approximations are built through GramState and MeanEmbedding, as a job builds
them.
"""

import itertools

import numpy as np
import pytest
from scipy import stats

import repalign
from repalign.approx import (
    EIGENVALUE_FLOOR,
    MeanEmbedding,
    Nystrom,
    RandomFourierFeatures,
    approximate_mmd2,
    approximate_products,
    cka_nystrom,
    cka_rff,
    mmd2_rff,
    nystrom_rows,
)
from repalign.errors import (
    InvalidParameterError,
    RowMismatchError,
    ShapeError,
    UnknownOptionError,
    ZeroVarianceError,
)
from repalign.stats import GramState
from tests import reference

# Bias allowances on CKA, measured with this module's `related_pair` (CKA about 0.52). Debiased
# RFF: mean error +0.0000 to +0.0008 over 30 to 40 seeds at n = 2,000 (256 to 4,096 features),
# within ±0.0025 over 5 seeds at n = 4,000, and +0.0026 ± 0.0013 over 20 seeds at n = 20,000
# (1,024 features): a ratio bias of O(1/n_features), below the standard error in each case.
# Nyström alone is biased (−0.0027 at 256 landmarks and −0.0005 at 1,024, n = 2,000, 10 seeds);
# its probes' estimate of the residual removes that bias, so it needs no allowance.
RFF_BIAS = 0.002


def related_pair(seed, n, d=32):
    """X Gaussian, Y a noisy nonlinear map of X: RBF CKA about 0.52 with median bandwidths."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    A = rng.standard_normal((d, d)) / np.sqrt(d)
    Y = np.tanh(1.5 * X @ A) + 0.5 * rng.standard_normal((n, d))
    return X, Y


def exact_rbf_products(X, Y, sigma_x, sigma_y, tile=1024):
    """⟨HKH, HLH⟩, ⟨HKH, HKH⟩, ⟨HLH, HLH⟩ from row tiles of K and L, O(tile·n) memory:

    ⟨HKH, HLH⟩ = ⟨K, L⟩ − 2 (K1)ᵀ(L1)/n + (1ᵀK1)(1ᵀL1)/n².
    """
    n = X.shape[0]
    scaled = [A / s for A, s in ((X, sigma_x), (Y, sigma_y))]
    halves = [0.5 * np.einsum("ij,ij->i", A, A) for A in scaled]
    raw, row_sums = np.zeros(3), np.zeros((2, n))
    for start in range(0, n, tile):
        rows = slice(start, start + tile)
        K, L = (
            np.exp(np.minimum(A[rows] @ A.T - h[rows, None] - h, 0.0))
            for A, h in zip(scaled, halves, strict=True)
        )
        raw += [np.vdot(K, L), np.vdot(K, K), np.vdot(L, L)]
        row_sums[:, rows] = K.sum(axis=1), L.sum(axis=1)

    def centered(product, a, b):
        return product - 2.0 * (a @ b) / n + a.sum() * b.sum() / n**2

    rk, rl = row_sums
    return centered(raw[0], rk, rl), centered(raw[1], rk, rk), centered(raw[2], rl, rl)


def exact_rbf_cka(X, Y):
    kl, kk, ll = exact_rbf_products(X, Y, repalign.median_sigma(X), repalign.median_sigma(Y))
    return kl / np.sqrt(kk * ll)


def feature_state(maps, arrays, splits=()):
    """GramState of the maps' features, fed in row blocks cut at ``splits``."""
    state = GramState([m.n_features for m in maps])
    edges = [0, *splits, arrays[0].shape[0]]
    for start, stop in itertools.pairwise(edges):
        state.add_block([m.transform(A[start:stop]) for m, A in zip(maps, arrays, strict=True)])
    return state


def rff_maps(X, Y, n_features, seed, **kwargs):
    return [
        RandomFourierFeatures(A.shape[1], n_features, repalign.median_sigma(A), seed=seed, **kwargs)
        for A in (X, Y)
    ]


def nystrom_maps(X, Y, n_features, seed):
    rows = nystrom_rows(len(X), n_features, seed)
    return [Nystrom(A[rows.landmarks], A[rows.probes], repalign.median_sigma(A)) for A in (X, Y)]


@pytest.fixture(scope="module")
def large_pair():
    X, Y = related_pair(0, 20_000)
    return X, Y, exact_rbf_cka(X, Y)


def test_tiled_reference_equals_explicit_gram_matrices():
    X, Y = related_pair(1, 300)
    sigmas = repalign.median_sigma(X), repalign.median_sigma(Y)
    H = reference.centering(300)
    K, L = (H @ reference.gram(A, "rbf", sigma=s) @ H for A, s in zip((X, Y), sigmas, strict=True))
    np.testing.assert_allclose(
        exact_rbf_products(X, Y, *sigmas, tile=64),  # uneven tiles: 4 of 64 rows, then 44
        [np.sum(K * L), np.sum(K * K), np.sum(L * L)],
        rtol=1e-10,
    )
    assert exact_rbf_cka(X, Y) == pytest.approx(repalign.cka(X, Y, kernel="rbf"), rel=1e-10)


# --- accuracy against exact values -------------------------------------------------------------


@pytest.mark.slow
def test_rff_cka_at_20000_rows_is_within_its_error(large_pair):
    X, Y, exact = large_pair
    result = cka_rff(X, Y, n_features=1024, seed=0)
    assert result.std_err < 0.01  # informative, not a blanket
    assert abs(result.value - exact) <= 3 * result.std_err + RFF_BIAS


@pytest.mark.slow
def test_nystrom_cka_at_20000_rows_is_within_its_error(large_pair):
    X, Y, exact = large_pair
    result = cka_nystrom(X, Y, n_features=1024, seed=0)
    assert result.n_features == 1024
    probes = len(nystrom_rows(len(X), 1024, 0).probes)
    assert abs(result.value - exact) <= stats.t.ppf(0.975, probes - 1) * result.std_err


@pytest.mark.slow
def test_rff_error_shrinks_as_features_grow():
    X, Y = related_pair(2, 2000)
    exact = {
        "cka": repalign.cka(X, Y, kernel="rbf"),
        "ka": repalign.kernel_alignment(X, Y, kernel="rbf"),
        "hsic": repalign.hsic(X, Y, kernel="rbf"),
    }
    errors = []
    for n_features in (256, 1024, 4096):
        maps = rff_maps(X, Y, n_features, seed=3)
        products = approximate_products(feature_state(maps, (X, Y)), 0, 1, *maps)
        for name, value in exact.items():
            estimate = getattr(products, name)
            # The CKA allowance, relative here: KA and HSIC have other scales.
            assert abs(estimate.value - value) <= 3 * estimate.std_err + RFF_BIAS * value
        errors.append(products.cka.std_err)
    # 4x the features, about half the error (1/sqrt(n_features), and faster at few features,
    # where the second-order term of the products still counts): 2.9x and 2.6x here.
    assert errors[0] > 1.5 * errors[1] > 1.5**2 * errors[2]


def test_nystrom_error_shrinks_as_columns_grow():
    """4× the columns: the std_err falls by 16 and 20 here (the residual the probes sample
    shrinks with the landmarks as well as with the probes), and each error stays within it."""
    X, Y = related_pair(2, 2000)
    exact = repalign.cka(X, Y, kernel="rbf")
    results = [cka_nystrom(X, Y, n_features=m, seed=1) for m in (64, 256, 1024)]
    for result in results:
        probes = len(nystrom_rows(2000, result.n_features, 1).probes)
        assert abs(result.value - exact) <= stats.t.ppf(0.975, probes - 1) * result.std_err
    errors = [result.std_err for result in results]
    assert errors[0] > 4 * errors[1] > 16 * errors[2]


def test_nystrom_std_err_is_the_jackknife_over_its_probes():
    """(1 − p/N) · (p − 1)/p · Σⱼ (θ₍₋ⱼ₎ − θ̄)², with θ₍₋ⱼ₎ from maps built without probe j."""
    X, Y = related_pair(21, 90, d=3)
    rows = nystrom_rows(90, 30, seed=2)  # 24 landmarks, 6 probes
    sigmas = [repalign.median_sigma(A) for A in (X, Y)]

    def estimate(probes):
        maps = [
            Nystrom(A[rows.landmarks], A[probes], s) for A, s in zip((X, Y), sigmas, strict=True)
        ]
        return approximate_products(feature_state(maps, (X, Y)), 0, 1, *maps)

    whole = estimate(rows.probes)
    p, N = len(rows.probes), 90 - len(rows.landmarks)
    for name in ("ka", "cka", "hsic", "raw_kl", "centered_ll"):
        without = np.array(
            [getattr(estimate(np.delete(rows.probes, j)), name).value for j in range(p)]
        )
        spread = (p - 1) / p * np.sum((without - without.mean()) ** 2)
        expected = np.sqrt((1 - p / N) * spread)
        # maps without probe j sum other products: the replicates agree to about 1e-13 of
        # their values (the solves with K(Z, Z)), and their spread is down to 6e-5 of the
        # value (KA), so the std_err agrees to about 2e-9
        assert getattr(whole, name).std_err == pytest.approx(expected, rel=1e-8), name


def test_debiased_self_products_remove_the_finite_feature_bias():
    """docs/design.md §4: plain RFF inflates ⟨HKH, HKH⟩, so CKA comes out low; k ≠ l fixes it.

    Measured here (n = 1,000, 256 features, 60 seeds): the plain self product is 23% too large
    and plain CKA 0.098 too low; the debiased forms err by −1.3% ± 1.2% and −0.004 ± 0.002.
    One seed's self product scatters by ±10%, so the test averages 20 seeds.
    """
    X, Y = related_pair(4, 1000)
    kl, kk, ll = exact_rbf_products(X, Y, repalign.median_sigma(X), repalign.median_sigma(Y))
    exact_cka = kl / np.sqrt(kk * ll)
    plain_self, debiased_self, plain_cka, debiased_cka = [], [], [], []
    for seed in range(20):
        maps = rff_maps(X, Y, 256, seed)
        state = feature_state(maps, (X, Y))
        products = approximate_products(state, 0, 1, *maps)
        # Plain: every block pair, k = l included, i.e. ‖ΦᵀΨ‖²/B² of all features together.
        moments = state.pair(0, 1, center=True)
        plain = [
            np.sum(moments.cross(r, s) ** 2) / maps[0].blocks ** 2
            for r, s in ((0, 1), (0, 0), (1, 1))
        ]
        plain_self.append(plain[1] / kk - 1)
        debiased_self.append(products.centered_kk.value / kk - 1)
        plain_cka.append(plain[0] / np.sqrt(plain[1] * plain[2]) - exact_cka)
        debiased_cka.append(products.cka.value - exact_cka)
    # Means over 20 seeds scatter by about 0.02 (self) and 0.003 (CKA).
    assert np.mean(plain_self) > 0.12
    assert abs(np.mean(debiased_self)) < 0.3 * np.mean(plain_self)
    assert np.mean(plain_cka) < -0.06
    assert abs(np.mean(debiased_cka)) < 0.15 * abs(np.mean(plain_cka))


# --- the estimators against brute force on explicit matrices ----------------------------------


def test_rff_products_equal_explicit_block_kernels():
    X, Y = related_pair(5, 60, d=4)
    maps = rff_maps(X, Y, 48, seed=1, blocks=4)
    products = approximate_products(feature_state(maps, (X, Y)), 0, 1, *maps)
    H = reference.centering(60)
    blocks = [
        [F @ F.T for F in np.split(m.transform(A), 4, axis=1)]
        for m, A in zip(maps, (X, Y), strict=True)
    ]

    def debiased(r, s, kept, center):
        terms = [
            np.sum((H @ blocks[r][k] @ H) * (H @ blocks[s][j] @ H))
            if center
            else np.sum(blocks[r][k] * blocks[s][j])
            for k in kept
            for j in kept
            if k != j
        ]
        return np.mean(terms)

    def cka(kept):
        return debiased(0, 1, kept, True) / np.sqrt(
            debiased(0, 0, kept, True) * debiased(1, 1, kept, True)
        )

    assert products.centered_kl.value == pytest.approx(debiased(0, 1, range(4), True), rel=1e-10)
    assert products.raw_ll.value == pytest.approx(debiased(1, 1, range(4), False), rel=1e-10)
    assert products.hsic.value == pytest.approx(debiased(0, 1, range(4), True) / 59**2, rel=1e-10)
    assert products.cka.value == pytest.approx(cka(range(4)), rel=1e-10)
    leave_one_out = np.array([cka([k for k in range(4) if k != left]) for left in range(4)])
    jackknife = np.sqrt(3 / 4 * np.sum((leave_one_out - leave_one_out.mean()) ** 2))
    assert products.cka.std_err == pytest.approx(jackknife, rel=1e-8)


def test_rff_blocks_average_to_the_rbf_kernel():
    X = np.random.default_rng(6).standard_normal((40, 3))
    rff = RandomFourierFeatures(3, 8 * 4096, 1.5, seed=2)
    F = rff.transform(X)
    approximate = F @ F.T / rff.blocks  # each block alone estimates K
    # Each entry is a mean of 32,768 terms 2cos(a)cos(b), of variance <= 1: sd <= 0.0055.
    np.testing.assert_allclose(approximate, reference.gram(X, "rbf", sigma=1.5), atol=0.03)


def explicit_difference_estimate(kernels, landmarks, probes):
    """(⟨K, L⟩, ⟨HKH, HLH⟩) as `Nystrom` estimates them, from the explicit n×n kernels
    (K, L): Nyström's K̂, L̂ on the landmarks plus the probes' columns of the residuals
    E = K − K̂, F = L − L̂, each term as docs/theory.md writes it, column by column."""
    K, L = kernels
    n = len(K)
    H, ones = reference.centering(n), np.ones(n)
    nystrom = []
    for A in (K, L):
        across = A[:, landmarks]
        floored = across[landmarks] + EIGENVALUE_FLOOR * len(landmarks) * np.eye(len(landmarks))
        nystrom.append(across @ np.linalg.solve(floored, across.T))
    Kh, Lh = nystrom
    E, F = K - Kh, L - Lh
    N = n - len(landmarks)
    raw = [K[:, j] @ F[:, j] + E[:, j] @ L[:, j] - E[:, j] @ F[:, j] for j in probes]
    centred = [
        K[:, j] @ H @ F[:, j]
        + E[:, j] @ H @ L[:, j]
        - E[:, j] @ H @ F[:, j]
        - (Kh @ ones @ H @ F[:, j] + E[:, j] @ H @ Lh @ ones + E[:, j] @ H @ F[:, j]) / n
        for j in probes
    ]
    across = np.mean([E[:, j] @ H @ F[:, k] for j in probes for k in probes if j != k])
    return (
        np.sum(Kh * Lh) + N * np.mean(raw),
        np.sum((H @ Kh @ H) * (H @ Lh @ H)) + N * np.mean(centred) - N * (N - 1) / n * across,
    )


def test_nystrom_products_are_the_explicit_difference_estimate():
    X, Y = related_pair(7, 80, d=4)
    rows = nystrom_rows(80, 40, seed=3)
    maps = nystrom_maps(X, Y, 40, seed=3)
    products = approximate_products(feature_state(maps, (X, Y)), 0, 1, *maps)
    K, L = (reference.gram(A, "rbf", sigma=m.sigma) for A, m in zip((X, Y), maps, strict=True))
    for suffix, kernels in (("kl", (K, L)), ("kk", (K, K)), ("ll", (L, L))):
        raw, centred = explicit_difference_estimate(kernels, rows.landmarks, rows.probes)
        # both sides solve with the floored K(Z, Z), whose condition (up to ~1e10 here) scales
        # the rounding of the residual columns: 1e-8 of products of order n² = 6,400
        assert getattr(products, f"raw_{suffix}").value == pytest.approx(raw, rel=1e-8)
        assert getattr(products, f"centered_{suffix}").value == pytest.approx(centred, rel=1e-8)


PAIRS, KINDS = ("kl", "kk", "ll"), ("raw", "centered")


def test_nystrom_products_average_to_the_exact_ones_over_every_probe_sample():
    """Unbiased given the landmarks: over all C(5, 3) = 10 samples of 3 probes from the 5 rows
    that are not landmarks, the estimates average to the exact raw and centred products of
    K with L, K with K and L with L (up to the eigenvalue floor), where Nyström's own products
    fall short."""
    X, Y = related_pair(20, 12, d=3)
    landmarks, others = np.arange(7), np.arange(7, 12)
    sigmas = [repalign.median_sigma(A) for A in (X, Y)]
    estimates = []
    for probes in itertools.combinations(others, 3):
        maps = [
            Nystrom(A[landmarks], A[list(probes)], s) for A, s in zip((X, Y), sigmas, strict=True)
        ]
        products = approximate_products(feature_state(maps, (X, Y)), 0, 1, *maps)
        estimates.append(
            [getattr(products, f"{kind}_{pair}").value for pair in PAIRS for kind in KINDS]
        )
    K, L = (reference.gram(A, "rbf", sigma=s) for A, s in zip((X, Y), sigmas, strict=True))
    H = reference.centering(12)
    kernels = {"kl": (K, L), "kk": (K, K), "ll": (L, L)}
    exact = np.array(
        [
            np.sum(A * B) if kind == "raw" else np.sum((H @ A @ H) * (H @ B @ H))
            for A, B in (kernels[pair] for pair in PAIRS)
            for kind in KINDS
        ]
    )
    # the floor (1e-10 of tr K(Z, Z) = 7) moves K̂ by about 1e-10 / λ_min(K(Z, Z)) of K
    np.testing.assert_allclose(np.mean(estimates, axis=0), exact, rtol=1e-7)
    own = [
        A[:, landmarks] @ np.linalg.solve(A[np.ix_(landmarks, landmarks)], A[landmarks])
        for A in (K, L)
    ]
    assert abs(np.sum(own[0] * own[1]) - exact[0]) > 1e-3 * exact[0]  # what the probes make up


def test_nystrom_on_every_row_is_exact():
    X, Y = related_pair(8, 120, d=4)
    result = cka_nystrom(X, Y, n_features=120)
    # every row is a landmark or a probe: the probes' sum is the whole residual, and K̂ = K on
    # the landmarks' columns up to the eigenvalue floor, ~1e-10 of the trace
    assert result.std_err == 0.0  # the finite-population correction: nothing left to sample
    assert result.value == pytest.approx(repalign.cka(X, Y, kernel="rbf"), rel=1e-6)


def test_self_alignment_is_exactly_one():
    X, _ = related_pair(9, 500)
    assert cka_rff(X, X, n_features=256).value == pytest.approx(1.0, abs=1e-12)
    assert cka_nystrom(X, X, n_features=64).value == pytest.approx(1.0, abs=1e-12)


# --- streaming, merging, determinism ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["rff", "nystrom"])
def test_merged_halves_equal_one_pass(kind):
    X, Y = related_pair(10, 1500)
    if kind == "rff":
        maps = rff_maps(X, Y, 512, seed=4)
    else:
        maps = nystrom_maps(X, Y, 256, seed=4)
    whole = approximate_products(feature_state(maps, (X, Y)), 0, 1, *maps)
    left = feature_state(maps, (X[:700], Y[:700]), splits=(333,))
    right = feature_state(maps, (X[700:], Y[700:]))
    merged = approximate_products(left + right, 0, 1, *maps)
    # the two differ in summation order only: each value contracts sums over n = 1500 rows with
    # D ≤ 512 features, so its worst-case rounding is n·D·ε (1.7e-10) of its absolute terms;
    # a wrong merge (a dropped or doubled block) moves every value by ~1e-3 or more
    tolerance = 1500 * 512 * np.finfo(np.float64).eps
    for name in ("raw_kl", "centered_kk", "ka", "cka", "hsic"):
        for field in ("value", "std_err"):
            expected = getattr(getattr(whole, name), field)
            got = getattr(getattr(merged, name), field)
            assert got == pytest.approx(expected, rel=tolerance), (name, field)


def test_pairs_of_a_state_with_many_representations():
    X, Y = related_pair(11, 800)
    Z = X[:, ::-1] ** 2
    maps = rff_maps(X, Y, 256, seed=0) + rff_maps(Z, Z, 256, seed=0)[:1]
    state = feature_state(maps, (X, Y, Z))
    alone = approximate_products(feature_state(maps[::2], (X, Z)), 0, 1, maps[0], maps[2])
    within = approximate_products(state, 0, 2, maps[0], maps[2])
    assert within.cka.value == pytest.approx(alone.cka.value, rel=1e-10)


def test_same_seed_same_value_and_other_seed_other_value():
    X, Y = related_pair(12, 600)
    assert cka_rff(X, Y, n_features=256, seed=5) == cka_rff(X, Y, n_features=256, seed=5)
    assert (
        cka_rff(X, Y, n_features=256, seed=5).value != cka_rff(X, Y, n_features=256, seed=6).value
    )
    assert cka_nystrom(X, Y, n_features=64, seed=5) == cka_nystrom(X, Y, n_features=64, seed=5)
    a, b = (RandomFourierFeatures(32, 64, 2.0, seed=1) for _ in range(2))
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    rows = nystrom_rows(1000, 50, seed=7)
    again = nystrom_rows(1000, 50, seed=7)
    for kind, count in (("landmarks", 40), ("probes", 10)):  # a fifth probes
        np.testing.assert_array_equal(getattr(rows, kind), getattr(again, kind))
        assert len(getattr(rows, kind)) == count
        assert np.all(np.diff(getattr(rows, kind)) > 0)
    assert not set(rows.landmarks) & set(rows.probes)
    assert len(nystrom_rows(1000, 5, seed=7).probes) == 3  # at least three


def test_median_sigma_is_repalign_median_sigma():
    X, Y = related_pair(13, 5000)  # over 4,096 rows: the seeded subsample
    maps = rff_maps(X, Y, 256, seed=0)
    by_hand = approximate_products(feature_state(maps, (X, Y)), 0, 1, *maps).cka.value
    assert cka_rff(X, Y, n_features=256).value == pytest.approx(by_hand, rel=1e-12)
    pooled = repalign.median_sigma(np.vstack([X, Y]))
    assert mmd2_rff(X, Y, n_features=256) == mmd2_rff(X, Y, n_features=256, sigma=pooled)


def test_float32_input_gives_the_float64_answer():
    X, Y = related_pair(14, 800)
    single = cka_rff(X.astype(np.float32), Y.astype(np.float32), n_features=256, sigma=8.0)
    double = cka_rff(X, Y, n_features=256, sigma=8.0)
    assert single.value == pytest.approx(double.value, rel=1e-5)  # input rounding, 6e-8


# --- MMD² ---------------------------------------------------------------------------------------


def two_samples(seed, shift):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1500, 16)), rng.standard_normal((1200, 16)) + shift


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_rff_mmd2_is_within_its_error_of_the_exact_value(estimator):
    X, Y = two_samples(15, shift=0.15)
    exact = repalign.mmd2(X, Y, estimator=estimator)
    result = mmd2_rff(X, Y, seed=1, estimator=estimator)
    assert result.std_err < 0.1 * exact
    assert abs(result.value - exact) <= 3 * result.std_err  # unbiased over features: no allowance


def test_rff_mmd2_of_one_distribution_is_zero_within_error():
    X, Y = two_samples(16, shift=0.0)
    result = mmd2_rff(X, Y, seed=1)
    shifted = mmd2_rff(*two_samples(16, shift=0.15), seed=1)
    # Within the feature error of the exact MMD²_u, which is 0 up to sampling noise: 2e-4 here
    # against 7.6e-3 for a shift of 0.15 standard deviations.
    assert abs(result.value - repalign.mmd2(X, Y)) <= 3 * result.std_err
    assert abs(result.value) < 0.1 * shifted.value


def test_mean_embeddings_equal_explicit_features_and_merge():
    X, Y = two_samples(17, shift=0.3)
    X, Y = X[:50], Y[:40]
    rff = RandomFourierFeatures(16, 64, 4.0, seed=3, blocks=4)
    halves = MeanEmbedding(64, 4), MeanEmbedding(64, 4)
    halves[0].add(rff.transform(X[:20]))
    halves[1].add(rff.transform(X[20:]))
    embedding_y = MeanEmbedding(64, 4)
    embedding_y.add(rff.transform(Y))
    embedding_x = halves[0] + halves[1]
    Fx, Fy = rff.transform(X), rff.transform(Y)
    biased = np.sum((Fx.mean(0) - Fy.mean(0)) ** 2) / 4  # blocks average: K̂ = ΦΦᵀ/B
    Kxx, Kyy, Kxy = (A @ B.T / 4 for A, B in ((Fx, Fx), (Fy, Fy), (Fx, Fy)))
    unbiased = (
        (Kxx.sum() - np.trace(Kxx)) / (50 * 49)
        + (Kyy.sum() - np.trace(Kyy)) / (40 * 39)
        - 2 * Kxy.mean()
    )
    assert approximate_mmd2(embedding_x, embedding_y, estimator="biased").value == pytest.approx(
        biased, rel=1e-10
    )
    assert approximate_mmd2(embedding_x, embedding_y).value == pytest.approx(unbiased, rel=1e-10)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_features": 100}, "n_features must be a multiple of blocks=16"),
        ({"n_features": 8}, "n_features must be at least 16"),
        ({"sigma": 0.0}, r"sigma must be a positive number or 'median'; got sigma=0.0"),
        ({"sigma": -1.0}, "sigma must be a positive number"),
        ({"sigma": "median"}, "Resolve 'median' first"),
        ({"blocks": 2}, "blocks must be at least 3"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"seed": 1.5}, "seed must be an integer; got 1.5"),
        ({"dim": 0}, "dim must be at least 1"),
    ],
)
def test_random_fourier_features_refuse_bad_arguments(kwargs, match):
    arguments = {"dim": 4, "n_features": 64, "sigma": 1.0, "seed": 0} | kwargs
    with pytest.raises(InvalidParameterError, match=match):
        RandomFourierFeatures(**arguments)


def test_nystrom_refuses_bad_arguments():
    Z = np.random.default_rng(0).standard_normal((8, 3))
    with pytest.raises(ValueError, match="probes must have at least 3 rows"):
        Nystrom(Z[:5], Z[5:7], 1.0)
    with pytest.raises(ShapeError, match="rows of one representation; got widths 3 and 2"):
        Nystrom(Z[:5], Z[5:, :2], 1.0)
    with pytest.raises(InvalidParameterError, match="sigma must be a positive number"):
        Nystrom(Z[:5], Z[5:], -2.0)
    with pytest.raises(ShapeError, match=r"X must have shape \(n_rows, 3\); got .* \(5, 2\)"):
        Nystrom(Z[:5], Z[5:], 1.0).transform(np.ones((5, 2)))
    with pytest.raises(InvalidParameterError, match="n_features must be between 4 and 10"):
        nystrom_rows(10, 11, seed=0)
    X, Y = related_pair(22, 40, d=3)
    assert np.isfinite(cka_nystrom(X, Y, n_features=4).value)  # 1 landmark, 3 probes
    maps = [Nystrom(A[:5], A[5:8], 1.0) for A in (X, Y)]
    with pytest.raises(InvalidParameterError, match="holds 6 rows, fewer than the 8 landmarks"):
        approximate_products(feature_state(maps, (X[:6], Y[:6])), 0, 1, *maps)


def test_convenience_functions_validate_their_input():
    X, Y = related_pair(18, 100)
    with pytest.raises(RowMismatchError, match="X and Y must have one row per sample"):
        cka_rff(X, Y[:-1])
    with pytest.raises(InvalidParameterError, match="sigma must be a positive number"):
        cka_nystrom(X, Y, sigma=0)
    with pytest.raises(InvalidParameterError, match="n_features must be between 4 and 100"):
        cka_nystrom(X, Y)  # 1,024 kernel columns by default
    with pytest.raises(ShapeError, match="same number of features"):
        mmd2_rff(X, Y[:, :5])
    with pytest.raises(UnknownOptionError, match="estimator='linear' is not supported"):
        mmd2_rff(X, Y, estimator="linear")


def test_approximate_products_refuses_mismatched_state_and_maps():
    X, Y = related_pair(19, 200)
    maps = rff_maps(X, Y, 64, seed=0)
    state = feature_state(maps, (X, Y))
    nystrom = Nystrom(X[:5], X[5:8], 1.0)
    with pytest.raises(InvalidParameterError, match="both be RandomFourierFeatures or both"):
        approximate_products(state, 0, 1, maps[0], nystrom)
    nystroms = [Nystrom(X[:5], X[5:8], 1.0), Nystrom(Y[:4], Y[4:7], 1.0)]
    with pytest.raises(InvalidParameterError, match="same rows; got 5 and 4 landmarks"):
        approximate_products(GramState([8, 7]), 0, 1, *nystroms)
    other = RandomFourierFeatures(32, 64, 1.0, seed=0, blocks=4)
    with pytest.raises(InvalidParameterError, match=r"as many independent parts .* got 16 and 4"):
        approximate_products(state, 0, 1, maps[0], other)
    wider = RandomFourierFeatures(32, 128, 1.0, seed=0)
    with pytest.raises(ShapeError, match="y=1 of the state has 64 columns, but its map gives 128"):
        approximate_products(state, 0, 1, maps[0], wider)
    with pytest.raises(InvalidParameterError, match="y must be between 0 and 1"):
        approximate_products(state, 0, 2, *maps)


def test_a_constant_representation_has_no_cka():
    X, _ = related_pair(20, 100)
    constant = np.ones_like(X)
    maps = rff_maps(X, X, 64, seed=0)
    with pytest.raises(ZeroVarianceError, match="representation 1 has no variation"):
        approximate_products(feature_state(maps, (X, constant)), 0, 1, *maps)


def test_mmd2_embeddings_must_match():
    a, b = MeanEmbedding(64, 8), MeanEmbedding(64, 4)
    with pytest.raises(ShapeError, match="only embeddings of one feature map add up"):
        a + b
    with pytest.raises(ShapeError, match="must hold features of one map"):
        approximate_mmd2(a, b)
    a.add(np.ones((1, 64)))
    c = MeanEmbedding(64, 8)
    c.add(np.ones((3, 64)))
    with pytest.raises(
        InvalidParameterError, match=r"'unbiased' MMD² needs more rows .* got 1 and 3"
    ):
        approximate_mmd2(a, c)


WEAK_MAPS = (
    np.random.default_rng(7).standard_normal((8, 64)),
    np.random.default_rng(8).standard_normal((8, 96)),
)


def weakly_related_pair(rng, n):
    """Two noisy nonlinear maps of one latent: RBF CKA about 0.04, where Nyström's own bias is
    many times the spread of groups of its landmarks."""
    latent = rng.standard_normal((n, 8))
    X = np.tanh(latent @ WEAK_MAPS[0]) + 0.3 * rng.standard_normal((n, 64))
    Y = np.tanh(latent @ WEAK_MAPS[1]) ** 2 + 0.5 * rng.standard_normal((n, 96))
    return X, Y


@pytest.mark.slow  # 200 exact RBF CKAs and their approximations
def test_intervals_of_random_features_cover_the_exact_value():
    """200 samples of n = 800, strongly (`related_pair`) and weakly related pairs in turn: the
    value ± t₀.₉₇₅,B−1 · std_err covers the exact RBF CKA of the same sample in 93–97% of them,
    for RFF (256 features in B = 16 blocks) and for Nyström (160 kernel columns: 128 landmarks
    and B = 32 probes), and in at least 90% of either kind of pair alone (100 samples each, a
    binomial spread of ±2.2%). Nyström's value without its probes covered none of the weak
    pairs with the landmark groups' spread."""
    rng = np.random.default_rng(11)
    covered = {"rff": [], "nystrom": []}
    for sample in range(200):
        strong = sample % 2 == 0
        X, Y = related_pair(sample, 800, d=8) if strong else weakly_related_pair(rng, 800)
        sigmas = repalign.median_sigma(X), repalign.median_sigma(Y)
        kl, kk, ll = exact_rbf_products(X, Y, *sigmas)
        exact = kl / np.sqrt(kk * ll)
        rows = nystrom_rows(800, 160, sample)
        maps = {
            "rff": [RandomFourierFeatures(A.shape[1], 256, s, seed=sample)
                    for A, s in zip((X, Y), sigmas, strict=True)],
            "nystrom": [Nystrom(A[rows.landmarks], A[rows.probes], s)
                        for A, s in zip((X, Y), sigmas, strict=True)],
        }  # fmt: skip
        for kind, pair in maps.items():
            cka = approximate_products(feature_state(pair, (X, Y)), 0, 1, *pair).cka
            quantile = stats.t.ppf(0.975, pair[0]._units - 1)
            covered[kind].append(abs(cka.value - exact) <= quantile * cka.std_err)
    for kind, hits in covered.items():
        assert 0.93 <= np.mean(hits) <= 0.97, (kind, np.mean(hits))
        for parity in (0, 1):  # strong, weak
            assert np.mean(hits[parity::2]) >= 0.90, (kind, parity, np.mean(hits[parity::2]))
