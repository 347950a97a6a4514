"""The Monte Carlo permutation null (repalign/measures/permutation.py, jobs/permutations.py;
docs/theory.md §2.12): the block-wise permutations, the p-value done by hand with the per-pair
library functions, its agreement with the closed-form null, its calibration, and a job's null
against the library's, resumed after a crash."""

import numpy as np
import pytest
from scipy import stats

import repalign
from jobs import alignment
from jobs.alignment import run_alignment
from repalign.approx import Nystrom, approximate_products, nystrom_rows
from repalign.errors import InvalidParameterError
from repalign.measures.permutation import BLOCK_ROWS, source_rows, sources_of
from repalign.spec import SpecError, parse_measure, parse_spec
from repalign.stats import GramState
from repalign.store import open_store, write_representation

NULL_COLUMNS = ("null_mean", "null_std", "p_value", "q_value", "calibrated")
BY_HAND = {
    "cka:linear": lambda X, Y: repalign.cka(X, Y),
    "cka:rbf": lambda X, Y: repalign.cka(X, Y, kernel="rbf"),
    "mutual_knn:linear": lambda X, Y: repalign.mutual_knn(X, Y, k=5),
    "procrustes:linear": repalign.procrustes,
    "cca:linear": repalign.cca,
}
"""Measures (name:kernel) and their per-pair library functions."""
MEASURES = ["cka", "cka:rbf", "mutual_knn,k=5", "procrustes", "cca"]


def row_of(table, key, a="x", b="y"):
    name, kernel = key.split(":")
    (row,) = [
        r
        for r in table.to_pylist()
        if (r["measure"], r["kernel"], r["rep_a"], r["rep_b"]) == (name, kernel, a, b)
    ]
    return row


def permuted(name, draw, A):
    return A[source_rows(name, draw, 0, len(A), len(A))]


def related_pair(rng, n, noise=1.0):
    latent = rng.standard_normal((n, 2))
    X = latent @ rng.standard_normal((2, 6)) + noise * rng.standard_normal((n, 6))
    Y = np.tanh(latent @ rng.standard_normal((2, 4))) + noise * rng.standard_normal((n, 4))
    return X, Y


def test_rows_are_permuted_within_aligned_blocks_and_any_range_reads_the_same_rows():
    n = 2 * BLOCK_ROWS + 1000
    whole = source_rows("m.x", 3, 0, n, n)
    for block in range(3):
        start, stop = block * BLOCK_ROWS, min((block + 1) * BLOCK_ROWS, n)
        assert sorted(whole[start:stop]) == list(range(start, stop))
    assert not np.array_equal(whole, np.arange(n))
    for start, stop in ((0, 10), (4000, 4200), (BLOCK_ROWS, n), (n - 1, n), (5, 5)):
        assert np.array_equal(source_rows("m.x", 3, start, stop, n), whole[start:stop])
    assert not np.array_equal(whole, source_rows("m.x", 4, 0, n, n))  # another draw
    picked = np.array([n - 1, 5, BLOCK_ROWS + 7, 0, 2 * BLOCK_ROWS, 5])  # any order, repeats
    assert np.array_equal(sources_of("m.x", 3, picked, n), whole[picked])
    assert not np.array_equal(whole, source_rows("m.y", 3, 0, n, n))  # another representation


def test_each_null_is_the_rank_among_the_measures_of_permuted_rows_by_hand():
    """B = 30 draws: every measure recomputed by its library function on the permuted rows;
    the table's null mean, standard deviation and p-value are those of these draws."""
    rng = np.random.default_rng(1)
    X, Y = related_pair(rng, 150, noise=3.0)  # weakly related: p-values inside (0, 1)
    table = repalign.pairwise({"x": X, "y": Y}, MEASURES, null="permutation", permutations=30)
    for key, function in BY_HAND.items():
        row = row_of(table, key)
        draws = np.array([function(permuted("x", b, X), permuted("y", b, Y)) for b in range(30)])
        # the same sums in another order: 1e-12 of values at most 1
        assert row["null_mean"] == pytest.approx(draws.mean(), abs=1e-12), key
        assert row["null_std"] == pytest.approx(draws.std(ddof=1), abs=1e-12), key
        if key != "mutual_knn:linear":  # a share of neighbours ties exactly, the others not
            assert np.min(np.abs(draws - row["value"])) > 1e-9, key
        assert row["p_value"] == (1 + np.sum(draws >= row["value"])) / 31, key
        assert row["q_value"] == row["p_value"]  # one pair per configuration
    for key in ("cka:linear", "cka:rbf"):  # the measures whose largest value is 1
        row = row_of(table, key)
        assert row["calibrated"] == pytest.approx(
            (row["value"] - row["null_mean"]) / (1 - row["null_mean"]), abs=1e-15
        )


def test_the_diagonal_and_mmd2_have_no_permutation_null():
    rng = np.random.default_rng(2)
    arrays = {"x": rng.standard_normal((60, 3)), "y": rng.standard_normal((60, 3))}
    table = repalign.pairwise(arrays, ["cka", "mmd2"], null="permutation", permutations=5)
    for row in table.to_pylist():
        has_null = row["measure"] == "cka" and row["rep_a"] != row["rep_b"]
        assert (row["p_value"] is not None) == has_null, row


def test_permutation_and_analytic_nulls_of_linear_cka_agree():
    """n = 60 (one block, so the draws are uniform over all permutations), B = 2,000: the Monte
    Carlo mean and standard deviation within 4 of their standard errors of the closed form's."""
    rng = np.random.default_rng(3)
    X, Y = related_pair(rng, 60, noise=2.0)
    analytic = row_of(repalign.pairwise({"x": X, "y": Y}, ["cka"]), "cka:linear")
    B = 2000
    table = repalign.pairwise({"x": X, "y": Y}, ["cka"], null="permutation", permutations=B)
    drawn = row_of(table, "cka:linear")
    std = analytic["null_std"]
    assert abs(drawn["null_mean"] - analytic["null_mean"]) < 4 * std / np.sqrt(B)
    # the standard deviation of a sample standard deviation is about σ·sqrt((κ − 1)/(4B)),
    # κ the kurtosis; κ < 6 for these nulls
    assert abs(drawn["null_std"] - std) < 4 * std * np.sqrt(5 / (4 * B))
    assert drawn["value"] == analytic["value"]


@pytest.mark.slow  # 40 × 40 runs of per-pair RBF and k-NN
def test_p_values_of_independent_pairs_are_uniform_and_of_related_pairs_the_smallest():
    """40 independent pairs (n = 120, B = 39): RBF CKA and mutual k-NN, which have no closed-form
    null, get p-values a Kolmogorov–Smirnov test cannot tell from uniform (on the grid k/40);
    a related pair gets 1/40, the smallest there is."""
    rng = np.random.default_rng(4)
    measures = ["cka:rbf", "mutual_knn,k=5"]
    p_values = {"cka:rbf": [], "mutual_knn:linear": []}
    for _ in range(40):
        arrays = {"x": rng.standard_normal((120, 5)), "y": rng.standard_normal((120, 8))}
        table = repalign.pairwise(arrays, measures, null="permutation", permutations=39)
        for key in p_values:
            p_values[key].append(row_of(table, key)["p_value"])
    for key, found in p_values.items():
        # p on the grid k/40 is uniform on it; compare with a uniform draw from (0, 1] at
        # the grid's upper ends, as the discrete uniform's distribution function is
        assert stats.kstest(np.array(found) - 1 / 80, "uniform").pvalue > 0.01, key
    X, Y = related_pair(rng, 120, noise=0.3)
    table = repalign.pairwise({"x": X, "y": Y}, measures, null="permutation", permutations=39)
    for key in p_values:
        assert row_of(table, key)["p_value"] == 1 / 40, key


def test_bad_permutation_settings_are_refused_naming_them():
    arrays = {"x": np.ones((10, 2)), "y": np.zeros((10, 2))}
    with pytest.raises(InvalidParameterError, match="permutations must be a whole number"):
        repalign.pairwise(arrays, null="permutation", permutations=0)
    content = {"store": "s", "out": "o", "measures": [{"name": "cka"}], "null": "permutation"}
    with pytest.raises(SpecError, match="permutations"):
        parse_spec({**content, "permutations": 0})
    with pytest.raises(SpecError, match="null"):
        parse_spec({**content, "null": "bootstrap"})
    assert parse_spec(content).permutations == 100


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three representations of 4,500 rows (an aligned block and a part), in shards of 1,000
    rows: m0 and m2 share a latent, m1 is noise."""
    path = tmp_path_factory.mktemp("permutation") / "store"
    rng = np.random.default_rng(8)
    latent = rng.standard_normal((4500, 2))
    for k, w in enumerate((7, 12, 5)):
        related = latent @ rng.standard_normal((2, w)) if k != 1 else 0.0
        X = related + 2.0 * rng.standard_normal((4500, w)) + k
        write_representation(path, f"m{k}.x", np.arange(4500), X, shard_rows=1000)
    return path


JOB_MEASURES = ["cka", "hsic", "procrustes", "mutual_knn,k=5", "mmd2:linear"]
RANDOM_FEATURES = "ka:rbf,approx=rff,features=64"


def key_of(row):
    return tuple(row[c] for c in ("measure", "kernel", "estimator", "rep_a", "rep_b"))


def job_table(store, out, slots, draws=8, extra=()):
    content = {"store": str(store), "out": str(out), "executor": "local", "actors": slots}
    measures = [parse_measure(m) for m in [*JOB_MEASURES, *extra]]
    content.update(measures=measures, null="permutation", permutations=draws)
    return run_alignment(parse_spec(content), quiet=True)


@pytest.mark.slow  # whole jobs in process
def test_the_engine_gives_the_library_permutation_null_with_one_and_two_slots(store, tmp_path):
    library = repalign.pairwise(store, JOB_MEASURES, null="permutation", permutations=8)
    library = {key_of(r): r for r in library.to_pylist()}
    assert sum(r["p_value"] is not None for r in library.values()) == 4 * 3  # not MMD² nor a = b
    assert min(r["p_value"] for r in library.values() if r["p_value"] is not None) == 1 / 9
    for slots in (1, 2):
        result = job_table(store, tmp_path / f"out-{slots}", slots, extra=[RANDOM_FEATURES])
        assert result.params["permutations"] == 8
        assert result.summary["pass_seconds"]["permutations"] > 0
        rows = result.table.to_pylist()
        for mine in rows:
            if mine["measure"] == "ka":  # random features: no library counterpart
                related = {mine["rep_a"], mine["rep_b"]} == {"m0.x", "m2.x"}
                assert (mine["p_value"] == 1 / 9) == related, mine
                continue
            theirs = library[key_of(mine)]
            assert mine["p_value"] == theirs["p_value"], mine  # ranks: no draw near a tie
            for column in ("null_mean", "null_std", "q_value", "calibrated"):
                if theirs[column] is None:
                    assert mine[column] is None
                    continue
                # values of float32 rows summed in another order about another shift;
                # Procrustes loses a few digits more to its spectra: 1e-9 relative
                assert mine[column] == pytest.approx(theirs[column], rel=1e-9, abs=1e-12)
        assert sum(r["p_value"] is not None for r in rows) == 5 * 3


@pytest.mark.slow  # whole jobs in process
def test_a_job_stopped_among_its_draws_takes_up_the_finished_ones(store, tmp_path, monkeypatch):
    whole = job_table(store, tmp_path / "whole", 1, draws=6).table
    out = tmp_path / "stopped"
    started = []
    permuted = alignment.Job.permuted

    def stop_at_the_fourth(job, draw):
        started.append(draw)
        if draw == 3:
            raise KeyboardInterrupt("stopped at draw 3")
        return permuted(job, draw)

    monkeypatch.setattr(alignment.Job, "permuted", stop_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        job_table(store, out, 1, draws=6)
    (kept,) = (out / ".checkpoints" / "permutations").iterdir()
    assert sorted(p.name for p in kept.iterdir()) == [
        "0.pkl",
        "1.pkl",
        "2.pkl",
    ]
    started.clear()
    monkeypatch.setattr(
        alignment.Job, "permuted", lambda job, draw: started.append(draw) or permuted(job, draw)
    )
    again = job_table(store, out, 1, draws=6).table
    assert started == [3, 4, 5]  # draws 0 to 2 were read back
    assert again.equals(whole)


@pytest.mark.slow  # a job in process
def test_a_nystrom_draw_takes_its_landmarks_and_probes_at_the_same_places_of_its_rows(
    store, tmp_path
):
    """Nyström's probes correct its products only if the landmarks and probes are the same
    samples on both sides, so a draw takes them at the same places of its permuted rows, not
    the unpermuted job's rows (which the draw re-pairs): each draw's value is then the library's
    estimate on the permuted arrays, and the job's null_mean their mean."""
    measure = parse_measure("cka:rbf,approx=nystrom,features=200,sigma=3.0")
    content = {"store": str(store), "out": str(tmp_path / "out"), "executor": "local"}
    content.update(measures=[measure], null="permutation", permutations=3)
    (row,) = [
        r
        for r in run_alignment(parse_spec(content), quiet=True).table.to_pylist()
        if (r["rep_a"], r["rep_b"]) == ("m0.x", "m2.x")
    ]
    arrays = {name: open_store(store)[name].read_values(0, 4500) for name in ("m0.x", "m2.x")}
    rows = nystrom_rows(4500, 200, seed=0)
    draws = []
    for draw in range(3):
        pair = [permuted(name, draw, A).astype(np.float64) for name, A in arrays.items()]
        maps = [Nystrom(A[rows.landmarks], A[rows.probes], 3.0) for A in pair]
        state = GramState([200, 200])
        state.add_block([m.transform(A) for m, A in zip(maps, pair, strict=True)])
        draws.append(approximate_products(state, 0, 1, *maps).cka.value)
    # the job adds the rows in other blocks: n·ε of each product, which the solves with
    # K(Z, Z) (condition up to ~1e10) amplify; maps on other rows move a draw by ~1e-3
    assert row["null_mean"] == pytest.approx(np.mean(draws), rel=1e-6)
