"""`repalign run` as a user runs it: a spec file, in process or on a local Ray, MLflow's default
store in the working folder."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

import repalign
from repalign.store import write_representation
from tests.commands import job_environment, run_repalign

pytestmark = pytest.mark.slow  # job processes of the command line


def repalign_cli(*args, cwd):
    return run_repalign(*args, cwd=cwd, env=job_environment(RAY_AUTH_MODE="disabled"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(3)
    arrays = {}
    for name, width in (("mlp-s0.fc1", 6), ("mlp-s0.fc2", 4), ("mlp-s1.fc1", 6)):
        arrays[name] = rng.standard_normal((500, width)).astype(np.float32) + 1
        write_representation(path / "store", name, np.arange(500), arrays[name], shard_rows=128)
    spec = {
        "store": str(path / "store"),
        "out": str(path / "out"),
        "experiment": "zoo-nightly",
        "measures": [
            {"name": "cka", "estimator": "song"},
            {"name": "procrustes"},
            {"name": "mmd2"},
        ],
    }
    (path / "job.yaml").write_text(yaml.safe_dump(spec))
    result = repalign_cli("run", "job.yaml", cwd=path)
    assert result.returncode == 0, result.stderr
    return path, arrays, result


def test_writes_the_table_and_reports_the_run(finished_run):
    path, arrays, result = finished_run
    table = pq.read_table(path / "out" / "alignment.parquet").to_pylist()
    assert len(table) == 3 * 6
    row = next(
        r
        for r in table
        if (r["measure"], r["rep_a"], r["rep_b"]) == ("cka", "mlp-s0.fc1", "mlp-s1.fc1")
    )
    expected = repalign.cka(arrays["mlp-s0.fc1"], arrays["mlp-s1.fc1"], estimator="song")
    assert row["value"] == pytest.approx(expected, rel=1e-6)
    mmd = [r for r in table if r["measure"] == "mmd2" and r["status"] != "ok"]
    assert len(mmd) == 2 and all("different widths" in r["reason"] for r in mmd)
    assert "wrote" in result.stdout and "MLflow run" in result.stdout
    summary = json.loads((path / "out" / "summary.json").read_text())
    assert summary["representations"] == 3 and summary["missing_values"] == 2
    record = json.loads((path / "out" / "run.json").read_text())
    assert f"MLflow run {record['run_id']} " in result.stdout
    assert record["tracking_uri"] == f"sqlite:///{path}/mlflow.db"  # MLflow's default, cwd


def test_the_mlflow_run_holds_params_metrics_table_and_heatmaps(finished_run):
    path, _, result = finished_run
    client = MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("zoo-nightly")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id in result.stdout
    assert run.data.params["n"] == "500"
    assert "mlp-s0.fc2" in run.data.params["representations"]
    metrics = run.data.metrics
    assert len(metrics) == 3 * 6 - 2  # one per computed pair and measure
    assert metrics["cka.linear.song/mlp-s0.fc1/mlp-s0.fc1"] == pytest.approx(1.0)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results", "heatmaps", "summary.json"} <= artifacts
    heatmaps = {a.path for a in client.list_artifacts(run.info.run_id, "heatmaps")}
    configurations = ("cka-linear-song", "procrustes-linear", "mmd2-rbf-unbiased")
    # each configuration's matrix, as a PNG and a page, and its model-level one (two models)
    assert heatmaps == {
        f"heatmaps/{name}{suffix}"
        for name in configurations
        for suffix in (".png", ".html", "-models.png")
    }
    # drawn by the command into OUT/heatmaps while its child imported MLflow, logged as they are
    drawn = path / "out" / "heatmaps"
    assert {f"heatmaps/{f.name}" for f in drawn.iterdir()} == heatmaps
    logged = Path(client.download_artifacts(run.info.run_id, "heatmaps", str(path / "logged")))
    assert all((logged / f.name).read_bytes() == f.read_bytes() for f in drawn.iterdir())
    local = client.download_artifacts(run.info.run_id, "results/alignment.parquet", str(path))
    assert pq.read_table(local).equals(pq.read_table(path / "out" / "alignment.parquet"))


def test_no_progress_bars_in_logs(finished_run):
    _, _, result = finished_run
    assert "rows/s" not in result.stderr and "it/s" not in result.stderr


def test_flags_instead_of_a_spec(finished_run):
    path, _, _ = finished_run
    result = repalign_cli(
        "run",
        "--store",
        "store",
        "--out",
        "flags-out",
        "--measure",
        "cka:rbf:lange",
        "--measure",
        "svcca",
        "--representations",
        "mlp-s0.*",
        "--quiet",
        cwd=path,
    )
    assert result.returncode == 0, result.stderr
    table = pq.read_table(path / "flags-out" / "alignment.parquet").to_pylist()
    assert {(r["measure"], r["kernel"], r["estimator"]) for r in table} == {
        ("cka", "rbf", "lange"),
        ("svcca", "linear", ""),
    }
    assert len(table) == 2 * 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "store", "--out", "o", "--measure", "cka:poly"], "measures.0.kernel"),
        (
            ["--store", "store", "--out", "o", "--measure", "cka:linear:unbiased"],
            "estimator 'unbiased'",
        ),
        (["--store", "store", "--out", "o", "--measure", "cka,colour=red"], "measures.0.colour"),
        (["--store", "store", "--out", "o"], "at least one --measure"),
        (["--store", "nowhere", "--out", "o", "--measure", "cka"], "does not exist"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(finished_run, args, message):
    path, _, _ = finished_run
    result = repalign_cli("run", *args, cwd=path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_two_jobs_from_one_folder_log_two_runs_into_one_store(tmp_path):
    """No tracking URI: each job logs where MLflow would, mlflow.db in the working folder, made
    once; a small job runs in process and says so."""
    rng = np.random.default_rng(4)
    for name in ("a.x", "b.x"):
        data = rng.standard_normal((200, 16)).astype(np.float32)
        write_representation(tmp_path / "store", name, np.arange(200), data)
    for out in ("first", "second"):
        result = repalign_cli(
            "run", "--store", "store", "--out", out, "--measure", "cka", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert "executor local (no Ray cluster" in result.stdout
    assert not (tmp_path / "first" / "mlflow.db").exists()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("repalign").experiment_id])
    logged = {
        json.loads((tmp_path / out / "run.json").read_text())["run_id"]
        for out in ("first", "second")
    }
    assert {run.info.run_id for run in runs} == logged and len(logged) == 2
    for run in runs:
        assert run.info.artifact_uri.startswith(
            f"{tmp_path / 'mlruns'}/"
        ) or run.info.artifact_uri.startswith(f"file://{tmp_path / 'mlruns'}/")


def test_the_job_process_leaves_mlflow_to_its_logging_child(tmp_path):
    """The command's own process never imports MLflow (`jobs.uploader`): the child imports it
    while the job computes, logs the run, and prints what the command prints."""
    rng = np.random.default_rng(5)
    for name in ("a.x", "b.x"):
        data = rng.standard_normal((300, 8)).astype(np.float32)
        write_representation(tmp_path / "store", name, np.arange(300), data)
    program = (
        "import sys\n"
        "from repalign.cli import main\n"
        "code = main(['run', '--store', 'store', '--out', 'out', '--measure', 'cka', '--quiet'])\n"
        "print('mlflow imported:', 'mlflow' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=job_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "mlflow imported: False" in result.stdout
    run_id = json.loads((tmp_path / "out" / "run.json").read_text())["run_id"]
    assert f"MLflow run {run_id}" in result.stdout
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).info.status == (
        "FINISHED"
    )


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["--measure", "cka", "--incremental-from", "no-such-run"], "no-such-run"),
        (["--measure", "cka:cubic"], "cubic"),  # refused with the spec, the child already started
    ],
)
def test_a_job_that_fails_logs_nothing_and_leaves_no_logging_child(finished_run, flags, reason):
    path, _, _ = finished_run
    folder = path / f"failing-{reason}"
    folder.mkdir()
    args = ["--store", str(path / "store"), "--out", "never", *flags]
    result = repalign_cli("run", *args, cwd=folder)
    assert result.returncode == 2
    assert reason in result.stderr and "Traceback" not in result.stderr
    assert list(folder.iterdir()) == []  # no MLflow store, no output
    children = [
        process
        for process in Path("/proc").glob("[0-9]*")
        if b"jobs.uploader" in _cmdline(process) and _cwd(process) == folder
    ]
    assert children == []


@pytest.mark.parametrize("tracking_uri", [None, "postgresql://user:secret@127.0.0.1:9/mlflow"])
def test_the_logging_child_gets_the_tracking_uri_in_its_environment(tracking_uri, monkeypatch):
    """Not on its command line, which every user of the machine can read (ps): a URI may hold
    a password. With none, the child logs to the default store, whatever the environment."""
    from jobs.uploader import Uploader

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    with Uploader("run", tracking_uri) as uploader:
        child = uploader._child
        environment = _environment(child.pid)
        uploader.cancel()
    assert "secret" not in " ".join(child.args) and "elsewhere" not in " ".join(child.args)
    given = [v.decode() for v in environment if v.startswith(b"MLFLOW_TRACKING_URI=")]
    assert given == ([] if tracking_uri is None else [f"MLFLOW_TRACKING_URI={tracking_uri}"])


def _environment(pid, timeout=30.0):
    """The environment a process was started with (/proc/PID/environ), as a list of b"NAME=value".

    Popen returns once the child has begun to execute its program, which can be a moment before
    the kernel has laid out the new program's environment: /proc then reads as empty, so it is
    read again until it is not."""
    deadline = time.monotonic() + timeout
    while not (content := (Path("/proc") / str(pid) / "environ").read_bytes()):
        assert time.monotonic() < deadline, f"process {pid} shows no environment"
        time.sleep(0.01)
    return content.split(b"\0")


def _cmdline(process):
    """A process's command line, or b"" for one that ended meanwhile."""
    try:
        return (process / "cmdline").read_bytes()
    except OSError:
        return b""


def _cwd(process):
    """A process's working folder, or None for one that ended meanwhile."""
    try:
        return (process / "cwd").readlink()
    except OSError:
        return None
