"""The contract between jobs and the service (repalign.contract): the job command line is one
the ``repalign`` parser accepts, the run record is read where the jobs write it, and
`atomic_write` replaces a file whole or not at all."""

import datetime
import json
import threading

import numpy as np
import pytest

from repalign.cli import build_parser
from repalign.contract import (
    JOB_COMMANDS,
    NIGHTLY_FILE,
    RESULT_FILES,
    RUN_FILE,
    atomic_write,
    job_arguments,
    job_command,
    recorded_run_id,
)


@pytest.mark.parametrize("kind", sorted(JOB_COMMANDS))
def test_the_job_arguments_of_every_kind_parse_as_its_command(kind, tmp_path):
    arguments = job_arguments(
        kind,
        tmp_path / "spec.json",
        tracking_uri="http://mlflow:5000",
        ray_address="10.0.0.1:6379",
        out=tmp_path / "out",
        threshold=0.125,
        previous=tmp_path / "previous",
        schedule="a1b2c3",
        date=datetime.datetime(2026, 1, 15, 2, 0),  # naive, as SQLite gives it back: UTC
    )
    args = build_parser().parse_args(arguments)
    assert args.command == JOB_COMMANDS[kind]
    assert args.spec == str(tmp_path / "spec.json")
    assert args.tracking_uri == "http://mlflow:5000" and args.ray_address == "10.0.0.1:6379"
    assert args.quiet
    if kind == "nightly":
        assert (args.out, args.threshold, args.previous) == (
            str(tmp_path / "out"),
            0.125,
            str(tmp_path / "previous"),
        )
        assert args.schedule == "a1b2c3"
        assert args.date == datetime.datetime(2026, 1, 15, 2, 0, tzinfo=datetime.UTC)
    else:
        assert "--schedule" not in arguments and "--date" not in arguments


def test_a_first_night_has_no_previous_and_a_local_job_no_ray_address(tmp_path):
    arguments = job_arguments(
        "nightly", "spec.json", tracking_uri="sqlite:///m.db", out=tmp_path, threshold=0.05
    )
    args = build_parser().parse_args(arguments)
    assert args.previous is None and "--previous" not in arguments
    assert "--ray-address" not in arguments
    assert args.schedule is None and args.date is None


def test_the_job_command_runs_the_repalign_module_with_the_python_given():
    assert job_command(["run", "s.json"], python="/opt/py/bin/python") == [
        "/opt/py/bin/python",
        "-m",
        "repalign",
        "run",
        "s.json",
    ]


def test_every_kind_of_job_has_its_result_files():
    assert set(RESULT_FILES) == set(JOB_COMMANDS)
    for files in RESULT_FILES.values():
        assert files.table.endswith(".parquet") and files.summary.endswith(".json")


def test_the_run_record_written_by_an_upload_is_read_back(tmp_path):
    from jobs.outputs import write_table_and_summary
    from jobs.sync import record_pending, upload
    from tests.test_tracking import PARAMS, SUMMARY, alignment_table

    out = tmp_path / "out"
    write_table_and_summary(
        out, RESULT_FILES["alignment"], alignment_table(), {**SUMMARY, "params": PARAMS}
    )
    assert recorded_run_id(out) is None  # not logged yet
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    record_pending(
        out,
        "alignment",
        tracking_uri=tracking_uri,
        experiment="contract",
        artifact_location=str(tmp_path / "mlruns"),
    )
    run_id, _ = upload(out)
    assert recorded_run_id(out) == run_id
    assert json.loads((out / RUN_FILE).read_text())["run_id"] == run_id


def test_a_nightly_record_is_read_when_there_is_no_run_record(tmp_path):
    (tmp_path / NIGHTLY_FILE).write_text(json.dumps({"run_id": "abc", "plan": "full"}))
    assert recorded_run_id(tmp_path) == "abc"


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "moments.npz"
    path.write_text("old")
    with atomic_write(path) as temporary:
        assert temporary.parent == tmp_path and temporary != path
        np.savez(temporary, x=np.arange(3))  # adds ".npz" to a name without it
    assert np.load(path)["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["moments.npz"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_concurrent_writers_of_one_file_never_leave_a_mixed_file(tmp_path):
    path = tmp_path / "progress.json"
    contents = [json.dumps({"writer": i, "padding": "x" * 100_000}) for i in range(8)]

    def write(content):
        for _ in range(20):
            with atomic_write(path) as temporary:
                temporary.write_text(content)

    threads = [threading.Thread(target=write, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert path.read_text() in contents
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]
