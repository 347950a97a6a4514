"""The permutation null of linear KA, CKA and HSIC (`repalign.measures.nulls`): its moments
against the permutations themselves, its p-values under independence and under dependence, and
the engine's nulls against the library's (docs/theory.md §2.10)."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import repalign
from jobs.alignment import run_alignment
from repalign.alignment_tables import square_matrix
from repalign.errors import UnknownOptionError
from repalign.measures.nulls import GramInvariants, permutation_moments
from repalign.measures.pair_moments import pair_statistic
from repalign.plots import alignment_heatmap
from repalign.results import benjamini_hochberg
from repalign.spec import parse_spec
from repalign.store import write_representation

NULL_MEASURES = {
    "ka": lambda X, Y: repalign.kernel_alignment(X, Y),
    "cka": lambda X, Y: repalign.cka(X, Y),
    "hsic": lambda X, Y: repalign.hsic(X, Y),
}


P_VALUES = st.lists(
    st.one_of(st.sampled_from([0.0, 1e-12, 0.01, 0.05, 0.5, 1.0]), st.floats(0.0, 1.0)),
    min_size=1,
    max_size=60,
)


@given(P_VALUES, st.lists(st.integers(0, 59), max_size=3))
def test_q_values_are_those_of_scipys_benjamini_hochberg(p_values, unknown):
    """Ties, zeros and ones included; in the order given. Each q-value is one product m·p/j,
    rounded once, on both sides: they agree to a few ulps. A NaN p-value (which scipy refuses)
    has a NaN q-value and leaves the others as if it were not there."""
    q = benjamini_hochberg(p_values)
    expected = stats.false_discovery_control(p_values, method="bh")
    np.testing.assert_allclose(q, expected, rtol=8 * np.finfo(float).eps, atol=1e-300)
    with_nan = list(p_values)
    for position in unknown:
        with_nan.insert(min(position, len(with_nan)), float("nan"))
    q = benjamini_hochberg(with_nan)
    assert np.isnan(q).sum() == len(unknown)
    np.testing.assert_allclose(q[~np.isnan(q)], expected, rtol=8 * np.finfo(float).eps, atol=1e-300)


def test_q_values_by_their_definition():
    """q₍ᵢ₎ = min over j ≥ i of m·p₍ⱼ₎/j, capped at 1, written out for five p-values."""
    p = [0.04, 0.001, 0.03, 0.9, 0.04]
    # sorted: 0.001, 0.03, 0.04, 0.04, 0.9 with m·p/j = 0.005, 0.075, 0.0667, 0.05, 0.9
    expected = [0.05, 0.005, 0.05, 0.9, 0.05]
    np.testing.assert_allclose(benjamini_hochberg(p), expected, rtol=1e-15)


def null_of(table, measure):
    """The one off-diagonal row of ``measure`` in a two-representation table."""
    rows = [r for r in table.to_pylist() if r["measure"] == measure and r["rep_a"] != r["rep_b"]]
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_moments_equal_those_of_all_permutations(seed):
    """Every one of the 7! = 5,040 permutations of two symmetric 7×7 matrices: any matrices,
    not only Gram matrices, with diagonals and row sums far from zero."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((7, 7))
    A = A + A.T + 3.0 * seed
    B = rng.standard_normal((7, 7))
    B = B @ B.T + rng.standard_normal(7)[:, None] + rng.standard_normal(7)[None, :]
    B = B + B.T
    totals = np.array(
        [np.einsum("ij,ij->", A, B[np.ix_(p, p)]) for p in itertools.permutations(range(7))]
    )
    mean, variance = permutation_moments(GramInvariants.from_gram(A), GramInvariants.from_gram(B))
    # sums of 5,040 products of entries of size ≲ 100: rounding ≲ 1e-10 relative
    assert mean == pytest.approx(totals.mean(), rel=1e-10, abs=1e-10 * np.abs(totals).max())
    assert variance == pytest.approx(totals.var(), rel=1e-9)


@pytest.mark.parametrize("center", [True, False])
def test_the_invariants_from_moments_equal_those_of_the_gram_matrix(center):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 5)) + 2.0
    Y = rng.standard_normal((40, 3)) - 1.0
    state = pair_statistic(X, Y, [X.mean(axis=0), Y.mean(axis=0)], norms=True)
    for r, A in enumerate((X, Y)):
        Z = A - A.mean(axis=0) if center else A
        from_moments = GramInvariants.from_moments(state.pair(0, 1, center=center), r)
        from_gram = GramInvariants.from_gram(Z @ Z.T)
        for field in from_gram.__dataclass_fields__:
            expected = getattr(from_gram, field)
            # Gram entries ≲ 60, sums of ≤ 1,600 of their squares: rounding ≲ 1e-9 of the largest
            scale = 1e-9 * max(from_gram.squared_norm, 1.0)
            assert getattr(from_moments, field) == pytest.approx(expected, abs=scale), field


def test_null_mean_and_std_equal_those_of_2000_permutations():
    """n = 60: the brute-force permutation distribution of each measure, within Monte Carlo
    error (4 standard errors of the mean and of the standard deviation)."""
    rng = np.random.default_rng(4)
    latent = rng.standard_normal((60, 2))
    X = latent @ rng.standard_normal((2, 6)) + 0.5 * rng.standard_normal((60, 6)) + 5.0
    Y = latent @ rng.standard_normal((2, 9)) + 0.5 * rng.standard_normal((60, 9))
    table = repalign.pairwise({"x": X, "y": Y}, measures=list(NULL_MEASURES))
    permutations = [rng.permutation(60) for _ in range(2000)]
    for measure, function in NULL_MEASURES.items():
        row = null_of(table, measure)
        draws = np.array([function(X, Y[p]) for p in permutations])
        mean, std = draws.mean(), draws.std(ddof=1)
        assert abs(row["null_mean"] - mean) < 4 * std / np.sqrt(len(draws)), measure
        fourth = np.mean((draws - mean) ** 4)
        std_error_of_variance = np.sqrt((fourth - std**4) / len(draws))
        assert abs(row["null_std"] ** 2 - std**2) < 4 * std_error_of_variance, measure
        exceed = (1 + np.sum(draws >= row["value"])) / (1 + len(draws))
        assert row["p_value"] < 0.01 and exceed < 0.01  # X and Y share a latent


def test_p_values_of_independent_representations_are_uniform_and_calibrated_near_zero():
    """30 independent representations, n = 500, widths 20 to 200: 435 pairs."""
    rng = np.random.default_rng(5)
    widths = np.linspace(20, 200, 30).astype(int)
    arrays = {f"r{k:02d}": rng.standard_normal((500, w)) + 1.0 for k, w in enumerate(widths)}
    rows = [
        r
        for r in repalign.pairwise(arrays, measures=["cka"]).to_pylist()
        if r["rep_a"] != r["rep_b"]
    ]
    p_values = np.array([r["p_value"] for r in rows])
    assert len(p_values) == 435
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(p_values < 0.05) <= 0.08
    wide = [r for r in rows if arrays[r["rep_a"]].shape[1] + arrays[r["rep_b"]].shape[1] > 300]
    narrow = [r for r in rows if arrays[r["rep_a"]].shape[1] + arrays[r["rep_b"]].shape[1] < 60]
    assert min(r["value"] for r in wide) > 0.2 > 0.1 > max(r["value"] for r in narrow)
    assert max(abs(r["calibrated"]) for r in rows) < 0.02
    assert min(r["q_value"] for r in rows) > 0.05  # nothing survives the correction


def test_dependent_representations_have_tiny_p_values():
    rng = np.random.default_rng(6)
    latent = rng.standard_normal((500, 3))
    X = latent @ rng.standard_normal((3, 50)) + 3.0 * rng.standard_normal((500, 50))
    Y = latent @ rng.standard_normal((3, 80)) + 3.0 * rng.standard_normal((500, 80))
    table = repalign.pairwise({"x": X, "y": Y}, measures=list(NULL_MEASURES))
    for measure in NULL_MEASURES:
        row = null_of(table, measure)
        assert row["p_value"] < 1e-3 and row["value"] > row["null_mean"] + 3 * row["null_std"]


def test_other_configurations_and_the_diagonal_have_no_null():
    rng = np.random.default_rng(7)
    arrays = {"x": rng.standard_normal((80, 4)), "y": rng.standard_normal((80, 5))}
    measures = ["cka:linear:song", "procrustes", "cka:rbf", "cka"]
    rows = repalign.pairwise(arrays, measures=measures).to_pylist()
    for row in rows:
        has_null = row["measure"] == "cka" and row["kernel"] == "linear"
        has_null = has_null and row["estimator"] == "biased" and row["rep_a"] != row["rep_b"]
        columns = ("null_mean", "null_std", "p_value", "q_value", "calibrated")
        assert all((row[c] is not None) == has_null for c in columns), row
    rows = repalign.pairwise(arrays, measures=["cka"], null="none").to_pylist()
    assert all(r["p_value"] is None for r in rows)
    with pytest.raises(UnknownOptionError, match="null='permutations'"):
        repalign.pairwise(arrays, null="permutations")


def test_three_rows_have_values_and_no_closed_form_null():
    """The null's variance divides by n(n − 3): below 4 rows the values stand without it."""
    arrays = {"x": [[0.0], [1.0], [3.0]], "y": [[1.0], [0.0], [2.0]]}
    rows = repalign.pairwise(arrays, measures=["cka", "ka", "hsic"]).to_pylist()
    assert all(r["status"] == "ok" for r in rows)
    assert all(r["p_value"] is None and r["null_mean"] is None for r in rows)
    four = {name: [*column, [5.0]] for name, column in arrays.items()}
    rows = repalign.pairwise(four, measures=["cka"]).to_pylist()
    assert [r["p_value"] is None for r in rows] == [True, False, True]


@pytest.mark.slow  # whole jobs in process
def test_the_engine_gives_the_library_nulls_with_one_and_two_slots(tmp_path):
    rng = np.random.default_rng(8)
    latent = rng.standard_normal((1200, 2))
    arrays = {
        f"m{k}.x": latent @ rng.standard_normal((2, w)) + rng.standard_normal((1200, w)) + k
        for k, w in enumerate((7, 12, 5))
    }
    for name, X in arrays.items():
        write_representation(tmp_path / "store", name, np.arange(1200), X, shard_rows=250)
    measures = [{"name": "cka"}, {"name": "ka"}, {"name": "hsic"}]
    library = repalign.pairwise(tmp_path / "store", measures=measures).to_pylist()  # float32
    assert sum(r["p_value"] is not None for r in library) == 9
    for slots in (1, 2):
        content = {"store": str(tmp_path / "store"), "out": str(tmp_path / f"out-{slots}")}
        content.update(measures=measures, executor="local", actors=slots)
        engine = run_alignment(parse_spec(content), quiet=True).table.to_pylist()
        for mine, theirs in zip(engine, library, strict=True):
            assert (mine["rep_a"], mine["rep_b"]) == (theirs["rep_a"], theirs["rep_b"])
            for column in ("null_mean", "null_std", "p_value", "q_value", "calibrated"):
                if theirs[column] is None:
                    assert mine[column] is None
                    continue
                # Sums of 1,200 rows in another order and about another shift; the parts of
                # the invariants lose at most 3 digits to cancellation: 1e-9 relative.
                assert mine[column] == pytest.approx(theirs[column], rel=1e-9, abs=1e-12)


def related_and_unrelated_table():
    """Linear CKA of four representations: a.x and b.x share a latent; c.x and d.x are noise."""
    rng = np.random.default_rng(9)
    latent = rng.standard_normal((300, 2))
    arrays = {
        "a.x": latent @ rng.standard_normal((2, 6)) + 0.3 * rng.standard_normal((300, 6)),
        "b.x": latent @ rng.standard_normal((2, 5)) + 0.3 * rng.standard_normal((300, 5)),
        "c.x": rng.standard_normal((300, 7)),
        "d.x": rng.standard_normal((300, 4)),
    }
    return repalign.pairwise(arrays, measures=["cka"])


def test_the_calibrated_heatmap_greys_pairs_no_more_alike_than_chance():
    table = related_and_unrelated_table()
    configuration = dict(measure="cka", kernel="linear", estimator="biased")
    names, _ = square_matrix(table, **configuration)
    rows = {(r["rep_a"], r["rep_b"]): r for r in table.to_pylist()}
    figure = alignment_heatmap(table, **configuration, calibrated=True)
    drawn = figure.axes[0].images[0].get_array()
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            row = rows.get((a, b)) or rows[b, a]
            if i == j or row["q_value"] >= 0.05:
                assert drawn.mask[i, j], (a, b)
            else:
                assert drawn[i, j] == row["calibrated"], (a, b)
    assert not drawn.mask[names.index("a.x"), names.index("b.x")]  # the related pair


@pytest.mark.slow  # an MLflow store
def test_a_run_with_nulls_logs_a_calibrated_heatmap_beside_the_raw_one(tmp_path):
    from mlflow import MlflowClient

    from repalign.tracking import log_alignment_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_alignment_run(
        related_and_unrelated_table(),
        params={},
        summary={},
        experiment="nulls",
        tracking_uri=uri,
        artifact_location=str(tmp_path / "artifacts"),
    )
    files = MlflowClient(uri).list_artifacts(run_id, "heatmaps")
    assert sorted(f.path for f in files) == [
        "heatmaps/cka-linear-biased-calibrated.png",
        "heatmaps/cka-linear-biased-models.png",  # a, b, c, d: four models of one layer
        "heatmaps/cka-linear-biased.html",
        "heatmaps/cka-linear-biased.png",
    ]
