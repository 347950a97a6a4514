"""The float32 mode of the moment statistic against float64 (docs/design.md §4, "Precision"):
within its stated error for every linear measure, on data far from the origin, and really
computed in float32."""

import functools

import numpy as np
import pytest

from jobs.alignment import run_alignment
from repalign.measures.moments import moment_value
from repalign.measures.spectra import principal_axes
from repalign.registry import pass_of
from repalign.spec import Measure, parse_spec
from repalign.stats import FLOAT32_BLOCK_ROWS, GramState
from repalign.store import write_representation
from tests.reference import rounding
from tests.test_engine import EVERY_MEASURE

EPS32 = float(np.finfo(np.float32).eps)
LINEAR = [m for m in EVERY_MEASURE if pass_of(Measure(**m)) == "moments"]
"""Every configuration of the moments pass, the one that ``precision`` applies to."""
STATED_ERROR = 1e-6
"""docs/design.md §4, "Precision": the largest difference from float64 of KA, CKA,
Procrustes, CCA and SVCCA, and of HSIC relative to its value, on well-conditioned data."""


def far_from_origin(n, widths, seed=0):
    """Related representations (a shared latent), each column of mean 1e3 and unit variance,
    in float32 as a store holds them."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6))
    arrays = []
    for width in widths:
        X = latent @ rng.standard_normal((6, width)) + rng.standard_normal((n, width))
        arrays.append(((X - X.mean(0)) / X.std(0) + 1e3).astype(np.float32))
    return arrays


def pilot_state(arrays, precision):
    """The statistic as a job builds it: shifted by the mean of the first 1,024 rows."""
    shifts = [A[:1024].mean(axis=0, dtype=np.float64) for A in arrays]
    state = GramState([A.shape[1] for A in arrays], shifts, precision)
    for rows in state.row_blocks(len(arrays[0])):
        state.add_block([A[rows] for A in arrays])
    return state


def every_value(state):
    axes = functools.cache(functools.partial(principal_axes, state))
    values = {}
    for content in LINEAR:
        config = Measure(**content)
        for i in range(len(state.dims)):
            for j in range(i, len(state.dims)):
                key = (config.name, config.estimator, i, j)
                values[key] = moment_value(config, state, i, j, axes)
    return values


def assert_within_stated_error(single, double):
    assert single.keys() == double.keys()
    for key, value in double.items():
        scale = abs(value) if key[0] == "hsic" else 1.0
        assert abs(single[key] - value) <= STATED_ERROR * scale, key


def test_float32_moments_are_within_the_block_rounding_bound():
    """Each entry of a float32 block is a sum of b products of entries rounded once to float32
    (the squared norms: sums of d squares, rounded d times): at most (b + 2d + 2)·ε₃₂ of the
    sum of |products| (Higham §4.2); the blocks are added in float64. The difference must also
    exceed what float64 rounding allows, or the products were not computed in float32."""
    n, widths = 20_000, (5, 24, 40)
    arrays = far_from_origin(n, widths)
    single, double = pilot_state(arrays, "float32"), pilot_state(arrays, "float64")
    magnitude = GramState(widths)
    magnitude.add_block([np.abs(A - c) for A, c in zip(arrays, double.shifts, strict=True)])
    b = min(n, FLOAT32_BLOCK_ROWS)
    float32_rounding = (b + 2 * max(widths) + 2) * EPS32 * magnitude.moments
    bound = float32_rounding + rounding(2 * n, magnitude.moments)
    difference = np.abs(single.moments - double.moments)
    assert single.n == double.n == n
    assert np.all(difference <= bound)
    assert np.any(difference > rounding(2 * n, magnitude.moments))


@pytest.mark.parametrize("n", [3000, 40_000])
def test_every_linear_measure_is_within_the_stated_error(n):
    arrays = far_from_origin(n, (8, 32, 20))
    single = every_value(pilot_state(arrays, "float32"))
    double = every_value(pilot_state(arrays, "float64"))
    assert_within_stated_error(single, double)
    assert max(abs(single[k] - double[k]) for k in double) > 1e-12  # it ran in float32


def test_merged_float32_states_equal_one_pass():
    """Float32 only changes the products of a block: merging states of other rows adds
    float64 sums as before."""
    arrays = far_from_origin(9000, (4, 7))
    shifts = [A[:1024].mean(axis=0, dtype=np.float64) for A in arrays]
    whole = pilot_state(arrays, "float32")
    left, right = GramState((4, 7), shifts, "float32"), GramState((4, 7), shifts, "float32")
    first, *rest = left.row_blocks(len(arrays[0]))  # the blocks of the one pass
    assert rest and first.stop <= FLOAT32_BLOCK_ROWS
    left.add_block([A[first] for A in arrays])
    for rows in rest:
        right.add_block([A[rows] for A in arrays])
    np.testing.assert_allclose((left + right).moments, whole.moments, rtol=1e-15)
    with pytest.raises(ValueError, match="same widths and shifts"):
        left += GramState((4, 7), shifts, "float64")


def test_a_float32_job_is_within_the_stated_error_of_float64(tmp_path):
    names = ["a.x", "b.x", "c.x"]
    for name, values in zip(names, far_from_origin(5000, (6, 16, 11)), strict=True):
        write_representation(tmp_path, name, np.arange(len(values)), values, shard_rows=1700)

    def table(precision):
        content = {"store": str(tmp_path), "out": str(tmp_path / precision), "measures": LINEAR}
        content.update(executor="local", precision=precision)
        result = run_alignment(parse_spec(content), quiet=True)
        return {
            (r["measure"], r["estimator"], r["rep_a"], r["rep_b"]): r["value"]
            for r in result.table.to_pylist()
            if r["status"] == "ok"
        }

    single, double = table("float32"), table("float64")
    assert len(double) == len(LINEAR) * 6
    assert_within_stated_error(single, double)
    assert max(abs(single[k] - double[k]) for k in double) > 1e-12
