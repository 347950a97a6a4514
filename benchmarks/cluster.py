"""Benchmark: a tiled all-pairs job on a local 3-node Ray cluster, against one process and
against the capacity model (docs/design.md §4, "Owners"; docs/scaling.md).

The store: 24 synthetic representations of 256 features at n = 50,000 (`repalign.zoo`,
preset "synth", about 1.2 GB of float32), linear CKA, KA and Procrustes, with ``tile_bytes``
set so that the statistic is cut into 3 groups, hence 6 tiles.

1. The job as `repalign run --executor local` in a fresh process: the reference table.
2. The same spec submitted through the Ray Jobs API to a cluster of three ``ray start``
   nodes on 127.0.0.1 (the tests' `tests.servers.ray_cluster`: a head and two workers, one CPU
   each, 3 actors): its table against the reference (largest difference), its summary's
   counts (``bytes_to_driver``, ``bytes_reduced``, ``max_bytes_received_per_node``,
   ``reads_per_row``) against the capacity model's formulas (`benchmarks/capacity.py`) given
   where the actors ran, and its wall time against the model's prediction at this machine's
   measured SYRK rate.
3. The same job again, each tile's owner held a few seconds before it measures
   (`tests.slow_owners`), and the worker node on which an owner is running killed: its table
   against run 2's, bit for bit, and the replays it took.
4. The same store untiled (one state of all 24): one tile whose rows the 3 actors share, its
   owner adding the states of the other two nodes; the counts against the model again.

The three nodes share this machine's 2 cores, so the cluster's times say what the job costs,
not how it would scale. Progress goes to stderr, the markdown report to stdout. Run from the
repository root (about 10 minutes):

    .venv/bin/python benchmarks/cluster.py > cluster-report.md
"""

import argparse
import datetime
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from repalign.store import open_store  # noqa: E402
from repalign.zoo.synth import build_synth_zoo  # noqa: E402
from tests.servers import RAY_CLUSTER_ENV, ray_cluster  # noqa: E402

MEASURES = [{"name": "cka"}, {"name": "ka"}, {"name": "procrustes"}]
ACTORS = 3
OBJECT_STORE_BYTES = 1_500_000_000
JOB_SECONDS = 1800


def load_capacity():
    spec = importlib.util.spec_from_file_location("capacity", ROOT / "benchmarks" / "capacity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log(message):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def tile_bytes_for_groups(dims, groups):
    """A ``tile_bytes`` whose tiles hold len(dims)/groups representations per group: the
    middle of the range `jobs.passes.moments.statistic_tiles` maps to that cut."""
    per_group = len(dims) // groups
    width = sum(d + 1 for d in dims[:per_group])
    low, high = 8 * (2 * width) ** 2, 8 * (2 * (width + dims[0] + 1)) ** 2
    return (low + high) // 2


def run_local(spec_path, out):
    """`repalign run` in a fresh process, in this process's executor; (seconds, summary)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "repalign", "run", str(spec_path), "--out", str(out),
         "--executor", "local", "--tracking-uri", f"sqlite:///{out}/mlflow.db", "--quiet"],
        check=True, cwd=out.parent, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started, json.loads((out / "summary.json").read_text())


def submit(client, spec_path, out, *, setup=None):
    """Submit `repalign run` to the cluster; the job id."""
    out.mkdir(parents=True, exist_ok=True)
    entrypoint = (
        f"cd {out} && {sys.executable} -m repalign run {spec_path} --out {out} "
        f"--tracking-uri sqlite:///{out}/mlflow.db --quiet"
    )
    runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT)}}
    if setup is not None:
        runtime_env["worker_process_setup_hook"] = setup
    return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)


def wait(client, job_id):
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + JOB_SECONDS
    while not (status := client.get_job_status(job_id)).is_terminal():
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status}")
        time.sleep(0.5)
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(client.get_job_logs(job_id))


def owner_node(cluster):
    """A worker node on which a tile's owner is running now (its index), or None."""
    from ray.util.state import list_tasks

    tasks = list_tasks(
        address=cluster.dashboard_url,
        filters=[("name", "=", "_own"), ("state", "=", "RUNNING")],
        timeout=5,
        raise_on_missing_output=False,
    )
    nodes = {task.node_id for task in tasks}
    for index, node in enumerate(cluster.worker_node_ids):
        if node in nodes:
            return index
    return None


def largest_difference(a, b):
    """The largest absolute difference of two tables' values (and whether all are equal)."""
    x, y = (t.column("value").to_numpy(zero_copy_only=False) for t in (a, b))
    return float(np.nanmax(np.abs(x - y))), bool(np.array_equal(x, y, equal_nan=True))


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=24, help="representations")
    parser.add_argument("--dim", type=int, default=256, help="width of each")
    parser.add_argument("--rows", type=int, default=50_000, help="n")
    parser.add_argument("--groups", type=int, default=3, help="groups of the tiling (≥ 3: 6 tiles)")
    args = parser.parse_args(argv)
    os.environ.update(RAY_CLUSTER_ENV)
    capacity = load_capacity()
    started = datetime.datetime.now(datetime.UTC)
    work = Path(tempfile.mkdtemp(prefix="repalign-cluster-bench-"))
    try:
        log(f"writing the store: {args.models} × {args.dim}, n = {args.rows:,}")
        store = work / "store"
        build_synth_zoo(store, models=args.models, dim=args.dim, rows=args.rows, progress=False)
        names = open_store(store).select()
        dims = [open_store(store)[name].dim for name in names]
        tile_bytes = tile_bytes_for_groups(dims, args.groups)
        spec = work / "spec.json"
        content = {"store": str(store), "out": "given by --out", "measures": MEASURES,
                   "actors": ACTORS, "tile_bytes": tile_bytes}  # fmt: skip
        spec.write_text(json.dumps(content))

        log("one process (executor local)")
        local_seconds, local_summary = run_local(spec, work / "local")
        local_table = pq.read_table(work / "local" / "alignment.parquet")

        log("starting a 3-node cluster")
        with ray_cluster(workers=2, object_store_bytes=OBJECT_STORE_BYTES) as cluster:
            from ray.job_submission import JobSubmissionClient

            client = JobSubmissionClient(cluster.dashboard_url)
            nodes = [cluster.head_node_id, *cluster.worker_node_ids]
            log("the job on the cluster")
            t = time.perf_counter()
            wait(client, submit(client, spec, work / "cluster"))
            cluster_seconds = time.perf_counter() - t
            summary = json.loads((work / "cluster" / "summary.json").read_text())
            cluster_table = pq.read_table(work / "cluster" / "alignment.parquet")

            log("the job again, a worker node killed while an owner runs there")
            job_id = submit(client, spec, work / "killed", setup="tests.slow_owners.slow_down")
            while (index := owner_node(cluster)) is None:
                if client.get_job_status(job_id).is_terminal():
                    raise RuntimeError("the job ended before an owner ran on a worker node")
                time.sleep(0.2)
            cluster.kill_worker(index)
            cluster.restart_worker(index)
            wait(client, job_id)
            killed_summary = json.loads((work / "killed" / "summary.json").read_text())
            killed_table = pq.read_table(work / "killed" / "alignment.parquet")
            killed_log = client.get_job_logs(job_id)

            log("the store untiled")
            untiled = work / "untiled.json"
            untiled.write_text(json.dumps({**content, "tile_bytes": 2**40}))
            t = time.perf_counter()
            wait(client, submit(client, untiled, work / "untiled"))
            untiled_seconds = time.perf_counter() - t
            untiled_summary = json.loads((work / "untiled" / "summary.json").read_text())

        log("measuring this machine's rates for the model")
        rates = capacity.calibrated_rates(
            capacity.measure_syrk_rate(4105, 2.0)["cpu"],
            math.inf,
            math.inf,
            capacity.measure_value_costs("all"),
            capacity.measure_plan_costs(),
        )
        print(report(args, capacity, rates, dims, tile_bytes, nodes, locals()))
        print(f"\n- Date: {started:%Y-%m-%d %H:%M} UTC; load average {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args, capacity, rates, dims, tile_bytes, nodes, found):
    summary, local_summary = found["summary"], found["local_summary"]
    out = []
    add = out.append
    add(
        f"- Job: {args.models} × {args.dim}, n = {args.rows:,}, linear "
        f"{', '.join(m['name'] for m in MEASURES)}; tile_bytes = {tile_bytes:,} "
        f"({len(capacity.tiles(dims, tile_bytes))} tiles, each row read "
        f"{summary['reads_per_row']['moments']:g} times); {ACTORS} actors on 3 nodes of 1 CPU "
        "(one machine, 2 cores)\n"
    )
    difference, _ = largest_difference(found["cluster_table"], found["local_table"])
    killed_difference, identical = largest_difference(found["killed_table"], found["cluster_table"])
    add(
        table(
            [
                "run",
                "wall (s)",
                "bytes_to_driver",
                "bytes_reduced",
                "max received per node",
                "replays",
                "values against",
            ],
            [
                [
                    "one process (local)",
                    f"{found['local_seconds']:.1f}",
                    local_summary["bytes_to_driver"],
                    local_summary["bytes_reduced"],
                    local_summary["max_bytes_received_per_node"],
                    0,
                    "—",
                ],
                [
                    "3-node cluster",
                    f"{found['cluster_seconds']:.1f}",
                    summary["bytes_to_driver"],
                    f"{summary['bytes_reduced']:,}",
                    f"{summary['max_bytes_received_per_node']:,}",
                    summary["actor_replays"],
                    f"one process: largest difference {difference:.1e}",
                ],
                [
                    "3-node cluster, a worker node killed mid-reduction",
                    "—",
                    found["killed_summary"]["bytes_to_driver"],
                    f"{found['killed_summary']['bytes_reduced']:,}",
                    f"{found['killed_summary']['max_bytes_received_per_node']:,}",
                    found["killed_summary"]["actor_replays"],
                    f"the cluster run: {'identical, bit for bit' if identical else 'DIFFERENT'} "
                    f"(largest difference {killed_difference:.1e})",
                ],
            ],
        )
    )
    replayed = "its owner failed (" in found["killed_log"]
    add(f"An owner's failure was logged and its tile replayed: {replayed}.\n")
    add("**Against the capacity model** (benchmarks/capacity.py; 3 actors, one per node):\n")
    rows = []
    for label, measured, budget, seconds in (
        ("tiled", summary, tile_bytes, found["cluster_seconds"]),
        ("untiled", found["untiled_summary"], 2**40, found["untiled_seconds"]),
    ):
        model_reduced = capacity.bytes_reduced(dims, args.rows, ACTORS, budget)
        model_received = capacity.max_bytes_received_per_node(
            dims, args.rows, ACTORS, len(nodes), budget
        )
        predicted = capacity.predict_summary(measured, dims, rates, physical_cores=os.cpu_count())[
            "moments_seconds"
        ]
        passed = measured["pass_seconds"]["moments"]
        rows.append(
            [
                label,
                f"{measured['bytes_reduced']:,} / {model_reduced:,} "
                f"({_error(measured['bytes_reduced'], model_reduced)})",
                f"{measured['max_bytes_received_per_node']:,} / {model_received:,} "
                f"({_error(measured['max_bytes_received_per_node'], model_received)})",
                f"{passed:.1f} / {predicted:.1f} ({_error(passed, predicted)})",
                f"{seconds:.1f}",
            ]
        )
    add(
        table(
            [
                "statistic",
                "bytes_reduced: measured / model",
                "max received per node: measured / model",
                "moments pass (s): measured / model",
                "job from submit (s)",
            ],
            rows,
        )
    )
    return "\n".join(out)


def _error(measured, model):
    """The model's error relative to the measurement (exact when both are 0)."""
    if measured == model:
        return "exact"
    return f"model {100 * (model - measured) / measured:+.1f}%"


if __name__ == "__main__":
    main()
