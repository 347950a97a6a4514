"""The command line, run as a user runs it."""

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest

from repalign import __version__
from repalign.store import write_representation
from tests.commands import job_environment, repalign_command
from tests.commands import run_repalign as repalign
from tests.servers import free_port

pytestmark = pytest.mark.slow  # the command line as subprocesses; the demo trains its zoo


def test_help_lists_the_commands():
    result = repalign("--help")
    assert result.returncode == 0
    for command in ("demo", "zoo", "ingest", "validate", "ls", "align", "run", "stitch", "ui"):
        assert command in result.stdout


def test_version():
    assert repalign("--version").stdout.strip() == f"repalign {__version__}"


@pytest.mark.parametrize("status", [0, 3])
def test_the_command_ends_after_every_exit_handler_with_its_status(status):
    """`repalign.cli.run` ends the process without tearing down its modules, but only after the
    exit handlers that the command's libraries registered, and with their output and the
    logging module's buffered records written. An object alive at the end is not finalised."""
    code = (
        "import atexit, logging, logging.handlers, sys\n"
        "import repalign.cli as cli\n"
        "class Kept:\n"
        "    def __del__(self):\n"
        "        sys.stdout.write(' torn down')\n"
        "def command():\n"
        "    global kept\n"
        "    kept = Kept()\n"
        "    atexit.register(sys.stdout.write, ' a library handler ran')\n"
        "    buffered = logging.handlers.MemoryHandler(1000, logging.CRITICAL + 1,\n"
        "                                              logging.StreamHandler(sys.stderr))\n"
        "    logging.getLogger('x').addHandler(buffered)\n"
        "    logging.getLogger('x').warning('logged')\n"
        "    sys.stdout.write('no newline, not flushed')\n"
        f"    return {status}\n"
        "cli.main = command\n"
        "cli.run()\n"
    )
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=buffered
    )
    assert done.returncode == status
    assert done.stdout == "no newline, not flushed a library handler ran"
    assert done.stderr == "logged\n"


def test_unknown_command_fails_with_usage():
    result = repalign("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """The folder the demo runs in: MLflow's default store, mlflow.db, is made there."""
    return tmp_path_factory.mktemp("demo-cwd")


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory, demo_folder):
    store = tmp_path_factory.mktemp("zoo")
    out = tmp_path_factory.mktemp("demo-out")
    result = repalign("demo", "--store", str(store), "--out", str(out), cwd=demo_folder)
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse_matrix(output):
    """{row label: [cells]} of the demo's CKA matrix (cells .xx or 1.0)."""
    rows = {}
    for line in output.splitlines():
        match = re.match(r"\s*\d+\. (\S+)\s+((?:\s*(?:1\.0|\.\d\d))+)\s+test accuracy", line)
        if match:
            rows[match.group(1)] = [float(v) for v in match.group(2).split()]
    return rows


def test_demo_builds_the_zoo_and_prints_its_matrix(demo_output):
    assert "the digits model zoo" in demo_output and "built in" in demo_output
    matrix = parse_matrix(demo_output)
    names = list(matrix)
    assert len(names) == 16  # 4 architectures × (3 seeds + 1 untrained control)
    for i, name in enumerate(names):
        assert matrix[name][i] == 1.0
        assert all(matrix[name][j] == matrix[other][i] for j, other in enumerate(names))


def test_demo_prints_the_calibrated_matrix_beside_the_raw_one(demo_output):
    """Calibrated CKA, (CKA − m)/(1 − m) with a null mean 0 ≤ m < 1, is never above the raw CKA;
    a representation against itself has no null (—)."""
    raw = parse_matrix(demo_output)
    names = list(raw)
    lines = demo_output.split("The same, calibrated against its permutation null")[1]
    calibrated = {}
    for line in lines.splitlines():
        match = re.match(r"\s*\d+\. (\S+)((?:\s+(?:1\.0|-?\.\d\d|—))+)$", line)
        if match:
            calibrated[match.group(1)] = match.group(2).split()
        if len(calibrated) == len(names):
            break
    assert list(calibrated) == names
    for i, name in enumerate(names):
        assert calibrated[name][i] == "—"
        for j, cell in enumerate(calibrated[name]):
            if j != i:
                assert float(cell) <= raw[name][j] + 0.01  # both printed to 2 decimals
    seeds = float(calibrated["mlp-w64-s0.fc3"][names.index("mlp-w64-s1.fc3")])
    untrained = float(calibrated["mlp-w64-s0.fc3"][names.index("mlp-w64-init.fc3")])
    assert seeds > 0.8 and untrained < seeds


def test_demo_values_make_sense(demo_output):
    """Seeds of one architecture agree more than a trained and an untrained network."""
    matrix = parse_matrix(demo_output)
    names = list(matrix)
    seeds = matrix["mlp-w64-s0.fc3"][names.index("mlp-w64-s1.fc3")]
    untrained = matrix["mlp-w64-s0.fc3"][names.index("mlp-w64-init.fc3")]
    assert seeds > 0.8 > untrained
    pairs = [line for line in demo_output.splitlines() if " ~ " in line]
    assert len(pairs) == 4 and "same architecture, other seed" in pairs[0]


def test_demo_logs_to_mlflow_and_says_how_to_open_it(demo_output, demo_folder):
    """Where MLflow logs by default (mlflow.db in the working folder), and the demo says so."""
    uri = f"sqlite:///{demo_folder}/mlflow.db"
    assert f"default: {uri} (mlflow.db in this folder" in demo_output
    assert demo_output.rstrip().endswith("repalign ui")
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("digits-zoo").experiment_id
    (run,) = client.search_runs([experiment], filter_string="tags.`repalign.kind` = 'alignment'")
    assert run.info.run_id in demo_output
    assert run.info.run_name.startswith("digits-zoo · alignment · ")
    assert len(run.data.tags["repalign.store_digest"]) == 64
    assert len(run.data.metrics) == 6 * 60 * 61 // 2  # six measures, every pair of 60 layers
    (stitching,) = client.search_runs(
        [experiment], filter_string="tags.`repalign.kind` = 'stitching'"
    )
    assert stitching.info.run_id in demo_output
    pairs = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{stitching.info.run_id}'"
    )
    assert len(pairs) == 5


def test_demo_prints_stitches_with_their_bound(demo_output):
    rows = {}
    for line in demo_output.splitlines():
        if " -> " in line and "source -> target" not in line:
            cells = line.split()[3:12]  # after "source -> target"
            rows[line.split("   ")[-1].strip()] = [float(c) for c in cells]
    assert list(rows) == ["itself", "other seed", "CNN into MLP", "wider MLP into CNN",
                          "untrained control"]  # fmt: skip
    for _, residual, kappa, risk2, plugin, _, bound, *_ in rows.values():
        assert plugin <= bound + 5e-4  # printed to 3 decimals
        # κ₂ is printed to 2 decimals
        assert bound == pytest.approx((risk2**0.5 + kappa * residual**0.5) ** 2, rel=0.01)
    assert rows["itself"][1] == 0.0 and rows["itself"][0] == 1.0
    # into the same target (mlp-w64-s0.fc3), the control leaves the largest residual and risk
    for column in (1, 5):
        others = [rows[name][column] for name in ("itself", "other seed", "CNN into MLP")]
        assert rows["untrained control"][column] > max(others)


def test_demo_reuses_the_cached_zoo(demo_output, tmp_path_factory):
    """A second demo on the store the first one trained opens it as it is: `ensure_zoo` trains
    nothing and touches no file."""
    from jobs.demo import ensure_zoo

    store = next(p for p in tmp_path_factory.getbasetemp().iterdir() if p.name.startswith("zoo"))
    files = {path: path.stat().st_mtime_ns for path in store.rglob("*")}
    opened, build_seconds = ensure_zoo(store)
    assert build_seconds is None
    assert len(opened.representations) == 60
    assert {path: path.stat().st_mtime_ns for path in store.rglob("*")} == files


# --- repalign ui ---------------------------------------------------------------------------------


def first_line(stream, timeout):
    """The first line ``stream`` gives within ``timeout`` seconds, or None."""
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def answers(url):
    """(HTTP status, body) of a GET of ``url``; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except OSError:
        return None


def test_ui_serves_mlflow_on_the_default_store_until_stopped(tmp_path, monkeypatch):
    """In a folder where a run was logged to MLflow's default store (mlflow.db there), `repalign
    ui` prints an address on 127.0.0.1 whose page and REST API show that run; SIGTERM stops
    it and the server it started."""
    from repalign.tracking import default_store, log_alignment_run
    from tests.test_tracking import PARAMS, SUMMARY, alignment_table

    monkeypatch.chdir(tmp_path)
    uri, artifacts = default_store()
    run_id = log_alignment_run(
        alignment_table(),
        params=PARAMS,
        summary=SUMMARY,
        experiment="ui-zoo",
        tracking_uri=uri,
        artifact_location=artifacts,
    )
    env = job_environment()
    port = free_port()
    with open(tmp_path / "ui-stderr.txt", "w") as stderr:
        ui = subprocess.Popen(
            repalign_command("ui", "--port", str(port)), cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
    try:
        line = first_line(ui.stdout, timeout=180)
        assert line, (tmp_path / "ui-stderr.txt").read_text()[-4000:]
        url = f"http://127.0.0.1:{port}"
        assert line.strip() == (
            f"MLflow UI of sqlite:///{tmp_path}/mlflow.db at {url} (Ctrl-C stops it)"
        )
        status, page = answers(url)
        assert status == 200 and "<title>MLflow</title>" in page
        status, body = answers(f"{url}/api/2.0/mlflow/experiments/search?max_results=100")
        assert status == 200
        experiments = {e["name"]: e["experiment_id"] for e in json.loads(body)["experiments"]}
        assert "ui-zoo" in experiments
        status, body = answers(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}")
        run = json.loads(body)["run"]
        assert run["info"]["experiment_id"] == experiments["ui-zoo"]
        assert run["info"]["run_name"].startswith("ui-zoo · alignment · zoo · ")
    finally:
        ui.send_signal(signal.SIGTERM)
        code = ui.wait(timeout=60)
    assert code == 0
    assert answers(url) is None  # the server went with it


def test_ui_refuses_a_port_in_use_by_name(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = repalign(
            "ui", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"
        )
    assert result.returncode == 2
    assert f"port {port} of 127.0.0.1 cannot be used" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """``repalign ls STORE | true``: the reader is gone before the listing is written."""
    write_representation(tmp_path / "store", "m.x", np.arange(50), np.ones((50, 3)))
    command = shlex.join(repalign_command("ls", str(tmp_path / "store"))) + " | true"
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert done.stderr == ""
    assert repalign("ls", str(tmp_path / "store")).stdout.count("m.x") == 1  # otherwise as usual
