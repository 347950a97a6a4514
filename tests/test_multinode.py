"""The alignment and stitching jobs on a real Ray cluster of two nodes, submitted through the
Ray Jobs API as `repalign run` and `repalign stitch`, against local runs of the same specs;
and the alignment job losing its worker node mid-pass.

The cluster (`tests.servers.ray_cluster`) is a head and a worker node of one CPU each, as
separate ``ray start`` processes on 127.0.0.1; the tests' own local Ray (``ray_session``)
computes the references. Stores and outputs are on this machine's disk, which both nodes see.
"""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jobs import ray_slots
from jobs.alignment import run_alignment
from jobs.engine import run_units
from jobs.stitching import run_stitching
from jobs.tasks import RangeTask
from repalign.contract import PROGRESS_FILE_ENV
from repalign.spec import parse_spec
from repalign.zoo import build_zoo
from tests.servers import ray_cluster
from tests.test_engine import make_store

pytestmark = [pytest.mark.multinode, pytest.mark.slow]

JOB_SECONDS = 240
# Exact RBF CKA on n = 12,288 rows: 12 blocks of 1024 rows, so 78 tiles, over 10 s of work
# for two actors: long enough to kill a node mid-pass. The linear CKA has one unit.
N = 12_288
WIDTHS = {f"m{i}.a": 8 for i in range(4)}
MEASURES = [{"name": "cka"}, {"name": "cka", "kernel": "rbf"}]
PAIRS = [("mlp-w64-s1.fc3", "mlp-w64-s0.fc3"), ("cnn-c8-init.conv2", "mlp-w64-s0.fc3")]


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster() as running:
        yield running
    left = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(running.root) not in left, "a process of the cluster outlived it"


@pytest.fixture(scope="module")
def client(cluster, ray_session):  # ray_session: RAY_AUTH_MODE=disabled, as for the cluster
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.dashboard_url)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("multinode-store")
    make_store(path, WIDTHS, dict.fromkeys(WIDTHS, 4096), n=N)
    spec = path / "spec.json"
    content = {"store": str(path), "out": "given by --out", "measures": MEASURES, "actors": 2}
    spec.write_text(json.dumps(content))
    return path, spec


@pytest.fixture(scope="module")
def local_alignment(ray_session, store):
    """The reference: the same spec on the tests' local Ray, two actors as on the cluster."""
    path, _ = store
    content = {"store": str(path), "out": str(path / "local"), "measures": MEASURES, "actors": 2}
    return run_alignment(parse_spec(content), quiet=True)


@pytest.fixture(scope="module")
def cluster_alignment(cluster, client, store, tmp_path_factory):
    """The spec submitted to the cluster as `repalign run`: its table and summary."""
    _, spec = store
    out = tmp_path_factory.mktemp("cluster-alignment")
    wait_for(client, submit(client, f"run {spec}", out))
    summary = json.loads((out / "summary.json").read_text())
    return pq.read_table(out / "alignment.parquet"), summary


def submit(client, command, out, env=None):
    """Submit ``repalign COMMAND`` as a Ray job that writes into ``out``; its job id."""
    tracking = f"sqlite:///{out}/mlflow.db"
    entrypoint = (
        f"mkdir -p {out} && cd {out} && {sys.executable} -m repalign {command} --out {out} "
        f"--tracking-uri {tracking} --quiet"
    )
    return client.submit_job(entrypoint=entrypoint, runtime_env={"env_vars": env or {}})


def wait_for(client, job_id):
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + JOB_SECONDS
    while not (status := client.get_job_status(job_id)).is_terminal():
        assert time.monotonic() < deadline, f"job {job_id} still {status}"
        time.sleep(0.5)
    assert status == JobStatus.SUCCEEDED, client.get_job_logs(job_id)


def assert_same_table(got, expected):
    """Value by value, NaN equal to NaN, no tolerance: the jobs are deterministic."""
    pd.testing.assert_frame_equal(got.to_pandas(), expected.to_pandas(), check_exact=True)


def assert_close_table(got, expected):
    """As `assert_same_table`, but float columns to 1e-12 relative: an actor's BLAS gets as many
    threads as it has CPUs, so a one-unit pass sums in another order on the local Ray (one
    actor with its 2 CPUs) than on a node of 1 CPU."""
    pd.testing.assert_frame_equal(
        got.to_pandas(), expected.to_pandas(), check_exact=False, rtol=1e-12, atol=0
    )


def test_the_cluster_has_two_nodes_and_no_other_ray_was_touched(cluster, ray_session):
    assert cluster.head_node_id != cluster.worker_node_id
    assert ray_session.get_runtime_context().gcs_address != cluster.gcs_address


def test_an_alignment_job_runs_on_both_nodes_and_equals_a_local_run(
    cluster, cluster_alignment, local_alignment
):
    table, summary = cluster_alignment
    assert summary["nodes"] == sorted([cluster.head_node_id, cluster.worker_node_id])
    assert summary["actor_replays"] == 0
    assert_close_table(table, local_alignment.table)
    assert len(local_alignment.summary["nodes"]) == 1  # the local Ray is one node


def test_killing_the_worker_node_mid_job_gives_the_identical_table(
    cluster, client, store, cluster_alignment, local_alignment, tmp_path
):
    _, spec = store
    out, progress = tmp_path / "out", tmp_path / "progress.json"
    job_id = submit(client, f"run {spec}", out, env={PROGRESS_FILE_ENV: str(progress)})
    deadline = time.monotonic() + JOB_SECONDS
    while True:  # until the tiles pass is under way on both actors
        assert time.monotonic() < deadline, "the job never reached its rbf pass"
        status = client.get_job_status(job_id)
        assert status in ("PENDING", "RUNNING"), client.get_job_logs(job_id)
        try:
            state = json.loads(progress.read_text())
        except (OSError, ValueError):  # not written yet
            state = {}
        if state.get("stage") == "rbf tiles" and 0 < state["done"] < state["total"] / 2:
            break
        time.sleep(0.2)
    killed = cluster.worker_node_id
    cluster.kill_worker()
    restarted = cluster.restart_worker()  # the job goes on meanwhile, on the head
    wait_for(client, job_id)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["actor_replays"] >= 1
    assert "rbf tiles: an actor died (" in client.get_job_logs(job_id)
    # the worker may have done the one-unit moments pass before it was killed
    assert cluster.head_node_id in summary["nodes"]
    assert set(summary["nodes"]) <= {cluster.head_node_id, killed, restarted}
    table = pq.read_table(out / "alignment.parquet")
    assert_same_table(table, cluster_alignment[0])  # the same slots, on 1-CPU actors
    assert_close_table(table, local_alignment.table)


def test_a_stitching_job_runs_on_both_nodes_and_equals_a_local_run(
    cluster, client, ray_session, tmp_path
):
    zoo = tmp_path / "zoo"
    build_zoo(zoo, "digits-small", progress=False)
    content = {
        "kind": "stitching",
        "store": str(zoo),
        "out": str(tmp_path / "local"),
        "workers": 2,
        "pairs": [{"source": s, "target": t} for s, t in PAIRS],
    }
    local = run_stitching(parse_spec(content, kind="stitching"), quiet=True)
    out = tmp_path / "out"
    pairs = " ".join(f"--pair {s} {t}" for s, t in PAIRS)
    wait_for(client, submit(client, f"stitch --store {zoo} {pairs} --workers 2", out))
    summary = json.loads((out / "stitching-summary.json").read_text())
    # two tasks at a time, one CPU each, one CPU per node: every node takes some
    assert summary["nodes"] == sorted([cluster.head_node_id, cluster.worker_node_id])
    assert summary["failed"] == 0
    assert_same_table(pq.read_table(out / "stitching.parquet"), local.table)
    assert "nodes" not in local.table.column_names


# -- actors that cannot be placed, on the tests' local Ray (one node of 2 CPUs) ----------------


@pytest.fixture
def small_store(tmp_path):
    arrays = make_store(tmp_path, {"a.x": 3, "b.x": 5}, {"a.x": 100, "b.x": 100}, n=400)
    units = [(start, start + 100) for start in range(0, 400, 100)]
    return RangeTask(tmp_path, ["a.x", "b.x"]), units, arrays


def test_an_actor_no_alive_node_can_hold_ends_the_job_with_a_message(
    ray_session, small_store, monkeypatch
):
    task, units, _ = small_store
    monkeypatch.setattr(ray_slots, "_cpus_per_actor", lambda actors: 3)  # as on a lost 3-CPU node
    monkeypatch.setattr(ray_slots, "WAIT_SECONDS", 0.2)
    monkeypatch.setattr(ray_slots, "PLACEMENT_SECONDS", 1.0)
    with pytest.raises(TimeoutError, match=r"slots \[0, 1\] are waiting .* no alive node has 3"):
        run_units(task, units, slots=2, executor="ray", description="ranges", quiet=True)
    deadline = time.monotonic() + 30  # the killed actors' requests are withdrawn
    while ray_session.available_resources().get("CPU") != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_session.available_resources().get("CPU") == 2


def test_an_actor_waiting_for_a_busy_cpu_waits(ray_session, small_store, monkeypatch):
    """The CPUs exist but are taken: no timeout, the job goes on once one is free."""
    task, units, arrays = small_store
    monkeypatch.setattr(ray_slots, "WAIT_SECONDS", 0.2)
    monkeypatch.setattr(ray_slots, "PLACEMENT_SECONDS", 0.5)
    blocker = ray_slots.Accumulator.options(num_cpus=2).remote(None, [])
    ray_session.get(blocker.begin.remote())
    monkeypatch.setattr(ray_slots, "_cpus_per_actor", lambda actors: 1)
    results = {}
    job = threading.Thread(
        target=lambda: results.update(
            r=run_units(task, units, slots=2, executor="ray", description="ranges", quiet=True)
        )
    )
    job.start()
    time.sleep(3)  # several times PLACEMENT_SECONDS
    assert job.is_alive() and not results
    ray_session.kill(blocker)
    job.join(timeout=120)
    ranges = results["r"].state
    for name, low in zip(["a.x", "b.x"], ranges.low, strict=True):
        np.testing.assert_array_equal(low, arrays[name].min(axis=0))
