"""The alignment and stitching jobs on a real Ray cluster of three nodes, submitted through
the Ray Jobs API as `repalign run` and `repalign stitch`, against local runs of the same specs;
the alignment job losing a worker node mid-pass; a tiled statistic whose tiles' owners add
and measure them on the nodes (docs/design.md §4, "Owners"), losing a node mid-reduction.

The cluster (`tests.servers.ray_cluster`) is a head and two worker nodes of one CPU each, as
separate ``ray start`` processes on 127.0.0.1; the tests' own local Ray (``ray_session``) or
this process computes the references. Stores and outputs are on this machine's disk, which
every node sees.
"""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

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
    with ray_cluster(workers=2) as running:
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


def submit(client, command, out, env=None, setup=None):
    """Submit ``repalign COMMAND`` as a Ray job that writes into ``out``; its job id. ``setup``:
    a function ("module.name") each of the job's Ray workers runs when it starts."""
    tracking = f"sqlite:///{out}/mlflow.db"
    entrypoint = (
        f"mkdir -p {out} && cd {out} && {sys.executable} -m repalign {command} --out {out} "
        f"--tracking-uri {tracking} --quiet"
    )
    runtime_env = {"env_vars": env or {}}
    if setup is not None:
        runtime_env["worker_process_setup_hook"] = setup
    return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)


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
    """As `assert_same_table`, but float columns to 1e-12, relative or absolute: an actor's
    BLAS gets as many threads as it has CPUs, so a one-unit pass sums in another order on the
    local Ray (one actor with its 2 CPUs) than on a node of 1 CPU. The values are at most 1 and
    their rounding errors a few ε times that; a representation's jackknife std_err against
    itself is such an error alone (about 1e-15), hence the absolute bound."""
    pd.testing.assert_frame_equal(
        got.to_pandas(), expected.to_pandas(), check_exact=False, rtol=1e-12, atol=1e-12
    )


def test_the_cluster_has_three_nodes_and_no_other_ray_was_touched(cluster, ray_session):
    assert len({cluster.head_node_id, *cluster.worker_node_ids}) == 3
    assert ray_session.get_runtime_context().gcs_address != cluster.gcs_address


def test_an_alignment_job_runs_on_two_nodes_and_equals_a_local_run(
    cluster, cluster_alignment, local_alignment
):
    table, summary = cluster_alignment
    assert len(summary["nodes"]) == 2  # two actors of one CPU, on nodes of one CPU
    assert set(summary["nodes"]) <= {cluster.head_node_id, *cluster.worker_node_ids}
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
            index = worker_running(cluster, actors_of_class="Accumulator")
            if index is not None:
                break
        time.sleep(0.2)
    killed = cluster.worker_node_ids[index]
    cluster.kill_worker(index)
    restarted = cluster.restart_worker(index)  # the job goes on meanwhile, on the others
    wait_for(client, job_id)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["actor_replays"] >= 1
    assert "rbf tiles: an actor died (" in client.get_job_logs(job_id)
    assert set(summary["nodes"]) <= {cluster.head_node_id, *cluster.worker_node_ids, killed}
    assert restarted in cluster.worker_node_ids
    table = pq.read_table(out / "alignment.parquet")
    assert_same_table(table, cluster_alignment[0])  # the same slots, on 1-CPU actors
    assert_close_table(table, local_alignment.table)


def worker_running(cluster, *, actors_of_class=None, tasks_named=None):
    """The index of a worker node on which an alive actor of class ``actors_of_class``, or a
    running task named ``tasks_named``, is now, from the cluster's state API; None if none."""
    from ray.util.state import list_actors, list_tasks

    options = dict(address=cluster.dashboard_url, timeout=5, raise_on_missing_output=False)
    if actors_of_class is not None:
        filters = [("class_name", "=", actors_of_class), ("state", "=", "ALIVE")]
        nodes = {actor.node_id for actor in list_actors(filters=filters, **options)}
    else:
        filters = [("name", "=", tasks_named), ("state", "=", "RUNNING")]
        nodes = {task.node_id for task in list_tasks(filters=filters, **options)}
    for index, node in enumerate(cluster.worker_node_ids):
        if node in nodes:
            return index
    return None


def test_a_stitching_job_runs_on_two_nodes_and_equals_a_local_run(
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
    # two tasks at a time, one CPU each, one CPU per node: two nodes at least take some
    assert len(summary["nodes"]) >= 2
    assert set(summary["nodes"]) <= {cluster.head_node_id, *cluster.worker_node_ids}
    assert summary["failed"] == 0
    assert_same_table(pq.read_table(out / "stitching.parquet"), local.table)
    assert "nodes" not in local.table.column_names


# -- a tiled statistic, its tiles owned on the nodes ----------------------------------------

# Six representations of 128 features in tiles of two (3 groups, 6 tiles: a tile's budget of
# 60 MB shared by the jackknife's 16 groups and their total holds 2 × 129 columns, not 3);
# the jackknife's groups cut the 4,000 rows into 16 units for 3 actors. Spectral measures make
# the owners of the diagonal tiles keep the representations' principal axes for the others.
OWNED_WIDTHS = {f"z{i}.a": 128 for i in range(6)}
OWNED = {
    "measures": [{"name": "cka"}, {"name": "procrustes"}, {"name": "cca"}, {"name": "svcca"}],
    "actors": 3,
    "jackknife": 16,
    "tile_bytes": 60_000_000,
}


@pytest.fixture(scope="module")
def owned_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("owned-store")
    make_store(path, OWNED_WIDTHS, dict.fromkeys(OWNED_WIDTHS, 1000), n=4_000, seed=1)
    spec = path / "spec.json"
    spec.write_text(json.dumps({"store": str(path), "out": "given by --out", **OWNED}))
    return path, spec


@pytest.fixture(scope="module")
def owned_in_process(owned_store):
    """The reference: the same spec in this process, without Ray (3 slots, as on the cluster)."""
    path, _ = owned_store
    content = {"store": str(path), "out": str(path / "local"), "executor": "local", **OWNED}
    return run_alignment(parse_spec(content), quiet=True)


@pytest.fixture(scope="module")
def owned_on_cluster(cluster, client, owned_store, tmp_path_factory):
    _, spec = owned_store
    out = tmp_path_factory.mktemp("owned-cluster")
    wait_for(client, submit(client, f"run {spec}", out))
    return pq.read_table(out / "alignment.parquet"), json.loads((out / "summary.json").read_text())


def test_tiles_owned_on_the_nodes_equal_one_process_and_send_only_values(
    cluster, owned_on_cluster, owned_in_process
):
    table, summary = owned_on_cluster
    assert summary["reads_per_row"] == {"moments": 3.0}  # 3 groups: 6 tiles
    assert sorted(summary["nodes"]) == sorted([cluster.head_node_id, *cluster.worker_node_ids])
    assert_close_table(table, owned_in_process.table)
    assert table["std_err"].null_count < table.num_rows
    # 6 tiles for 3 actors: each tile is one actor's, its owner on the actor's node, so no
    # state moved between nodes; the driver got values, not states
    assert summary["max_bytes_received_per_node"] == 0
    assert 0 < summary["bytes_to_driver"] < min(1e6, summary["bytes_reduced"] / 20)
    assert owned_in_process.summary["bytes_reduced"] == 0  # in process, nothing moves


def test_an_untiled_statistic_is_added_up_at_one_owner_from_the_other_nodes(
    cluster, client, tmp_path
):
    """One tile, its 48,000 rows in 3 units for 3 actors, one per node: the owner adds the
    three states, two of them from the other nodes; the table is the one process's."""
    widths = {f"u{i}.a": 128 for i in range(6)}
    make_store(tmp_path, widths, dict.fromkeys(widths, 8_000), n=48_000, seed=2)
    content = {"store": str(tmp_path), "measures": [{"name": "cka"}], "actors": 3}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**content, "out": "given by --out"}))
    out = tmp_path / "cluster"
    wait_for(client, submit(client, f"run {spec}", out))
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["nodes"]) == 3
    width = sum(d + 1 for d in widths.values()) + 1
    state = 8 * width**2 + 8 * sum(widths.values()) + 8 * (len(widths) + 1)  # `array_bytes`
    assert summary["bytes_reduced"] == 3 * state
    assert summary["max_bytes_received_per_node"] == 2 * state
    assert 0 < summary["bytes_to_driver"] < state / 100
    local = parse_spec({**content, "out": str(tmp_path / "local"), "executor": "local"})
    assert_close_table(
        pq.read_table(out / "alignment.parquet"), run_alignment(local, quiet=True).table
    )


def test_a_node_killed_mid_reduction_gives_the_identical_table(
    cluster, client, owned_store, owned_on_cluster, tmp_path
):
    """Each owner waits a few seconds before it measures (`tests.slow_owners`); a worker node
    is killed while an owner runs there. Its tile's pass is replayed and its owner run again:
    the same table, bit for bit."""
    _, spec = owned_store
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    job_id = submit(client, f"run {spec}", out, env=env, setup="tests.slow_owners.slow_down")
    deadline = time.monotonic() + JOB_SECONDS
    while (index := worker_running(cluster, tasks_named="_own")) is None:
        assert time.monotonic() < deadline, "no owner ran on a worker node"
        status = client.get_job_status(job_id)
        assert status in ("PENDING", "RUNNING"), client.get_job_logs(job_id)
        time.sleep(0.2)
    cluster.kill_worker(index)
    cluster.restart_worker(index)
    wait_for(client, job_id)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["actor_replays"] >= 1
    assert "its owner failed (" in client.get_job_logs(job_id)
    assert_same_table(pq.read_table(out / "alignment.parquet"), owned_on_cluster[0])


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
    monkeypatch.setattr(ray_slots, "cpus_per_actor", lambda actors: 3)  # as on a lost 3-CPU node
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
    monkeypatch.setattr(ray_slots, "cpus_per_actor", lambda actors: 1)
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
