"""Jobs logging to a real ``mlflow server`` over HTTP, and no result lost when it is down.

The server (`tests.servers.mlflow_server`) has a SQLite backend store and proxied artifacts,
so the client reaches everything over HTTP; one test runs it on PostgreSQL.
"""

import json
import shutil
import subprocess
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from jobs.sync import record_pending
from repalign.contract import PENDING_UPLOAD_FILE
from repalign.store import write_representation
from repalign.tracking import UPLOAD_TAG, latest_run, load_alignment_table, metric_key
from repalign.zoo import build_zoo
from tests.commands import job_environment, repalign_command, run_repalign
from tests.servers import (
    MissingSystemPackage,
    free_port,
    mlflow_server,
    postgres_bindir,
    postgres_server,
)

pytestmark = pytest.mark.slow  # a real MLflow server and job processes

MEASURES = ("--measure", "cka", "--measure", "procrustes")  # linear: one moments pass
ROWS = 400_000  # rows per representation: the moments pass takes a few seconds


def repalign_cli(*args, cwd, env=None, background=False):
    env = job_environment(RAY_AUTH_MODE="disabled", **(env or {}))
    if background:
        return subprocess.Popen(
            repalign_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
    return run_repalign(*args, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(f"sqlite:///{folder}/mlflow.db", folder / "artifacts") as running:
        yield running


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Four representations, big enough that a job computes for a few seconds."""
    path = tmp_path_factory.mktemp("store") / "store"
    rng = np.random.default_rng(0)
    for name in ("a-s0.fc", "a-s1.fc", "b-s0.fc", "b-s1.fc"):
        values = rng.standard_normal((ROWS, 32)).astype(np.float32)
        write_representation(path, name, np.arange(ROWS), values, shard_rows=ROWS // 8)
    return path


@pytest.fixture(scope="module")
def logged_job(server, store, tmp_path_factory):
    """A job that logged to the server while it was up."""
    path = tmp_path_factory.mktemp("job")
    result = repalign_cli(
        "run", "--store", str(store), "--out", "out", *MEASURES, "--experiment", "http",
        "--tracking-uri", server.url, "--quiet", cwd=path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path / "out", result


def runs(client, experiment):
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def assert_run_holds(client, run_id, out, tracking_uri):
    """The run has OUT's metrics, params and table (read back over HTTP)."""
    table = pq.read_table(out / "alignment.parquet")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    ok = [r for r in table.to_pylist() if r["status"] == "ok"]
    assert len(ok) == len(run.data.metrics) > 0
    for r in ok:
        key = metric_key(r["measure"], r["kernel"], r["estimator"], r["rep_a"], r["rep_b"])
        assert run.data.metrics[key] == pytest.approx(r["value"], rel=1e-12)
    params = json.loads((out / "summary.json").read_text())["params"]
    assert run.data.params["store"] == str(params["store"])
    assert load_alignment_table(run_id, tracking_uri=tracking_uri).equals(table)


def test_a_job_logs_params_metrics_and_its_table_over_http(server, logged_job):
    out, result = logged_job
    record = json.loads((out / "run.json").read_text())
    assert record["tracking_uri"] == server.url
    assert f"MLflow run {record['run_id']} in experiment 'http' at {server.url}" in result.stdout
    assert not (out / PENDING_UPLOAD_FILE).exists() and not (out / "mlflow.db").exists()
    assert_run_holds(MlflowClient(server.url), record["run_id"], out, server.url)


def test_server_down_mid_job_keeps_the_results_and_sync_uploads_them(server, store, tmp_path):
    progress = tmp_path / "progress.json"
    job = repalign_cli(
        "run", "--store", str(store), "--out", "out", *MEASURES, "--experiment", "outage",
        "--tracking-uri", server.url, "--quiet", cwd=tmp_path,
        env={"REPALIGN_PROGRESS_FILE": str(progress)}, background=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not progress.exists() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.poll() is None, "the job ended before it reported progress"
        server.stop()  # the job is computing: it has not logged anything yet
        stdout, stderr = job.communicate(timeout=600)
    finally:
        job.kill()
        server.start()
    out = tmp_path / "out"
    assert job.returncode == 0, stderr
    assert "MLflow run pending upload" in stdout and "run `repalign sync out`" in stdout
    pending = json.loads((out / PENDING_UPLOAD_FILE).read_text())
    assert pending["job"] == "alignment" and pending["tracking_uri"] == server.url
    assert pending["experiment"] == "outage" and "error" in pending
    assert (pending["table"], pending["summary"]) == ("alignment.parquet", "summary.json")
    assert (out / "alignment.parquet").exists() and not (out / "run.json").exists()
    assert pending["heatmaps"] == "heatmaps" and (out / "heatmaps").is_dir()  # the job drew them
    client = MlflowClient(server.url)
    assert all(run.info.status != "FINISHED" for run in runs(client, "outage"))

    # a drawn folder that has gone by the time of the sync is drawn again
    drawn = sorted(f.name for f in (out / "heatmaps").iterdir())
    (out / "heatmaps").rename(tmp_path / "moved-heatmaps")
    synced = repalign_cli("sync", str(out), cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    record = json.loads((out / "run.json").read_text())
    assert f"logged as MLflow run {record['run_id']} at {server.url}" in synced.stdout
    assert not (out / PENDING_UPLOAD_FILE).exists()
    assert_run_holds(client, record["run_id"], out, server.url)
    logged = client.list_artifacts(record["run_id"], "heatmaps")
    assert sorted(a.path.removeprefix("heatmaps/") for a in logged) == drawn
    assert latest_run("outage", tracking_uri=server.url) == record["run_id"]

    again = repalign_cli("sync", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"nothing to upload; logged already as MLflow run {record['run_id']}" in again.stdout
    assert [run.info.run_id for run in runs(client, "outage")] == [record["run_id"]]


def pending_copy(logged_out, folder, tracking_uri, experiment):
    """A job output folder with the results of ``logged_out`` and an upload pending."""
    folder.mkdir()
    for name in ("alignment.parquet", "summary.json"):
        shutil.copy(logged_out / name, folder / name)
    record_pending(folder, "alignment", tracking_uri=tracking_uri, experiment=experiment)
    return folder, json.loads((folder / PENDING_UPLOAD_FILE).read_text())["upload"]


def test_sync_marks_an_interrupted_upload_failed_and_logs_a_fresh_run(server, logged_job, tmp_path):
    out, upload = pending_copy(logged_job[0], tmp_path / "out", server.url, "interrupted")
    client = MlflowClient(server.url)
    experiment = client.create_experiment("interrupted")
    # what an upload cut off by the server going down leaves: a RUNNING run, half logged
    partial = client.create_run(experiment, tags={UPLOAD_TAG: upload}).info.run_id
    client.log_param(partial, "store", "half-done")
    synced = repalign_cli("sync", str(out), cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    assert run_id != partial and client.get_run(partial).info.status == "FAILED"
    assert_run_holds(client, run_id, out, server.url)
    assert latest_run("interrupted", tracking_uri=server.url) == run_id


def test_sync_takes_a_run_the_interrupted_upload_finished(server, logged_job, tmp_path):
    out, upload = pending_copy(logged_job[0], tmp_path / "out", server.url, "finished")
    client = MlflowClient(server.url)
    experiment = client.create_experiment("finished")
    # the upload finished the run, but its answer never came back
    finished = client.create_run(experiment, tags={UPLOAD_TAG: upload}).info.run_id
    client.set_terminated(finished, "FINISHED")
    synced = repalign_cli("sync", str(out), cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert json.loads((out / "run.json").read_text())["run_id"] == finished
    assert [run.info.run_id for run in runs(client, "finished")] == [finished]


def test_sync_with_the_server_still_down_keeps_the_upload_pending(logged_job, tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    out, _ = pending_copy(logged_job[0], tmp_path / "out", down, "down")
    started = time.monotonic()
    synced = repalign_cli("sync", str(out), cwd=tmp_path)
    assert time.monotonic() - started < 60  # short retries (jobs.sync.SHORT_RETRIES)
    assert synced.returncode == 2
    assert f"the tracking server at {down} could not be reached" in synced.stderr
    assert "1 of 1 folders not synced" in synced.stderr
    pending = json.loads((out / PENDING_UPLOAD_FILE).read_text())
    assert "error" in pending and not (out / "run.json").exists()


def test_sync_names_folders_that_are_not_job_outputs(logged_job, tmp_path):
    (tmp_path / "empty").mkdir()
    synced = repalign_cli("sync", "empty", "missing", str(logged_job[0]), cwd=tmp_path)
    assert synced.returncode == 2
    assert "empty holds neither" in synced.stderr and "missing is not a folder" in synced.stderr
    assert "nothing to upload; logged already" in synced.stdout  # the others are still synced
    assert "2 of 3 folders not synced: empty, missing." in synced.stderr


def test_a_stitching_job_kept_pending_is_synced_with_its_nested_runs(server, tmp_path):
    zoo = tmp_path / "zoo"
    build_zoo(zoo, "digits-small", progress=False)
    down = f"http://127.0.0.1:{free_port()}"
    job = repalign_cli(
        "stitch", "--store", str(zoo), "--out", "out", "--experiment", "stitching",
        "--pair", "mlp-w64-s1.fc3", "mlp-w64-s0.fc3", "--workers", "1",
        "--tracking-uri", down, "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    out = tmp_path / "out"
    assert "MLflow run pending upload" in job.stdout
    pending = json.loads((out / PENDING_UPLOAD_FILE).read_text())
    assert (pending["job"], pending["table"]) == ("stitching", "stitching.parquet")

    synced = repalign_cli("sync", "out", "--tracking-uri", server.url, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["tracking_uri"] == server.url
    client = MlflowClient(server.url)
    found = runs(client, "stitching")
    assert len(found) == 2 and all(run.info.status == "FINISHED" for run in found)
    child = next(run for run in found if run.info.run_id != record["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == record["run_id"]
    with_tables = tmp_path / "downloaded"
    with_tables.mkdir()
    path = client.download_artifacts(record["run_id"], "results/stitching.parquet", with_tables)
    assert pq.read_table(path).equals(pq.read_table(out / "stitching.parquet"))


def test_sync_to_a_server_on_postgresql(logged_job, tmp_path):
    try:
        postgres_bindir()
    except MissingSystemPackage as e:
        pytest.skip(f"no PostgreSQL server binaries, which .ci/system-packages installs: {e}")
    # a server of its own: MLflow's tables (one is called "jobs") stay out of other tests' way
    with postgres_server() as database, mlflow_server(database, tmp_path / "artifacts") as pg:
        out, _ = pending_copy(logged_job[0], tmp_path / "out", pg.url, "postgres")
        synced = repalign_cli("sync", str(out), cwd=tmp_path)
        assert synced.returncode == 0, synced.stderr
        run_id = json.loads((out / "run.json").read_text())["run_id"]
        assert_run_holds(MlflowClient(pg.url), run_id, out, pg.url)


def test_a_nightly_run_kept_pending_is_synced_with_its_change_report(server, tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a-s0.fc", "b-s0.fc"):
        values = rng.standard_normal((500, 8)).astype(np.float32)
        write_representation(tmp_path / "store", name, np.arange(500), values)
    spec = {"store": "store", "out": "out", "experiment": "nightly", "measures": [{"name": "cka"}]}
    (tmp_path / "job.json").write_text(json.dumps(spec))
    down = f"http://127.0.0.1:{free_port()}"
    job = repalign_cli("nightly", "job.json", "--tracking-uri", down, "--quiet", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    out = tmp_path / "out"
    assert "MLflow run pending upload" in job.stdout and not (out / "nightly.json").exists()
    pending = json.loads((out / PENDING_UPLOAD_FILE).read_text())
    assert (pending["job"], pending["changes"], pending["plan"]) == (
        "nightly",
        "changes.json",
        "full",
    )

    synced = repalign_cli("sync", "out", "--tracking-uri", server.url, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    record = json.loads((out / "nightly.json").read_text())
    assert record == {**json.loads((out / "run.json").read_text()), "plan": "full"}
    assert_run_holds(MlflowClient(server.url), record["run_id"], out, server.url)
    downloaded = MlflowClient(server.url).download_artifacts(
        record["run_id"], "changes.json", str(tmp_path)
    )
    assert json.loads(open(downloaded).read()) == json.loads((out / "changes.json").read_text())
