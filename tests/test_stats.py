"""The mergeable second-moment statistic, against direct numpy sums."""

import numpy as np
import pytest

from repalign.stats import BorderState, GramState
from tests.conftest import paired_data
from tests.reference import rounding


def direct_blocks(X, Y):
    """Everything PairMoments exposes, summed by numpy over whole arrays."""
    a, b = np.sum(X * X, axis=1), np.sum(Y * Y, axis=1)
    features, norms = (X, Y), (a, b)
    return {
        "cross": {(r, s): features[r].T @ features[s] for r in (0, 1) for s in (0, 1)},
        "norm_products": {(r, s): norms[r] @ norms[s] for r in (0, 1) for s in (0, 1)},
        "features_times_norms": {(r, s): features[r].T @ norms[s] for r in (0, 1) for s in (0, 1)},
        "feature_sums": {(r,): features[r].sum(axis=0) for r in (0, 1)},
        "norm_sum": {(r,): norms[r].sum() for r in (0, 1)},
    }


def assert_moments_equal(moments, expected, magnitudes):
    """``magnitudes``: the same blocks of the raw data's absolute values, Σ|terms| of each sum.

    The state sums raw (uncentred) products over n rows and centres afterwards, a few such
    sums combined: each block is good to 2n·ε·Σ|terms| (`reference.rounding`), an absolute
    error that centring, which cancels most of the sum, does not shrink.
    """
    for method, values in expected.items():
        for args, value in values.items():
            tolerance = rounding(2 * moments.n, np.abs(magnitudes[method][args]).max())
            np.testing.assert_allclose(getattr(moments, method)(*args), value, atol=tolerance)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_pair_moments_match_numpy(seed, center):
    X, Y = paired_data(seed, 300, 6, 4)
    moments = GramState.from_arrays([X, Y]).pair(0, 1, center=center)
    magnitudes = direct_blocks(np.abs(X), np.abs(Y))
    if center:
        X, Y = X - X.mean(0), Y - Y.mean(0)
    assert moments.n == 300
    assert_moments_equal(moments, direct_blocks(X, Y), magnitudes)


@pytest.mark.parametrize("center", [True, False])
def test_any_shift_gives_the_same_moments(center):
    """The shift only conditions the sums: re-centring recovers the same statistic."""
    X, Y = paired_data(5, 200, 3, 5, offset=5.0)  # far larger offsets need a pilot shift
    rng = np.random.default_rng(1)
    reference = GramState.from_arrays([X, Y]).pair(0, 1, center=center)
    for shifts in ([np.zeros(3), np.zeros(5)], [X[0], Y[0]], [rng.normal(size=3), -Y[3]]):
        state = GramState([3, 5], shifts)
        state.add_block([X, Y])
        shifted = state.pair(0, 1, center=center)
        for r in (0, 1):
            np.testing.assert_allclose(
                shifted.cross(r, 1 - r), reference.cross(r, 1 - r), rtol=1e-9, atol=1e-6
            )
            assert shifted.norm_products(r, 1 - r) == pytest.approx(
                reference.norm_products(r, 1 - r), rel=1e-9
            )


def test_blocks_and_merged_states_equal_one_pass():
    X, Y = paired_data(2, 500, 4, 7)
    shifts = [X[:10].mean(0), Y[:10].mean(0)]  # a pilot shift, as a job would use
    whole = GramState([4, 7], shifts)
    whole.add_block([X, Y])
    left, right = GramState([4, 7], shifts), GramState([4, 7], shifts)
    for start in range(0, 300, 64):  # uneven blocks
        left.add_block([X[start : min(start + 64, 300)], Y[start : min(start + 64, 300)]])
    right.add_block([X[300:], Y[300:]])
    merged = left + right
    assert merged.n == 500
    # both sum the same 500 products zzᵀ in another grouping: each within n·ε·Σ|zzᵀ|
    magnitude = GramState([4, 7], [np.zeros(4), np.zeros(7)])
    magnitude.add_block([np.abs(X - shifts[0]), np.abs(Y - shifts[1])])
    assert np.all(np.abs(merged.moments - whole.moments) <= rounding(2 * 500, magnitude.moments))
    np.testing.assert_allclose(merged.mean(1), Y.mean(0), atol=rounding(2 * 500, np.abs(Y).mean()))


def test_many_representations_in_one_state():
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((120, d)) + d for d in (2, 5, 3)]
    state = GramState.from_arrays(arrays)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        moments = state.pair(i, j, center=False)
        expected, magnitude = arrays[i].T @ arrays[j], np.abs(arrays[i]).T @ np.abs(arrays[j])
        # sums of 120 products, moved from the state's centred sums: 2n·ε·Σ|terms|
        assert np.all(np.abs(moments.cross(0, 1) - expected) <= rounding(240, magnitude))


def test_states_with_other_shifts_do_not_add():
    a = GramState([2], [np.zeros(2)])
    b = GramState([2], [np.ones(2)])
    with pytest.raises(ValueError, match="same widths and shifts"):
        a + b
    with pytest.raises(ValueError, match="same widths and shifts"):
        a + GramState([3])


def test_in_place_addition_equals_addition_and_keeps_the_matrix():
    X, Y = paired_data(6, 300, 3, 4)
    left, right = GramState([3, 4]), GramState([3, 4])
    left.add_block([X[:100], Y[:100]])
    right.add_block([X[100:], Y[100:]])
    expected = (left + right).moments
    matrix = left._upper
    left += right
    assert left._upper is matrix  # no new D×D matrix per merged unit
    np.testing.assert_allclose(left.moments, expected, rtol=1e-15)
    with pytest.raises(ValueError, match="same widths and shifts"):
        left += GramState([3, 5])


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_a_border_extends_a_state_to_the_state_of_all(precision):
    """Old state + the border of new representations (two units, merged) = the state of all,
    computed at once: the same sums of products, in other groupings (2n·ε·Σ|terms| in float64;
    in float32 the block products' own bound, b·ε₃₂·Σ|terms|, tests/test_precision.py)."""
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal((900, d)) * 2 + d for d in (3, 5, 4, 2)]
    shifts = [A[:100].mean(0) for A in arrays]
    old = GramState((3, 5), shifts[:2])
    old.add_block(arrays[:2])
    first, second = (BorderState((3, 5, 4, 2), shifts, 2, precision) for _ in range(2))
    first.add_block([A[:400] for A in arrays])
    second.add_block([A[400:] for A in arrays])
    extended = old.extended(first + second)
    whole = GramState((3, 5, 4, 2), shifts)
    whole.add_block(arrays)
    magnitude = GramState((3, 5, 4, 2))
    magnitude.add_block([np.abs(A - c) for A, c in zip(arrays, shifts, strict=True)])
    eps = np.finfo(np.float64 if precision == "float64" else np.float32).eps
    assert extended.n == whole.n == 900
    assert np.all(np.abs(extended.moments - whole.moments) <= 2 * 900 * eps * magnitude.moments)
    old_block = slice(0, int(old.offsets[-1]))
    assert np.array_equal(extended.moments[old_block, old_block], old.moments[old_block, old_block])
    other_shifts = BorderState((3, 5, 4), [shifts[0] + 1, *shifts[1:3]], 2)
    other_shifts.add_block(arrays[:3])
    with pytest.raises(ValueError, match="extend this state's layout"):
        old.extended(other_shifts)
