"""What `repalign run` prints on a user's terminal (docs/design.md §10, library logs): its own
lines only; what Ray and MLflow log goes to OUT/libraries.log. A tracking URI no run can be
logged to is refused in one line, before the job starts."""

import numpy as np
import pytest

from repalign.contract import LIBRARY_LOG_FILE
from repalign.store import write_representation
from tests.commands import job_environment, run_repalign


def repalign_as_a_user(*args, cwd, home):
    """``repalign`` with a user's environment: no RAY_AUTH_MODE (the test suite sets it), so
    Ray enables token authentication and, with a fresh HOME, writes a new token."""
    env = job_environment(HOME=str(home), RAY_AUTH_MODE=None)
    return run_repalign(*args, cwd=cwd, env=env)


pytestmark = pytest.mark.slow  # job processes of the command line


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("terminal")
    rng = np.random.default_rng(0)
    for name, width in (("m-s0.fc1", 5), ("m-s1.fc1", 3)):
        rows = rng.standard_normal((200, width)).astype(np.float32)
        write_representation(path / "store", name, np.arange(200), rows)
    (path / "home").mkdir()
    return path


@pytest.fixture(scope="module")
def finished_run(folder):
    result = repalign_as_a_user(
        "run",
        "--store",
        "store",
        "--out",
        "out",
        "--measure",
        "cka",
        "--executor",
        "ray",  # a job this small would run in process, and Ray would have nothing to say
        cwd=folder,
        home=folder / "home",
    )
    assert result.returncode == 0, result.stderr
    return result


def test_a_run_prints_no_ray_or_mlflow_log_lines(finished_run):
    output = finished_run.stdout + finished_run.stderr
    for noise in ("token", "Token", "alembic", "database tables", "Started a local Ray"):
        assert noise not in output, output
    assert " INFO " not in output and " WARNING " not in output, output
    assert "wrote out/alignment.parquet" in finished_run.stdout  # its own lines stay


def test_what_ray_and_mlflow_log_is_kept_in_the_output_folder(folder, finished_run):
    log = (folder / "out" / LIBRARY_LOG_FILE).read_text()
    assert "Token authentication is enabled" in log  # Ray's warning, at ray.init
    assert "Creating initial MLflow database tables" in log  # MLflow's migration, at logging


@pytest.mark.parametrize("uri", ["file:{folder}/mlruns", "{folder}/mlruns"])
def test_a_file_store_uri_is_refused_in_one_line_before_the_job_starts(folder, uri):
    uri = uri.format(folder=folder)
    result = repalign_as_a_user(
        "run",
        *("--store", "store", "--out", "refused", "--measure", "cka"),
        *("--tracking-uri", uri),
        cwd=folder,
        home=folder / "home",
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("repalign run: error: tracking_uri must be")
    assert f"use sqlite:///{folder}/mlruns/mlflow.db instead" in line
    assert not (folder / "refused").exists()  # nothing ran
