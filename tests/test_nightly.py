"""`repalign nightly` as the scheduler runs it: three nights on one store, on a real Ray, with
real Parquet stores and real SQLite MLflow stores.

Night 1: a.x, b.x, c.x, no previous run. Night 2: d.x added. Night 3: b.x rewritten in place
with shifted and noised rows.
"""

import contextlib
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

import repalign
from jobs.alignment import run_alignment
from jobs.nightly import (
    feature_map,
    load_mean_embeddings,
    mean_embedding,
    plan_run,
    run_nightly,
)
from repalign.approx import approximate_mmd2
from repalign.cli import build_parser, main
from repalign.errors import InvalidParameterError
from repalign.spec import parse_spec
from repalign.store import open_store, write_representation

pytestmark = pytest.mark.slow  # whole jobs in process: `make check` leaves them out

N = 2000
THRESHOLD = 0.05
MEASURES = [{"name": "cka"}, {"name": "procrustes"}, {"name": "ka"}]


def related(rng, latent, width):
    """A representation of the shared latent: uncentred, float32."""
    values = latent @ rng.standard_normal((latent.shape[1], width))
    return (values + rng.standard_normal((len(latent), width)) + 1.0).astype(np.float32)


def nightly(path, out, previous=None, *extra):
    """Run the command in this process (Ray is the session's) from ``path``, where MLflow's
    default store is; (exit code, stdout)."""
    args = ["nightly", str(path / "job.yaml"), "--out", str(path / out), "--quiet", *extra]
    if previous is not None:
        args += ["--previous", str(path / previous)]
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("RAY_ADDRESS", raising=False)
        patch.chdir(path)
        code = main(args)
    return code, stdout.getvalue()


def read(path, out, name):
    return json.loads((path / out / name).read_text())


def values(path, out):
    """(measure, kernel, estimator, sorted pair) -> value of the ok rows of a run's table."""
    rows = pq.read_table(path / out / "alignment.parquet").to_pylist()
    return {
        (r["measure"], r["kernel"], r["estimator"], *sorted((r["rep_a"], r["rep_b"]))): r["value"]
        for r in rows
        if r["status"] == "ok"
    }


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    path = tmp_path_factory.mktemp("nightly")
    rng = np.random.default_rng(7)
    latent = rng.standard_normal((N, 4))
    arrays = {name: related(rng, latent, 6) for name in ("a.x", "b.x", "c.x")}
    for name, array in arrays.items():
        write_representation(path / "store", name, np.arange(N), array, shard_rows=700)
    job = {"store": str(path / "store"), "out": str(path / "unused"), "measures": MEASURES}
    job["executor"] = "local"  # tests/test_executors.py shows Ray gives the same tables
    job["experiment"] = "nightly"
    (path / "job.yaml").write_text(yaml.safe_dump(job))
    runs = {"arrays-1": dict(arrays)}
    runs["night-1"] = nightly(path, "night-1")

    arrays["d.x"] = related(rng, latent, 5)
    write_representation(path / "store", "d.x", np.arange(N), arrays["d.x"], shard_rows=700)
    runs["arrays-2"] = dict(arrays)
    runs["night-2"] = nightly(path, "night-2", "night-1")
    spec = parse_spec({**job, "out": str(path / "full-2")})
    runs["full-2"] = run_alignment(spec, quiet=True)

    # b.x moves: shifted by 1 per column and noised; its old rows are gone afterwards
    arrays["b.x"] = (arrays["b.x"] + 1.0 + 0.8 * rng.standard_normal((N, 6))).astype(np.float32)
    write_representation(
        path / "store", "b.x", np.arange(N), arrays["b.x"], shard_rows=700, overwrite=True
    )
    runs["arrays-3"] = dict(arrays)
    runs["night-3"] = nightly(path, "night-3", "night-2", "--threshold", str(THRESHOLD))
    return path, runs


def test_the_command_is_registered():
    assert "nightly" in build_parser().format_help()


def test_the_first_night_runs_in_full_and_reports_no_moves(nights):
    path, runs = nights
    code, stdout = runs["night-1"]
    assert code == 0
    changes = read(path, "night-1", "changes.json")
    assert changes["plan"] == "full" and "no previous run" in changes["reason"]
    assert changes["new"] == ["a.x", "b.x", "c.x"]
    assert changes["changed"] == changes["removed"] == []
    assert changes["moved"] == [] and changes["drift"] == {}
    assert changes["threshold"] == 0.05  # the default
    record = read(path, "night-1", "nightly.json")
    assert record["plan"] == "full" and record["run_id"] in stdout
    assert record["tracking_uri"] == f"sqlite:///{path}/mlflow.db"
    assert "plan: full" in stdout
    assert (path / "night-1" / "alignment.parquet").exists()


def test_the_mlflow_run_holds_the_matrix_and_the_change_report(nights):
    path, _ = nights
    for night in ("night-1", "night-2", "night-3"):
        record = read(path, night, "nightly.json")
        client = MlflowClient(record["tracking_uri"])
        run = client.get_run(record["run_id"])
        assert run.info.status == "FINISHED"
        assert len(run.data.metrics) == len(values(path, night))  # a complete matrix
        local = client.download_artifacts(record["run_id"], "changes.json", str(path / night))
        assert json.loads(open(local).read()) == read(path, night, "changes.json")


def test_mean_embeddings_are_saved_with_their_map(nights):
    path, runs = nights
    arrays = runs["arrays-1"]
    saved = load_mean_embeddings(path / "night-1")
    assert sorted(saved) == ["a.x", "b.x", "c.x"]
    for name, (embedding, entry) in saved.items():
        # the library's median heuristic on the same rows, to rounding
        assert entry["sigma"] == pytest.approx(repalign.median_sigma(arrays[name]), rel=1e-12)
        assert (entry["seed"], entry["features"], entry["blocks"]) == (0, 2048, 16)
        features = feature_map(entry).transform(arrays[name])
        assert embedding.n == N
        np.testing.assert_allclose(embedding.sums, features.sum(axis=0), rtol=1e-9, atol=1e-9)
    maps = read(path, "night-1", "drift/representations.json")
    assert maps["a.x"]["digest"]["shards"] and maps["a.x"]["reused"] is False


def test_a_new_representation_runs_incrementally(nights):
    path, runs = nights
    code, stdout = runs["night-2"]
    assert code == 0
    changes = read(path, "night-2", "changes.json")
    assert changes["plan"] == "incremental" and "d.x" in changes["reason"]
    assert changes["new"] == ["d.x"]
    assert changes["changed"] == changes["removed"] == []
    # old pairs come from the saved moments unchanged; the new ones have no "before"
    assert changes["moved"] == [] and changes["drift"] == {}
    summary = read(path, "night-2", "summary.json")
    assert summary["blocks_computed"] == 1 * 3 + 1  # d.x with the 3 old ones, and with itself
    full = runs["full-2"]
    assert full.summary["blocks_computed"] == 10
    expected = {
        (r["measure"], r["kernel"], r["estimator"], *sorted((r["rep_a"], r["rep_b"]))): r["value"]
        for r in full.table.to_pylist()
    }
    got = values(path, "night-2")
    assert got.keys() == expected.keys() and len(got) == 3 * 10
    for key, value in expected.items():
        # the same sums in another order of accumulation
        assert got[key] == pytest.approx(value, rel=1e-10), key
    maps = read(path, "night-2", "drift/representations.json")
    assert [name for name, entry in maps.items() if not entry["reused"]] == ["d.x"]
    assert "1 new, 0 changed" in stdout


def test_a_rewritten_representation_forces_a_full_run(nights):
    path, runs = nights
    code, stdout = runs["night-3"]
    assert code == 0
    changes = read(path, "night-3", "changes.json")
    assert changes["plan"] == "full"
    assert "b.x" in changes["reason"] and "changed" in changes["reason"]
    assert changes["changed"] == ["b.x"] and changes["new"] == changes["removed"] == []
    assert read(path, "night-3", "summary.json")["blocks_computed"] == 10
    assert "plan: full" in stdout and "drift of b.x" in stdout


def test_moved_pairs_are_the_pairs_that_changed_by_more_than_the_threshold(nights):
    path, _ = nights
    moved = read(path, "night-3", "changes.json")["moved"]
    before, after = values(path, "night-2"), values(path, "night-3")
    expected = {
        key: (before[key], after[key])
        for key in before.keys() & after.keys()
        if abs(after[key] - before[key]) > THRESHOLD
    }
    assert expected and all("b.x" in key[3:] for key in expected)
    got = {}
    for m in moved:
        key = (m["measure"], m["kernel"], m["estimator"], *sorted((m["rep_a"], m["rep_b"])))
        assert m["delta"] == m["after"] - m["before"]
        got[key] = (m["before"], m["after"])
    assert got == expected
    deltas = [abs(m["delta"]) for m in moved]
    assert deltas == sorted(deltas, reverse=True)


def test_drift_of_the_rewritten_representation_matches_the_exact_mmd(nights):
    path, runs = nights
    drift = read(path, "night-3", "changes.json")["drift"]
    assert list(drift) == ["b.x"]
    old, new = runs["arrays-2"]["b.x"], runs["arrays-3"]["b.x"]
    _, entry = load_mean_embeddings(path / "night-3")["b.x"]
    first = load_mean_embeddings(path / "night-1")["b.x"][1]
    assert entry["sigma"] == first["sigma"]  # the map of its first night, kept for comparison
    assert drift["b.x"]["sigma"] == first["sigma"]
    exact = repalign.mmd2(old, new, estimator="biased", sigma=first["sigma"])
    estimate, std_err = drift["b.x"]["mmd2"], drift["b.x"]["std_err"]
    assert exact > 0.03  # 0.049: sigma is large (7.4), the median distance of 6-d rows
    assert estimate > 20 * std_err  # clearly moved
    # 2,048 features in 16 blocks; std_err is the spread of the 16 block estimates. Measured on
    # this data over 40 feature seeds: |estimate - exact| / exact has median 1.9% and max
    # 7.2%, |estimate - exact| / std_err median 0.6 and max 2.2. Hence 10% and 4 std_err.
    assert estimate == pytest.approx(exact, rel=0.1)
    assert abs(estimate - exact) < 4 * std_err


def test_an_unchanged_representation_recomputed_with_the_saved_map_has_no_drift(nights):
    path, _ = nights
    store = open_store(path / "store")
    for name in ("a.x", "c.x", "d.x"):
        saved, entry = load_mean_embeddings(path / "night-3")[name]
        again = mean_embedding(store[name], feature_map(entry))
        # the same rows through the same map: equal to rounding (the float64 sums of 2,000 rows)
        assert approximate_mmd2(saved, again, estimator="biased").value == pytest.approx(
            0.0, abs=1e-12
        )


def test_plan_without_saved_moments_or_linear_measures(nights, tmp_path):
    path, _ = nights
    store = open_store(path / "store")
    names = store.select()
    spec = parse_spec({"store": str(path / "store"), "out": str(tmp_path), "measures": MEASURES})
    empty = tmp_path / "empty"
    empty.mkdir()
    plan = plan_run(spec, store, names, empty)
    assert plan.mode == "full" and "holds no saved state" in plan.reason
    assert plan.new == names
    rbf_only = parse_spec(
        {"store": str(path / "store"), "out": str(tmp_path), "measures": [{"name": "mmd2"}]}
    )
    plan = plan_run(rbf_only, store, names, path / "night-3")
    assert plan.mode == "full" and "no linear-kernel measure" in plan.reason
    plan = plan_run(spec, store, ["a.x", "c.x", "d.x"], path / "night-3")
    assert plan.mode == "full" and "no longer selected: b.x" in plan.reason
    assert plan.removed == ["b.x"]


def test_a_missing_previous_folder_is_refused_by_name(nights, capsys):
    path, _ = nights
    code, _ = nightly(path, "night-x", "no-such-night")
    assert code == 2
    err = capsys.readouterr().err
    assert "no-such-night does not exist" in err and "Traceback" not in err
    assert not (path / "night-x").exists()  # refused before anything ran


@pytest.mark.parametrize("threshold", [0, -0.1, float("nan"), float("inf")])
def test_a_threshold_that_is_not_positive_is_refused(nights, threshold):
    path, _ = nights
    spec = parse_spec(
        {"store": str(path / "store"), "out": str(path / "night-y"), "measures": MEASURES}
    )
    with pytest.raises(InvalidParameterError, match=r"threshold must be a positive, finite number"):
        run_nightly(spec, previous=path / "night-3", threshold=threshold)
    code, _ = nightly(path, "night-y", "night-3", "--threshold", str(threshold))
    assert code == 2 and not (path / "night-y").exists()


def test_the_output_folder_must_differ_from_the_previous_one(nights):
    path, _ = nights
    spec = parse_spec(
        {"store": str(path / "store"), "out": str(path / "night-3"), "measures": MEASURES}
    )
    with pytest.raises(InvalidParameterError, match=r"must differ from the previous run's"):
        run_nightly(spec, previous=path / "night-3")
