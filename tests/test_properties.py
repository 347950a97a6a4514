"""Defining properties of the measures, on inputs drawn by hypothesis.

Inputs are drawn as (seed, shape, distribution, scale) and built with numpy, so that each
example is a realistic representation (Gaussian, heavy-tailed, low-rank or shifted) rather
than an arbitrary float array with constant columns.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

import repalign
from repalign.measures.kernel_products import FeatureProducts, GramProducts
from repalign.measures.spectra import DataSpectra, feature_spectra
from repalign.stats import GramState

KINDS = ("gaussian", "heavy", "lowrank", "shifted")


@st.composite
def representation_pairs(draw, min_rows=6, max_rows=40):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(min_rows, max_rows))
    dx, dy = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kind = draw(st.sampled_from(KINDS))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    rng = np.random.default_rng(seed)

    def make(d):
        if kind == "heavy":
            return rng.standard_t(3, (n, d))
        if kind == "lowrank":
            return rng.standard_normal((n, 2)) @ rng.standard_normal((2, d))
        if kind == "shifted":
            return rng.standard_normal((n, d)) + 50.0
        return rng.standard_normal((n, d))

    X = make(dx) * scale
    Y = X[:, :1] @ rng.standard_normal((1, dy)) + make(dy) * scale
    return X, Y, rng


SIMILARITIES = [
    lambda X, Y: repalign.kernel_alignment(X, Y),
    lambda X, Y: repalign.cka(X, Y),
    lambda X, Y: repalign.cka(X, Y, kernel="rbf"),
    lambda X, Y: repalign.procrustes(X, Y),
    lambda X, Y: repalign.cca(X, Y),
]


@settings(max_examples=60, deadline=None)
@given(representation_pairs())
def test_symmetric(data):
    X, Y, _ = data
    for measure in (*SIMILARITIES, repalign.distance_alignment):
        assert measure(X, Y) == pytest.approx(measure(Y, X), rel=1e-8, abs=1e-12)
    for estimator in ("song", "lange"):
        assert repalign.cka(X, Y, estimator=estimator) == pytest.approx(
            repalign.cka(Y, X, estimator=estimator), rel=1e-8, abs=1e-12
        )


@settings(max_examples=60, deadline=None)
@given(representation_pairs())
def test_ranges(data):
    X, Y, _ = data
    tiny = 1e-9  # round-off
    for measure in SIMILARITIES:
        assert -tiny <= measure(X, Y) <= 1 + tiny
    assert 0 <= repalign.mutual_knn(X, Y, k=3) <= 1
    assert repalign.hsic(X, Y) >= -tiny * repalign.hsic(X, X)
    spread = sum(np.sum((A - A.mean(0)) ** 2) / len(A) for A in (X, Y))
    assert repalign.distance_alignment(X, Y) >= -tiny * (4 * spread) ** 2  # D̂'s natural scale


@settings(max_examples=60, deadline=None)
@given(representation_pairs())
def test_self_similarity_is_one(data):
    X, _, _ = data
    for measure in SIMILARITIES:
        assert measure(X, X) == pytest.approx(1.0, abs=1e-8)
    assert repalign.cka(X, X, estimator="song") == pytest.approx(1.0, abs=1e-8)
    assert repalign.distance_alignment(X, X) == pytest.approx(0.0, abs=1e-9 * np.abs(X).max() ** 4)


@settings(max_examples=60, deadline=None)
@given(representation_pairs(), st.floats(0.01, 100.0))
def test_invariant_to_rotation_and_isotropic_scaling(data, c):
    X, Y, rng = data
    Q = ortho_group.rvs(X.shape[1], random_state=rng) if X.shape[1] > 1 else np.array([[-1.0]])
    moved = c * X @ Q
    for measure in (repalign.kernel_alignment, repalign.cka, repalign.procrustes, repalign.cca):
        assert measure(moved, Y) == pytest.approx(measure(X, Y), rel=1e-7, abs=1e-10)


@settings(max_examples=60, deadline=None)
@given(representation_pairs())
def test_translation_invariance(data):
    X, Y, rng = data
    b = rng.standard_normal(X.shape[1]) * 10 * np.abs(X).max()
    for measure in (repalign.cka, repalign.procrustes, repalign.cca):
        assert measure(X + b, Y) == pytest.approx(measure(X, Y), rel=1e-6, abs=1e-9)
    for estimator in ("song", "lange"):
        assert repalign.cka(X + b, Y, estimator=estimator) == pytest.approx(
            repalign.cka(X, Y, estimator=estimator), rel=1e-6, abs=1e-9
        )


@settings(max_examples=80, deadline=None)
@given(representation_pairs(min_rows=20))
def test_feature_and_gram_forms_are_identical(data):
    """The two sources of every linear-kernel product agree to 1e-10 relative."""
    X, Y, _ = data
    features = FeatureProducts(GramState.from_arrays([X, Y]))
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    grams = GramProducts(X @ X.T, Y @ Y.T, translated=(Xc @ Xc.T, Yc @ Yc.T))
    for name in ("raw", "centered", "lange", "song"):
        for r, s in ((0, 1), (0, 0), (1, 1)):
            scale = np.sqrt(getattr(grams, name)(r, r) * getattr(grams, name)(s, s))
            difference = getattr(features, name)(r, s) - getattr(grams, name)(r, s)
            assert abs(difference) <= 1e-10 * scale, (name, r, s)


@settings(max_examples=60, deadline=None)
@given(representation_pairs(min_rows=20))
def test_feature_and_data_spectra_agree(data):
    X, Y, _ = data
    features = feature_spectra(GramState.from_arrays([X, Y]), 0, 1)
    direct = DataSpectra(X, Y)
    np.testing.assert_allclose(
        features.cross_singular_values(),
        direct.cross_singular_values(),
        rtol=1e-9,
        atol=1e-10 * direct.cross_singular_values()[0],
    )
    assert features.ranks == direct.ranks
