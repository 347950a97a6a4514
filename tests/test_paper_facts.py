"""The testable facts T1–T16 and T30 of docs/theory.md §7 (Insulla, Huang & Rosasco 2025)."""

import numpy as np
import pytest
from scipy.stats import ortho_group

import repalign
from tests import reference
from tests.conftest import paired_data

Z1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
Z2 = np.array([[1.0], [1.0], [2.0], [1.0]])


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("seed", range(3))
def test_t1_self_alignment_is_one(kernel, seed):
    X, _ = paired_data(seed, 50, 6, 1)
    assert repalign.kernel_alignment(X, X, kernel=kernel) == pytest.approx(1.0, abs=1e-12)
    for estimator in ("biased", "song", "lange"):
        assert repalign.cka(X, X, kernel=kernel, estimator=estimator) == pytest.approx(
            1.0, abs=1e-12
        )


@pytest.mark.parametrize("c", [0.01, 3.0, 250.0])
def test_t2_scale(c):
    """Scaling X by √c scales the linear kernel by c."""
    X, Y = paired_data(0, 40, 5, 3)
    assert repalign.kernel_alignment(np.sqrt(c) * X, Y) == pytest.approx(
        repalign.kernel_alignment(X, Y), rel=1e-12
    )
    assert repalign.cka(np.sqrt(c) * X, Y) == pytest.approx(repalign.cka(X, Y), rel=1e-12)
    assert repalign.kernel_alignment(X, np.sqrt(c) * X) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("c", [-2.0, 0.5, 7.0])
@pytest.mark.parametrize("seed", range(3))
def test_t3_orthogonal_invariance(seed, c):
    X, Y = paired_data(seed, 40, 5, 3)
    Q = ortho_group.rvs(5, random_state=seed)
    for measure in (repalign.kernel_alignment, repalign.cka):
        assert measure(c * X @ Q, Y) == pytest.approx(measure(X, Y), rel=1e-12)


def test_t4_translation_changes_ka_not_cka():
    X, Y = paired_data(0, 40, 5, 3)
    b = np.arange(1.0, 6.0)
    assert repalign.cka(X + b, Y) == pytest.approx(repalign.cka(X, Y), rel=1e-10)
    assert abs(repalign.kernel_alignment(X + b, Y) - repalign.kernel_alignment(X, Y)) > 1e-3


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("seed", range(5))
def test_t5_bounds_and_symmetry(kernel, seed):
    X, Y = paired_data(seed, 30, 4, 6)
    for measure in (repalign.kernel_alignment, repalign.cka):
        value = measure(X, Y, kernel=kernel)
        assert 0.0 <= value <= 1.0
        assert measure(Y, X, kernel=kernel) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_t6_gram_form_equals_covariance_form(seed):
    """eq. (1): KA = ‖Z₁ᵀZ₂‖² / (‖Z₁ᵀZ₁‖ ‖Z₂ᵀZ₂‖), and CKA the same after centring."""
    X, Y = paired_data(seed, 80, 6, 4)
    K, L = X @ X.T, Y @ Y.T
    covariance_form = np.linalg.norm(X.T @ Y) ** 2 / (
        np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    )
    assert reference.ka(K, L) == pytest.approx(covariance_form, rel=1e-12)
    assert repalign.kernel_alignment(X, Y) == pytest.approx(covariance_form, rel=1e-12)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    centred_form = np.linalg.norm(Xc.T @ Yc) ** 2 / (
        np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)
    )
    assert repalign.cka(X, Y) == pytest.approx(centred_form, rel=1e-12)


def test_t7_spectral_form():
    X, Y = paired_data(1, 25, 4, 3)
    a, U1 = np.linalg.eigh(X @ X.T)
    b, U2 = np.linalg.eigh(Y @ Y.T)
    C = U1.T @ U2
    spectral = a @ (C * C) @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert repalign.kernel_alignment(X, Y) == pytest.approx(spectral, rel=1e-10)


def test_t8_shared_eigenvectors_give_cosine_of_spectra():
    rng = np.random.default_rng(8)
    n = 12
    U = ortho_group.rvs(n, random_state=8)
    a, b = rng.uniform(0, 3, n), rng.uniform(0, 3, n)
    X, Y = U * np.sqrt(a), U * np.sqrt(b)  # K = U diag(a) Uᵀ, L = U diag(b) Uᵀ
    expected = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert repalign.kernel_alignment(X, Y) == pytest.approx(expected, rel=1e-10)


def test_t9_kernel_target_spectral_formula():
    rng = np.random.default_rng(9)
    n, r = 30, 6
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    eta, w = rng.uniform(0.1, 2.0, r), rng.standard_normal(r)
    X = V * np.sqrt(n * eta)  # K/n = V diag(η) Vᵀ
    h = np.sqrt(n) * V @ (np.sqrt(eta) * w)
    value = repalign.kernel_alignment(X, h[:, None])
    correct = np.sum(eta**2 * w**2) / (np.sqrt(np.sum(eta**2)) * np.sum(eta * w**2))
    misread = np.sum(eta**2 * w**2) / np.sqrt(np.sum(eta**2) * np.sum(eta * w**2))
    assert value == pytest.approx(correct, rel=1e-10)
    assert value != pytest.approx(misread, rel=1e-3)


def test_t10_tiny_exact_example():
    K1, K2 = repalign.linear_gram(Z1), repalign.linear_gram(Z2)
    assert np.sum(K1 * K2) == 34 and np.sum(K1 * K1) == 42 and np.sum(K2 * K2) == 49
    assert repalign.kernel_alignment(Z1, Z2) == pytest.approx(34 / (7 * np.sqrt(42)), rel=1e-12)
    assert repalign.kernel_alignment(Z1, Z2) == pytest.approx(0.7494734141, abs=1e-10)
    assert repalign.cka(Z1, Z2) == pytest.approx(0.25 / np.sqrt(3.9375), rel=1e-12)
    assert repalign.cka(Z1, Z2) == pytest.approx(0.1259881577, abs=1e-10)
    assert repalign.hsic(Z1, Z2) == pytest.approx(0.25 / 9, rel=1e-12)  # Tr(K₁HK₂H)/(n−1)²
    assert repalign.hsic(Z1, Z2) * 9 / 16 == pytest.approx(0.015625, rel=1e-12)  # 1/n² form


@pytest.mark.parametrize("seed", range(3))
def test_t11_distance_alignment_identity(seed):
    X, Y = paired_data(seed, 40, 5, 3)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    n = len(X)
    norm_x = np.linalg.norm(X @ X.T) / n
    norm_y = np.linalg.norm(Y @ Y.T) / n
    ka = repalign.kernel_alignment(X, Y)
    expected = 4 * (norm_x**2 + norm_y**2 - 2 * norm_x * norm_y * ka)
    assert repalign.distance_alignment(X, Y) == pytest.approx(expected, rel=1e-10)


def test_t11_equal_norms_give_8c_squared_not_8c():
    """Y = X with its rows permuted has a Gram matrix of the same norm C but another pattern."""
    X, _ = paired_data(4, 40, 5, 1)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = X[np.random.default_rng(4).permutation(len(X))]
    C = np.linalg.norm(X @ X.T) / len(X)
    assert np.linalg.norm(Y @ Y.T) / len(Y) == pytest.approx(C, rel=1e-12)
    ka = repalign.kernel_alignment(X, Y)
    value = repalign.distance_alignment(X, Y)
    assert value == pytest.approx(8 * C**2 * (1 - ka), rel=1e-10)
    assert value != pytest.approx(8 * C * (1 - ka), rel=1e-2)


def test_t12_hsic_zero_by_construction():
    rng = np.random.default_rng(12)
    n = 30
    X = rng.standard_normal((n, 3))
    Xc = X - X.mean(0)
    Y = rng.standard_normal((n, 2))
    Yc = Y - Y.mean(0)
    Yc -= Xc @ np.linalg.lstsq(Xc, Yc, rcond=None)[0]  # (HX)ᵀ(HY) = 0
    assert repalign.hsic(X, Yc) == pytest.approx(0.0, abs=1e-14)
    assert repalign.cka(X, Yc) == pytest.approx(0.0, abs=1e-14)


def test_t12_independent_samples_pass_a_permutation_test():
    rng = np.random.default_rng(120)
    X, Y = rng.standard_normal((400, 3)), rng.standard_normal((400, 2))
    observed = repalign.hsic(X, Y, estimator="unbiased")
    null = [repalign.hsic(X, rng.permutation(Y), estimator="unbiased") for _ in range(200)]
    spread = np.std(null)
    assert abs(observed) < 3 * spread
    assert abs(np.mean(null)) < 3 * spread / np.sqrt(len(null)) * 3


def test_t13_unbiased_hsic_has_mean_zero_and_biased_has_positive_bias():
    rng = np.random.default_rng(13)
    draws = [(rng.standard_normal((20, 2)), rng.standard_normal((20, 2))) for _ in range(2000)]
    unbiased = np.array([repalign.hsic(X, Y, estimator="unbiased") for X, Y in draws])
    biased = np.array([repalign.hsic(X, Y) for X, Y in draws])
    standard_error = unbiased.std() / np.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 4 * standard_error
    assert biased.mean() > 10 * biased.std() / np.sqrt(len(biased))  # clearly positive


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_t14_mmd_of_joint_against_product_is_hsic(kernel):
    X, Y = paired_data(14, 9, 2, 2)
    n = len(X)
    K, L = reference.gram(X, kernel), reference.gram(Y, kernel)
    # atoms: (i, j) of the product; the joint puts 1/n on the diagonal atoms (i, i)
    product_kernel = np.kron(K, L)
    joint = np.zeros(n * n)
    joint[np.arange(n) * n + np.arange(n)] = 1 / n
    product = np.full(n * n, 1 / n**2)
    w = joint - product
    mmd_v = w @ product_kernel @ w
    hsic_n2 = repalign.hsic(X, Y, kernel=kernel) * (n - 1) ** 2 / n**2
    assert mmd_v == pytest.approx(hsic_n2, rel=1e-10)


def test_t15_mmd_of_identical_samples():
    X, Y = paired_data(15, 50, 4, 4)
    assert repalign.mmd2(X, X, estimator="biased") == pytest.approx(0.0, abs=1e-15)
    assert repalign.mmd2(X, Y, estimator="biased") >= 0
    assert repalign.mmd2(X, X, estimator="unbiased") != 0.0


def test_t15_unbiased_mmd_has_mean_zero_under_equal_distributions():
    rng = np.random.default_rng(150)
    values = np.array(
        [
            repalign.mmd2(rng.standard_normal((15, 2)), rng.standard_normal((15, 2)), sigma=1.0)
            for _ in range(1500)
        ]
    )
    assert abs(values.mean()) < 4 * values.std() / np.sqrt(len(values))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_t16_cka_is_normalised_hsic_for_either_normalisation(kernel):
    X, Y = paired_data(16, 30, 4, 3)
    h = [repalign.hsic(A, B, kernel=kernel) for A, B in ((X, Y), (X, X), (Y, Y))]
    assert repalign.cka(X, Y, kernel=kernel) == pytest.approx(
        h[0] / np.sqrt(h[1] * h[2]), rel=1e-12
    )
    scale = (len(X) - 1) ** 2 / len(X) ** 2  # the 1/n² normalisation
    assert repalign.cka(X, Y, kernel=kernel) == pytest.approx(
        h[0] * scale / np.sqrt(h[1] * scale * h[2] * scale), rel=1e-12
    )


@pytest.mark.parametrize("seed", range(5))
def test_t30_kernel_target_alignment_bounds_the_risk(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 3))
    y = np.where(X[:, 0] + 0.5 * rng.standard_normal(40) > 0, 1.0, -1.0)
    K = X @ X.T
    h = (K @ y) / len(y) / np.sqrt(np.mean(K**2))
    risk = np.mean((y - h) ** 2)
    # yyᵀ is the linear kernel of the one-column representation y
    assert risk <= 2 * (1 - repalign.kernel_alignment(X, y[:, None])) + 1e-12
    assert risk > 0


@pytest.mark.parametrize("seed", range(5))
def test_t30_holds_for_an_rbf_kernel_too(seed):
    """The bound needs only a PSD K: checked on the reference RBF Gram (the library has no
    mixed-kernel KA, so this one is a check of the fact, with the same formula)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 3))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    K = repalign.rbf_gram(X)
    h = (K @ y) / len(y) / np.sqrt(np.mean(K**2))
    assert np.mean((y - h) ** 2) <= 2 * (1 - reference.ka(K, np.outer(y, y))) + 1e-12
