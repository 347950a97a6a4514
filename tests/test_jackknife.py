"""Standard errors by the delete-one-group jackknife (`repalign.measures.jackknife`): against
the jackknife done by hand with the library's per-pair functions, the coverage of its intervals,
its memory, and the engine's errors against the library's (docs/theory.md §2.11)."""

import itertools
import tracemalloc
import warnings

import numpy as np
import pytest
from scipy import stats

import repalign
from jobs.alignment import run_alignment
from repalign.errors import InvalidParameterError
from repalign.measures.jackknife import group_bounds
from repalign.spec import parse_spec
from repalign.stats import moment_matrix_bytes
from repalign.store import write_representation

GROUPS = 16
A = np.random.default_rng(100).standard_normal((2, 5))
B = np.random.default_rng(101).standard_normal((2, 8))


def draw(rng, n):
    """Two representations of one latent, one through a nonlinearity, away from the origin."""
    latent = rng.standard_normal((n, 2))
    X = latent @ A + rng.standard_normal((n, 5)) + 3.0
    Y = np.tanh(latent) @ B + rng.standard_normal((n, 8))
    return X, Y


def off_diagonal(table, measure):
    (row,) = [r for r in table.to_pylist() if r["measure"] == measure and r["rep_a"] != r["rep_b"]]
    return row


def test_groups_are_contiguous_and_cover_every_row_once():
    bounds = group_bounds(1003, 16)
    assert bounds[0][0] == 0 and bounds[-1][1] == 1003
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert {high - low for low, high in bounds} <= {62, 63}
    with pytest.raises(ValueError, match="2 to n = 5 groups"):
        group_bounds(5, 6)


def jackknife(estimates):
    estimates = np.asarray(estimates)
    return np.sqrt((GROUPS - 1) / GROUPS * np.sum((estimates - estimates.mean()) ** 2))


def without_each_group(X, Y, function):
    """``function`` of the rows without each group, in turn."""
    n = len(X)
    return [
        function(X[np.r_[0:lo, hi:n]], Y[np.r_[0:lo, hi:n]]) for lo, hi in group_bounds(n, GROUPS)
    ]


@pytest.mark.parametrize(
    ("measure", "function"),
    [("cka", repalign.cka), ("ka", repalign.kernel_alignment), ("hsic", repalign.hsic)],
)
def test_the_std_err_is_the_jackknife_of_the_library_values_without_each_group(measure, function):
    X, Y = draw(np.random.default_rng(1), 800)
    row = off_diagonal(repalign.pairwise({"x": X, "y": Y}, [measure], jackknife=GROUPS), measure)
    # each value rounds at about 1e-14 relative; their spread is about 1e-2 of them
    assert row["std_err"] == pytest.approx(jackknife(without_each_group(X, Y, function)), rel=1e-8)
    assert row["value"] == pytest.approx(function(X, Y), rel=1e-12)


def centred_blocks(X, Y):
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    return X.T @ X, X.T @ Y, Y.T @ Y


def inverse_root(C, kept):
    """(Λ^{-1/2} Pᵀ) over the ``kept`` leading principal directions of C."""
    values, vectors = np.linalg.eigh(C)
    order = np.argsort(values)[::-1][:kept]
    return vectors[:, order].T / np.sqrt(values[order])[:, None]


def components_reaching(C, fraction):
    """The fewest leading principal components of C whose variances reach ``fraction``."""
    variances = np.linalg.eigvalsh(C)[::-1]
    return int(np.argmax(np.cumsum(variances) >= fraction * variances.sum()) + 1)


def by_hand(measure, kept):
    """The measure as a function of the centred blocks, written out directly; CCA and SVCCA
    over the ``kept`` leading principal components of each side (held fixed)."""

    def value(xx, xy, yy):
        if measure == "procrustes":
            return np.linalg.svd(xy, compute_uv=False).sum() / np.sqrt(np.trace(xx) * np.trace(yy))
        T = inverse_root(xx, kept[0]) @ xy @ inverse_root(yy, kept[1]).T
        return np.linalg.svd(T, compute_uv=False).mean()

    return value


@pytest.mark.parametrize(
    ("measure", "options"),
    [("procrustes", {}), ("cca", {}), ("svcca", {"variance": 0.9})],
)
def test_the_spectral_std_err_is_the_linear_jackknife_by_finite_differences(measure, options):
    """Procrustes, CCA and SVCCA take the first-order change of the value without each group
    (docs/theory.md §2.11). By hand: the derivative of the measure, written directly in the
    centred blocks, along the blocks without each group, by central differences."""
    X, Y = draw(np.random.default_rng(1), 800)
    table = repalign.pairwise({"x": X, "y": Y}, [{"name": measure, **options}], jackknife=GROUPS)
    row = off_diagonal(table, measure)
    whole = centred_blocks(X, Y)
    kept = [X.shape[1], Y.shape[1]]  # full rank
    if measure == "svcca":
        kept = [components_reaching(C, options["variance"]) for C in (whole[0], whole[2])]
        assert kept[0] < X.shape[1]  # it drops components: their turning counts
    value = by_hand(measure, kept)
    assert row["value"] == pytest.approx(value(*whole), rel=1e-12)
    step = 1e-4
    changes = []
    for without in without_each_group(X, Y, centred_blocks):
        ahead = [C + step * (D - C) for C, D in zip(whole, without, strict=True)]
        behind = [C - step * (D - C) for C, D in zip(whole, without, strict=True)]
        changes.append((value(*ahead) - value(*behind)) / (2 * step))
    # central differences: truncation step² · θ‴ ≈ 1e-8 of the changes, rounding ε/step ≈ 1e-12
    assert row["std_err"] == pytest.approx(jackknife(changes), rel=1e-6)
    # and close to the jackknife of the values themselves: they differ by the measure's
    # curvature across the groups, of relative size about 1/sqrt(G) on the changes of the noise
    # singular values (3-8% here)
    function = getattr(repalign, measure)
    exact = jackknife(without_each_group(X, Y, lambda A, B: function(A, B, **options)))
    assert row["std_err"] == pytest.approx(exact, rel=0.15)


def test_the_intervals_cover_the_population_value():
    """200 samples of n = 2,000: value ± t₀.₉₇₅,₁₅ · std_err covers the value at n = 10⁶ in
    93–97% of them, for CKA and KA. Procrustes is biased upwards at this n, so its intervals
    cover less; its std_err is still the spread of its values across samples. CCA's is larger
    than the spread."""
    rng = np.random.default_rng(2)
    measures = ["cka", "ka", "procrustes", "cca", "svcca"]
    population = repalign.pairwise(dict(zip("xy", draw(rng, 10**6), strict=True)), measures)
    truth = {m: off_diagonal(population, m)["value"] for m in measures}
    t = stats.t.ppf(0.975, GROUPS - 1)
    rows = {m: [] for m in measures}
    for _ in range(200):
        arrays = dict(zip("xy", draw(rng, 2000), strict=True))
        table = repalign.pairwise(arrays, measures, null="none", jackknife=GROUPS)
        for m in measures:
            rows[m].append(off_diagonal(table, m))
    for m in ("cka", "ka"):
        covered = np.mean([abs(r["value"] - truth[m]) <= t * r["std_err"] for r in rows[m]])
        assert 0.93 <= covered <= 0.97, (m, covered)
    for m in measures:
        spread = np.std([r["value"] for r in rows[m]], ddof=1)
        mean_std_err = np.mean([r["std_err"] for r in rows[m]])
        if m in ("cca", "svcca"):
            # conservative (docs/theory.md §2.11): three of the five canonical correlations are
            # noise, of the size of their own fluctuations; measured 1.33× (the jackknife of
            # the values themselves: 1.45×)
            assert 0.9 * spread <= mean_std_err <= 1.6 * spread, m
        else:
            # the sample standard deviation of 200 values is itself within about ±10% (2 SE)
            assert mean_std_err == pytest.approx(spread, rel=0.2), m


def test_the_jackknife_holds_one_moment_matrix_per_group_more():
    """Beside the plain call's peak, the groups' G states, their total and one statistic
    without a group with its two centrings: at most G + 4 moment matrices more."""
    rng = np.random.default_rng(3)
    arrays = {f"r{k}": rng.standard_normal((20_000, 64)) for k in range(4)}
    state = moment_matrix_bytes([64] * 4)
    peaks = {}
    for jackknife in (None, GROUPS):
        tracemalloc.start()
        try:
            repalign.pairwise(arrays, ["cka"], jackknife=jackknife)
            peaks[jackknife] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[GROUPS] - peaks[None] <= (GROUPS + 4) * state


@pytest.mark.parametrize("jackknife", [1, 0, 2.5, "16"])
def test_a_bad_group_count_is_refused(jackknife):
    with pytest.raises(InvalidParameterError, match="jackknife must be None or a number"):
        repalign.pairwise({"x": np.ones((10, 2)), "y": np.ones((10, 2))}, jackknife=jackknife)


@pytest.mark.slow  # whole jobs in process
def test_the_engine_gives_the_library_std_err_with_one_and_two_slots(tmp_path):
    rng = np.random.default_rng(4)
    X, Y = draw(rng, 1500)
    Z = rng.standard_normal((1500, 6))
    for name, array in (("a.x", X), ("b.x", Y), ("c.x", Z)):
        write_representation(tmp_path / "store", name, np.arange(1500), array, shard_rows=200)
    measures = [{"name": "cka"}, {"name": "procrustes"}, {"name": "hsic", "estimator": "unbiased"}]
    library = repalign.pairwise(tmp_path / "store", measures, jackknife=GROUPS).to_pylist()
    assert all(r["std_err"] is not None for r in library)
    for slots in (1, 2):
        content = {"store": str(tmp_path / "store"), "out": str(tmp_path / f"out-{slots}")}
        content.update(measures=measures, executor="local", actors=slots, jackknife=GROUPS)
        engine = run_alignment(parse_spec(content), quiet=True).table.to_pylist()
        for mine, theirs in zip(engine, library, strict=True):
            assert (mine["rep_a"], mine["rep_b"]) == (theirs["rep_a"], theirs["rep_b"])
            # the same groups summed about other shifts and in other blocks: the values agree
            # to about 1e-14, their spread (about 1e-2 of them) to about 1e-12
            assert mine["std_err"] == pytest.approx(theirs["std_err"], rel=1e-8, abs=1e-15)


def test_spectral_std_errs_with_constant_and_rank_deficient_representations():
    """A constant representation has no values, so no std_err; a rank-deficient one (repeated
    columns) and one that is a linear map of another have theirs, with no warning."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((400, 6))
    arrays = {
        "x": X,
        "mapped": X @ rng.standard_normal((6, 3)),
        "constant": np.ones((400, 4)),
        "repeated": np.c_[X[:, :2], X[:, :2]] + 0.5 * rng.standard_normal((400, 1)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = repalign.pairwise(arrays, ["procrustes", "cca", "svcca"], jackknife=GROUPS)
    for row in table.to_pylist():
        if "constant" in (row["rep_a"], row["rep_b"]):
            assert row["status"] == "missing" and row["std_err"] is None
        else:
            assert row["status"] == "ok" and np.isfinite(row["std_err"]), row
            assert row["std_err"] < 0.05  # 400 rows: a few hundredths at most
