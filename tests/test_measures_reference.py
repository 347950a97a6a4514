"""Every estimator against the brute-force forms of tests/reference.py.

Two regimes are covered for each linear-kernel measure: n ≥ d_x + d_y + 2, where the library
works from d×d second moments, and n < d_x + d_y + 2, where it uses n×n matrices or thin SVDs.
Both are exact algebra in float64, so the tolerance is 1e-10 relative (room for round-off of
sums of n·d products).
"""

import numpy as np
import pytest

import repalign
from tests import reference
from tests.conftest import paired_data

REGIMES = {"moments": (60, 5, 9), "grams": (12, 8, 10)}
TOL = 1e-10


@pytest.fixture(params=[(seed, regime) for seed in (0, 1, 2) for regime in REGIMES])
def pair(request):
    seed, regime = request.param
    return paired_data(seed, *REGIMES[regime])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_alignment_linear(pair, dtype):
    X, Y = (A.astype(dtype) for A in pair)
    K, L = reference.gram(X), reference.gram(Y)
    assert repalign.kernel_alignment(X, Y) == pytest.approx(reference.ka(K, L), rel=TOL)


@pytest.mark.parametrize("estimator", ["biased", "song", "lange"])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka(pair, kernel, estimator):
    X, Y = pair
    K, L = reference.gram(X, kernel), reference.gram(Y, kernel)
    expected = reference.cka(K, L, estimator)
    assert repalign.cka(X, Y, kernel=kernel, estimator=estimator) == pytest.approx(
        expected, rel=TOL
    )


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_hsic(pair, kernel, estimator):
    X, Y = pair
    K, L = reference.gram(X, kernel), reference.gram(Y, kernel)
    h = reference.hsic_biased if estimator == "biased" else reference.hsic_unbiased
    assert repalign.hsic(X, Y, kernel=kernel, estimator=estimator) == pytest.approx(
        h(K, L), rel=TOL
    )


def test_rbf_kernel_alignment_with_fixed_sigma(pair):
    X, Y = pair
    K, L = reference.gram(X, "rbf", 2.5), reference.gram(Y, "rbf", 2.5)
    assert repalign.kernel_alignment(X, Y, kernel="rbf", sigma=2.5) == pytest.approx(
        reference.ka(K, L), rel=TOL
    )


@pytest.mark.parametrize("seed", range(3))
def test_song_formula_is_the_u_statistic(seed):
    """The closed form of Song et al. equals the three U-statistics summed by plain loops."""
    X, Y = paired_data(seed, 7, 3, 2)
    K, L = reference.gram(X), reference.gram(Y, "rbf")
    assert reference.hsic_unbiased(K, L) == pytest.approx(
        reference.hsic_u_statistic(K, L), rel=1e-10
    )
    assert repalign.hsic(X, Y, estimator="unbiased") == pytest.approx(
        reference.hsic_u_statistic(K, reference.gram(Y)), rel=1e-10
    )


def test_procrustes(pair):
    X, Y = pair
    expected = reference.procrustes(X, Y)
    assert repalign.procrustes(X, Y) == pytest.approx(expected, rel=TOL)
    assert repalign.procrustes_distance(X, Y) == pytest.approx(np.arccos(expected), rel=1e-8)


@pytest.mark.parametrize("squared", [False, True])
def test_cca(pair, squared):
    X, Y = pair
    # subspace_angles is accurate to ~1e-9 for small angles; CCA is a mean of cosines.
    assert repalign.cca(X, Y, squared=squared) == pytest.approx(
        reference.cca(X, Y, squared=squared), rel=1e-9
    )


@pytest.mark.parametrize("variance", [0.5, 0.9, 0.99, 1.0])
def test_svcca(pair, variance):
    X, Y = pair
    assert repalign.svcca(X, Y, variance=variance) == pytest.approx(
        reference.svcca(X, Y, variance), rel=1e-9
    )


@pytest.mark.parametrize("k", [1, 3, 5])
def test_mutual_knn(pair, k):
    X, Y = pair
    assert repalign.mutual_knn(X, Y, k=k) == pytest.approx(reference.mutual_knn(X, Y, k))


@pytest.mark.parametrize("k", [3, 5, 8])
def test_cknna(pair, k):
    X, Y = pair
    assert repalign.cknna(X, Y, k=k) == pytest.approx(reference.cknna(X, Y, k), rel=TOL)


@pytest.mark.parametrize("seed", range(4))
def test_cknna_of_unrelated_representations_with_few_or_no_shared_neighbours(seed):
    """Independent X and Y at k = 1 share few entries of their k-NN masks, or none (CKNNA 0)."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    assert repalign.cknna(X, Y, k=1) == pytest.approx(reference.cknna(X, Y, 1), rel=TOL, abs=TOL)


def test_distance_alignment(pair):
    X, Y = pair
    assert repalign.distance_alignment(X, Y) == pytest.approx(
        reference.distance_alignment(X, Y), rel=TOL
    )


MMD_CASES = [
    (estimator, rows)
    for estimator in ("unbiased", "biased", "linear")
    for rows in ((20, 20), (15, 23), (9, 9))
    if estimator != "linear" or rows[0] == rows[1]  # the linear-time estimator pairs rows
]


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
@pytest.mark.parametrize(("estimator", "rows"), MMD_CASES)
def test_mmd2(kernel, estimator, rows):
    m, n = rows
    rng = np.random.default_rng(m * n)
    X = rng.standard_normal((m, 4)) + 1.0
    Y = rng.standard_normal((n, 4)) * 1.3
    expected = reference.mmd2(X, Y, kernel, estimator=estimator)
    assert repalign.mmd2(X, Y, kernel=kernel, estimator=estimator) == pytest.approx(
        expected, rel=TOL
    )


def test_median_sigma_matches_pdist():
    X, _ = paired_data(0, 50, 6, 1)
    expected = np.sqrt(np.median(reference.pdist(X, "sqeuclidean")))
    assert repalign.median_sigma(X) == pytest.approx(expected, rel=1e-12)


def test_gram_helpers_match_reference():
    X, _ = paired_data(1, 30, 4, 1)
    np.testing.assert_allclose(repalign.linear_gram(X), reference.gram(X), rtol=1e-12)
    np.testing.assert_allclose(
        repalign.rbf_gram(X, sigma=1.7), reference.gram(X, "rbf", 1.7), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(repalign.rbf_gram(X), reference.gram(X, "rbf"), rtol=1e-12)


def test_accepts_torch_tensors_and_lists():
    torch = pytest.importorskip("torch")
    X, Y = paired_data(3, 40, 3, 4)
    expected = repalign.cka(X, Y)
    assert repalign.cka(torch.tensor(X, requires_grad=True), torch.tensor(Y)) == pytest.approx(
        expected, rel=1e-12
    )
    assert repalign.cka(X.tolist(), Y.tolist()) == pytest.approx(expected, rel=1e-12)
