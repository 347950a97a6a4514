"""`repalign nightly` as the scheduler runs it: three nights on one store, on a real Ray, with
real Parquet stores and real SQLite MLflow stores.

Night 1: a.x, b.x, c.x, no previous run. Night 2: d.x added. Night 3: b.x rewritten in place
with shifted and noised rows. The nights are those of one schedule, dated 2026-01-01 to
2026-01-03.
"""

import contextlib
import csv
import hashlib
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
from repalign.tracking import metric_key

pytestmark = pytest.mark.slow  # whole jobs in process: `make check` leaves them out

N = 2000
THRESHOLD = 0.05
MEASURES = [{"name": "cka"}, {"name": "procrustes"}, {"name": "ka"}]
SCHEDULE = "a1b2c3"
NIGHTS = {"night-1": "2026-01-01", "night-2": "2026-01-02", "night-3": "2026-01-03"}
STEPS = {"night-1": 20260101, "night-2": 20260102, "night-3": 20260103}
CONFIGURATION_LABELS = "cka:linear:biased, ka:linear, procrustes:linear"


def related(rng, latent, width):
    """A representation of the shared latent: uncentred, float32."""
    values = latent @ rng.standard_normal((latent.shape[1], width))
    return (values + rng.standard_normal((len(latent), width)) + 1.0).astype(np.float32)


def nightly(path, out, previous=None, *extra):
    """Run the command in this process (Ray is the session's) from ``path``, where MLflow's
    default store is; (exit code, stdout). A night of `NIGHTS` runs as one of `SCHEDULE`."""
    args = ["nightly", str(path / "job.yaml"), "--out", str(path / out), "--quiet", *extra]
    if out in NIGHTS:
        args += ["--schedule", SCHEDULE, "--date", NIGHTS[out]]
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


def store_digest_of(folder):
    """The SHA-256 of the JSON of every representation's ids and shard hashes, read from the
    manifests on disk."""
    digests = {}
    for name, representation in open_store(folder).representations.items():
        content = json.loads((representation.path / "_manifest.json").read_text())
        digests[name] = {
            "ids_sha256": content["ids_sha256"],
            "shards": [shard["sha256"] for shard in content["shards"]],
        }
    assert digests, f"no manifests under {folder}"
    text = json.dumps(digests, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def mlflow_runs(path):
    """(client, parent run of the schedule, {night: its run})."""
    uri = read(path, "night-1", "nightly.json")["tracking_uri"]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("nightly").experiment_id
    (parent,) = client.search_runs(
        [experiment], filter_string=f"tags.`repalign.schedule` = '{SCHEDULE}'"
    )
    runs = {night: client.get_run(read(path, night, "nightly.json")["run_id"]) for night in NIGHTS}
    return client, parent, runs


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
    runs["store-1"] = store_digest_of(path / "store")
    runs["night-1"] = nightly(path, "night-1")

    arrays["d.x"] = related(rng, latent, 5)
    write_representation(path / "store", "d.x", np.arange(N), arrays["d.x"], shard_rows=700)
    runs["arrays-2"] = dict(arrays)
    runs["store-2"] = store_digest_of(path / "store")
    runs["night-2"] = nightly(path, "night-2", "night-1")
    spec = parse_spec({**job, "out": str(path / "full-2")})
    runs["full-2"] = run_alignment(spec, quiet=True)

    # b.x moves: shifted by 1 per column and noised; its old rows are gone afterwards
    arrays["b.x"] = (arrays["b.x"] + 1.0 + 0.8 * rng.standard_normal((N, 6))).astype(np.float32)
    write_representation(
        path / "store", "b.x", np.arange(N), arrays["b.x"], shard_rows=700, overwrite=True
    )
    runs["arrays-3"] = dict(arrays)
    runs["store-3"] = store_digest_of(path / "store")
    runs["night-3"] = nightly(path, "night-3", "night-2", "--threshold", str(THRESHOLD))
    return path, runs


def test_the_command_is_registered():
    assert "nightly" in build_parser().format_help()


def test_a_date_that_is_not_iso_8601_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["nightly", "job.yaml", "--date", "last tuesday"])
    assert exited.value.code == 2
    assert "--date: must be a date (2026-01-15)" in capsys.readouterr().err


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
        # the heatmaps, drawn by the command into OUT/heatmaps and logged as they are
        drawn = sorted(f"heatmaps/{f.name}" for f in (path / night / "heatmaps").iterdir())
        logged = client.list_artifacts(record["run_id"], "heatmaps")
        assert drawn and sorted(a.path for a in logged) == drawn


def test_the_change_report_is_also_logged_as_tables(nights, tmp_path):
    path, _ = nights
    client, _, runs = mlflow_runs(path)
    for night, run in runs.items():
        changes = read(path, night, "changes.json")
        folder = tmp_path / night
        folder.mkdir()
        moved_csv = client.download_artifacts(run.info.run_id, "changes/moved.csv", str(folder))
        with open(moved_csv, newline="") as file:
            reader = csv.DictReader(file)
            assert reader.fieldnames == ["rep_a", "rep_b", "measure", "kernel", "estimator",
                                         "before", "after", "delta"]  # fmt: skip
            moved = list(reader)
        assert len(moved) == len(changes["moved"])
        for row, expected in zip(moved, changes["moved"], strict=True):
            for column, value in expected.items():
                cell = row[column]
                assert (float(cell) if isinstance(value, float) else cell) == value
        drift_csv = client.download_artifacts(run.info.run_id, "changes/drift.csv", str(folder))
        with open(drift_csv, newline="") as file:
            drift = {row.pop("representation"): row for row in csv.DictReader(file)}
        assert drift.keys() == changes["drift"].keys()
        for name, row in drift.items():
            assert float(row["mmd2"]) == changes["drift"][name]["mmd2"]
            assert float(row["std_err"]) == changes["drift"][name]["std_err"]
    assert len(read(path, "night-3", "changes.json")["moved"]) > 0  # the tables are not empty
    assert list(read(path, "night-3", "changes.json")["drift"]) == ["b.x"]


def test_each_night_is_named_and_tagged_with_the_store_it_read(nights):
    path, runs_of = nights
    _, _, runs = mlflow_runs(path)
    for number, (night, run) in enumerate(runs.items(), start=1):
        assert run.info.run_name == f"nightly · nightly · store · {NIGHTS[night]} 00:00 UTC"
        assert run.data.tags["repalign.store_digest"] == runs_of[f"store-{number}"]
        assert run.data.tags["repalign.version"] == repalign.__version__
        assert run.data.tags["repalign.configurations"] == CONFIGURATION_LABELS
    digests = {run.data.tags["repalign.store_digest"] for run in runs.values()}
    assert len(digests) == 3  # d.x added, then b.x rewritten


def test_a_schedules_nights_are_children_of_its_parent_run(nights):
    path, _ = nights
    _, parent, runs = mlflow_runs(path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["repalign.kind"] == "schedule"
    assert parent.info.run_name == f"nightly · schedule {SCHEDULE} · store"
    for run in runs.values():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_each_pair_has_one_value_per_night_in_the_schedules_trend(nights):
    path, _ = nights
    client, parent, _ = mlflow_runs(path)
    tables = {night: values(path, night) for night in NIGHTS}
    assert len(parent.data.metrics) == len(tables["night-3"])  # one series per pair
    for key in tables["night-3"]:
        history = client.get_metric_history(parent.info.run_id, metric_key(*key))
        in_order = sorted(history, key=lambda metric: metric.timestamp)
        expected = [(STEPS[night], tables[night][key]) for night in NIGHTS if key in tables[night]]
        assert [(metric.step, metric.value) for metric in in_order] == expected, key
    old = [key for key in tables["night-3"] if "d.x" not in key]
    assert len(old) == 3 * 6  # every pair of a.x, b.x, c.x, three nights each
    for key in old:
        assert len(client.get_metric_history(parent.info.run_id, metric_key(*key))) == 3


def test_query_prints_a_pairs_values_night_by_night(nights, capsys):
    path, _ = nights
    uri = read(path, "night-1", "nightly.json")["tracking_uri"]
    _, parent, _ = mlflow_runs(path)
    code = main(["query", "--schedule", SCHEDULE, "--pair", "b.x", "a.x", "--tracking-uri", uri])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == f"schedule {SCHEDULE}, run {parent.info.run_id}: a.x / b.x"
    configurations = [
        ("cka", "linear", "biased"),
        ("ka", "linear", ""),
        ("procrustes", "linear", ""),
    ]
    header = lines[1].split()
    assert header == ["night", "(UTC)", "cka.linear.biased", "ka.linear", "procrustes.linear"]
    assert len(lines) == 2 + 3
    for line, night in zip(lines[2:], NIGHTS, strict=True):
        table = values(path, night)
        expected = [f"{table[(*c, 'a.x', 'b.x')]:.4f}" for c in configurations]
        assert line.split() == [NIGHTS[night], "00:00", *expected]


def test_query_names_a_pair_the_schedule_does_not_have(nights, capsys):
    path, _ = nights
    uri = read(path, "night-1", "nightly.json")["tracking_uri"]
    code = main(["query", "--schedule", SCHEDULE, "--pair", "a.x", "z.x", "--tracking-uri", uri])
    assert code == 2
    error = capsys.readouterr().err
    assert "the pair a.x / z.x has no value in the runs of schedule a1b2c3" in error


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
