"""Benchmark: the all-pairs alignment job (`jobs.alignment`) against the machine, its peers and
its memory budget (docs/design.md §4 and §9).

Five parts, all in one run, each on a synthetic store (`repalign.zoo`, preset "synth", seed
`ZOO_SEED`) written to a temporary folder under /tmp and deleted at the end:

1. GEMM rate. 16 representations of width 512 at n = 200,000 (about 6.6 GB of float32;
   scaled down, with a note, when /tmp lacks the space), every linear measure in one job. The
   job's wall time and its moments pass are set against the BLAS cost of the statistic: the
   float64 SYRK ``S += BᵀB`` over row blocks B (block_rows × D, D = 16·513 + 1) built from the
   same float32 rows, timed on the first ``--gemm-rows`` rows only (blocks built from the
   store, outside the clock) and scaled linearly to n. The block is timed at the engine's own
   block height and at 4,096 rows; the faster is the reference. A breakdown of where the job's
   time goes follows (see `moment_unit_breakdown`).
2. Peers. All-pairs linear CKA of 8 representations of width 512 at n = 8,000: the job
   against pytorch-cka, ckatorch, rsatoolbox and repsim, each used the way its documentation
   shows, in a fresh process, on the same float32 arrays held in memory. A peer too slow to
   run whole is run on a subset (ckatorch: a few pairs; repsim: smaller n) and extrapolated,
   as the table says. Every value a peer returns is checked against repalign's to 1e-5.
3. Memory in n. The linear job on 4 representations of width 128 at n = 10⁵ and 10⁶: peak
   resident memory of the Ray actor processes.
4. Exact RBF. KA, CKA and HSIC with the RBF kernel (median σ) for 8 representations at
   n = 50,000: wall time, peak actor memory and the driver's peak growth.
5. Actors. The same linear job (8 × 512, n = 100,000) with 1 and with 2 actors.

What "peak memory" is here: a thread of this process reads /proc/<pid>/status of every
process descended from it whose command line (Ray's process title) contains
"ray::Accumulator", every ``POLL_SECONDS``, and keeps the largest VmHWM (the kernel's record of
the process's peak resident set) and RssAnon (private anonymous pages: arrays, buffers) seen
for each. VmHWM also counts shared pages the actor touched (libraries, Ray's object store), so
RssAnon is given beside it. Growth after the last poll before an actor is killed is missed.
The driver's VmHWM is reset (``/proc/self/clear_refs``) before each job; its growth is its
VmHWM at the end minus its resident set at the start.

The machine is shared: timings are best of a few runs where a run is cheap, and every ratio
compares figures taken in the same run. Progress goes to stderr, the markdown report to stdout.

Run from the repository root (about 20 minutes; ``--help`` lists the parts and sizes):

    .venv/bin/python benchmarks/engine.py > engine-report.md
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import math
import multiprocessing
import os
import pickle
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from itertools import combinations

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import psutil
import ray
from machine import cpu_model, git_state, package_version
from report import command_line, table
from scipy.linalg.blas import dsyrk
from threadpoolctl import threadpool_info, threadpool_limits

import jobs.alignment as alignment
import jobs.passes.moments as moments_pass
import jobs.passes.rows as pass_rows
import repalign
from jobs.ray_slots import Accumulator
from repalign.blocks import row_slices
from repalign.spec import parse_spec
from repalign.stats import GramState
from repalign.store import open_store
from repalign.zoo import build_zoo

ZOO_SEED = 0
GIB = 2**30
POLL_SECONDS = 0.05
TOLERANCE = 1e-5
WIDE_BLOCK_ROWS = 4096
LINEAR_MEASURES = [
    {"name": "ka"},
    {"name": "cka", "estimator": "biased"},
    {"name": "cka", "estimator": "song"},
    {"name": "cka", "estimator": "lange"},
    {"name": "hsic", "estimator": "biased"},
    {"name": "hsic", "estimator": "unbiased"},
    {"name": "procrustes"},
    {"name": "cca"},
    {"name": "svcca"},
]
RBF_MEASURES = [
    {"name": "ka", "kernel": "rbf"},
    {"name": "cka", "kernel": "rbf", "estimator": "biased"},
    {"name": "cka", "kernel": "rbf", "estimator": "song"},
    {"name": "cka", "kernel": "rbf", "estimator": "lange"},
    {"name": "hsic", "kernel": "rbf", "estimator": "biased"},
    {"name": "hsic", "kernel": "rbf", "estimator": "unbiased"},
]
PEERS = ("pytorch-cka", "ckatorch", "rsatoolbox", "repsim")
PEER_MEMORY_GIB = {"pytorch-cka": 14.0, "rsatoolbox": 14.0}
"""Free memory a peer needs to run whole at n = 8,000 (measured peaks 12.7 and 12.6 GB)."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    skip = parser.add_argument_group("parts to skip")
    for part, what in [
        ("gemm", "part 1, the 16 × 512 job against the GEMM rate"),
        ("peers", "part 2, the peer libraries"),
        ("memory", "part 3, peak memory at n = 10⁵ and 10⁶"),
        ("rbf", "part 4, exact RBF"),
        ("speedup", "part 5, 1 vs 2 actors"),
    ]:
        skip.add_argument(f"--skip-{part}", action="store_true", help=f"skip {what}")
    sizes = parser.add_argument_group("sizes")
    sizes.add_argument("--rows", type=int, default=200_000, help="part 1: n")
    sizes.add_argument("--models", type=int, default=16, help="part 1: representations")
    sizes.add_argument("--gemm-rows", type=int, default=32_768, help="part 1: rows SYRK-timed")
    sizes.add_argument("--peer-rows", type=int, default=8_000, help="part 2: n")
    sizes.add_argument("--ckatorch-pairs", type=int, default=4, help="part 2: pairs timed")
    sizes.add_argument(
        "--repsim-rows", type=int, nargs=2, default=(1_000, 2_000), help="part 2: repsim's n"
    )
    sizes.add_argument(
        "--peers", nargs="+", default=list(PEERS), choices=PEERS, help="part 2: peers to run"
    )
    sizes.add_argument(
        "--memory-rows", type=int, nargs=2, default=(100_000, 1_000_000), help="part 3: n"
    )
    sizes.add_argument("--rbf-rows", type=int, default=50_000, help="part 4: n")
    sizes.add_argument("--rbf-dim", type=int, default=64, help="part 4: width")
    sizes.add_argument("--speedup-rows", type=int, default=100_000, help="part 5: n")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes everywhere, to check the script (the figures mean nothing)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.models, args.gemm_rows = 8_192, 4, 4_096
        args.peer_rows, args.ckatorch_pairs, args.repsim_rows = 1_000, 2, (250, 500)
        args.memory_rows, args.rbf_rows, args.speedup_rows = (20_000, 100_000), 4_096, 8_192
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    root = tempfile.mkdtemp(prefix="repalign-engine-bench-", dir="/tmp")
    try:
        log("starting Ray")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        timer = JobTimer()
        print_machine(args, root)
        parts = [
            ("gemm", part_gemm),
            ("peers", part_peers),
            ("memory", part_memory),
            ("rbf", part_rbf),
            ("speedup", part_speedup),
        ]
        for name, function in parts:
            if getattr(args, f"skip_{name}"):
                continue
            load, replays = os.getloadavg()[0], timer.replays
            part_started = time.perf_counter()
            function(args, root, timer)
            log(f"part {name} took {time.perf_counter() - part_started:.0f} s")
            print(
                f"_(part took {time.perf_counter() - part_started:.0f} s; load average "
                f"{load:.2f} before, {os.getloadavg()[0]:.2f} after; actors that died and were "
                f"replayed: {timer.replays - replays})_\n",
                flush=True,
            )
        print(f"Total: {time.perf_counter() - started:.0f} s.")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if ray.is_initialized():
            ray.shutdown()


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the machine -------------------------------------------------------------------------------


def print_machine(args, root):
    blas = [
        f"{lib['internal_api']} {lib['version']} ({os.path.basename(lib['filepath'])}, "
        f"{lib['architecture']}, {lib['num_threads']} threads)"
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    ]
    versions = ", ".join(
        f"{name} {package_version(name)}"
        for name in ("numpy", "scipy", "pyarrow", "ray", "torch", *sorted(PEERS))
    )
    free = shutil.disk_usage(root).free / 1e9
    memory = psutil.virtual_memory()
    print("## Machine\n")
    print(f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    print(f"- command: {command_line()}")
    print(
        f"- CPU: {cpu_model()}, nproc {len(os.sched_getaffinity(0))}, memory "
        f"{memory.total / GIB:.1f} GiB ({memory.available / GIB:.1f} GiB available at start), "
        f"{platform.machine()}; /tmp {free:.0f} GB free; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(f"- OPENBLAS_CORETYPE: {os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"- BLAS (driver process): {'; '.join(blas)}")
    print(f"- Python {platform.python_version()}, repalign {repalign.__version__}; {versions}")
    print(f"- repalign working tree: {git_state()}")
    threads = "; ".join(
        f"num_cpus={cpus}: OMP_NUM_THREADS={omp}, BLAS threads {blas}"
        for cpus, (omp, blas) in actor_threads().items()
    )
    print(
        "- Ray: local, `ray.init(num_cpus=2)`; a job's actors get CPUs // actors each. Asked "
        f"from inside an actor made the same way: {threads}"
    )
    print(
        f"- data: `repalign.zoo.build_zoo(store, 'synth', seed={ZOO_SEED})`, float32; RBF σ by "
        f"the median heuristic (seed {alignment.MEDIAN_SEED}, at most "
        f"{alignment.MEDIAN_MAX_ROWS:,} rows)\n",
        flush=True,
    )


@ray.remote
class ThreadProbe:
    def threads(self):
        from threadpoolctl import threadpool_info

        import repalign.stats  # noqa: F401  (loads scipy's BLAS, as an Accumulator does)

        blas = sorted(
            {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
        )
        return os.environ.get("OMP_NUM_THREADS", "unset"), "/".join(map(str, blas))


def actor_threads():
    """{num_cpus: (OMP_NUM_THREADS, BLAS threads)} seen inside an actor with that many CPUs."""
    found = {}
    for cpus in (1, 2):
        wait_for_cpus()
        probe = ThreadProbe.options(num_cpus=cpus).remote()
        found[cpus] = ray.get(probe.threads.remote())
        ray.kill(probe)
    return found


# -- jobs, stores, timers and monitors ---------------------------------------------------------


class JobTimer:
    """Wall time a job spends in `jobs.engine.run_units` (its actors' part) and, per measure
    configuration, in `jobs.passes.moments.moment_value` (the driver computing one pair's value
    from the statistic).

    Wraps the names that `jobs.alignment` calls at run time; the job's code is unchanged.
    """

    def __init__(self):
        self.reset()
        self.replays = 0  # over all jobs: slots replayed after their actor died
        run_units, moment_measure = alignment.run_units, moments_pass.moment_value

        def timed_run_units(*args, **kwargs):
            started = time.perf_counter()
            try:
                return run_units(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        def timed_moment_measure(config, *args):
            started = time.perf_counter()
            try:
                return moment_measure(config, *args)
            finally:
                label = config.name + (f" {config.estimator}" if config.estimator else "")
                self.measures[label] = self.measures.get(label, 0.0) + (
                    time.perf_counter() - started
                )

        alignment.run_units = timed_run_units
        moments_pass.moment_value = timed_moment_measure

    def reset(self):
        self.seconds = 0.0
        self.measures = {}


class ActorMonitor:
    """Peak memory and CPU time of this job's actor processes, read from /proc, and the CPU
    time of this (the driver) process.

    See the module docstring for what is measured. Use as a context manager around one job.
    """

    def __init__(self, interval=POLL_SECONDS):
        self.interval = interval
        self.actors = {}  # pid -> {"hwm": bytes, "anon": bytes, "cpu": seconds}
        self.max_together = 0  # largest sum of the live actors' VmRSS at one poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        with contextlib.suppress(OSError):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset this process's VmHWM to its current resident set
        self.driver_start = _status(os.getpid())["VmRSS"]
        self._driver_cpu = time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.driver_peak = _status(os.getpid())["VmHWM"]
        self.driver_cpu = time.process_time() - self._driver_cpu

    def _poll(self):
        me = psutil.Process()
        candidates, rounds = [], 0
        while not self._stop.is_set():
            if rounds % 10 == 0:
                with contextlib.suppress(psutil.Error):
                    candidates = [child.pid for child in me.children(recursive=True)]
            rounds += 1
            together = 0
            for pid in candidates:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"ray::Accumulator" not in f.read():
                            continue
                    status = _status(pid)
                    cpu = _cpu_seconds(pid)
                except OSError:
                    continue
                seen = self.actors.setdefault(pid, {"hwm": 0, "anon": 0, "cpu": 0.0})
                seen["cpu"] = max(seen["cpu"], cpu)
                seen["hwm"] = max(seen["hwm"], status.get("VmHWM", 0))
                seen["anon"] = max(seen["anon"], status.get("RssAnon", 0))
                together += status.get("VmRSS", 0)
            self.max_together = max(self.max_together, together)
            self._stop.wait(self.interval)

    @property
    def max_hwm(self):
        return max((a["hwm"] for a in self.actors.values()), default=0)

    @property
    def max_anon(self):
        return max((a["anon"] for a in self.actors.values()), default=0)

    @property
    def sum_hwm(self):
        return sum(a["hwm"] for a in self.actors.values())

    @property
    def actor_cpu(self):
        return sum(a["cpu"] for a in self.actors.values())

    @property
    def cpu(self):
        """CPU seconds of the driver and the actors (Ray's own daemons are not counted)."""
        return self.driver_cpu + self.actor_cpu


def _cpu_seconds(pid):
    """User + system CPU seconds of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status(pid):
    """The memory lines of /proc/<pid>/status, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssShmem", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def build_store(root, label, *, models, dim, rows):
    """A synthetic zoo store; returns (path, names, seconds to write, bytes on disk)."""
    path = os.path.join(root, label)
    log(f"writing store {label}: {models} × {dim} at n = {rows:,}")
    started = time.perf_counter()
    names = build_zoo(
        path, "synth", models=models, dim=dim, rows=rows, seed=ZOO_SEED, progress=False
    )
    seconds = time.perf_counter() - started
    size = sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, files in os.walk(path)
        for name in files
    )
    return path, names, seconds, size


def wait_for_cpus(expected=2, timeout=20.0):
    """Wait until the actors of the previous job have released their CPUs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= expected:
            return
        time.sleep(0.1)
    log("warning: Ray still shows busy CPUs; the next job may get fewer CPUs per actor")


def run_job(store, measures, *, actors, timer, representations=None, interval=0.1):
    """Run one job; returns (AlignmentResult, ActorMonitor, seconds in run_units)."""
    content = {"store": store, "out": store + "-out", "measures": measures, "actors": actors}
    if representations is not None:
        content["representations"] = representations
    spec = parse_spec(content)
    wait_for_cpus()
    timer.reset()
    # Ray and the engine print actor deaths and replays to stdout: keep them off the report.
    with ActorMonitor(interval) as monitor, contextlib.redirect_stdout(sys.stderr):
        result = alignment.run_alignment(spec, quiet=True)
    replays = result.summary.get("actor_replays", 0)
    timer.replays += replays
    if replays:
        log(f"warning: {replays} actor replay(s): an actor process died and its units were redone")
    return result, monitor, timer.seconds


def values_matrix(result, names, measure, estimator, kernel="linear"):
    """The M×M matrix of one configuration from a job's long table (NaN where missing)."""
    table = result.table.to_pydict()
    index = {name: i for i, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    for a, b, m, k, e, value in zip(
        table["rep_a"],
        table["rep_b"],
        table["measure"],
        table["kernel"],
        table["estimator"],
        table["value"],
        strict=True,
    ):
        if m == measure and k == kernel and e == (estimator or "") and value is not None:
            matrix[index[a], index[b]] = matrix[index[b], index[a]] = value
    return matrix


def mib(nbytes):
    return f"{nbytes / 2**20:,.0f}"


def actor_startup_seconds(repeats=3):
    """Seconds from creating an `Accumulator` actor to its first answer (process start, imports)."""
    wait_for_cpus()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        handle = Accumulator.options(num_cpus=1).remote(None)
        ray.get(handle.pid.remote())
        seconds.append(time.perf_counter() - started)
        ray.kill(handle)
        wait_for_cpus()
    return float(np.median(seconds))


# -- part 1: the job against the GEMM rate ---------------------------------------------------


def part_gemm(args, root, timer):
    models, dim, rows = args.models, 512, args.rows
    needed = models * dim * 4 * rows * 1.05 + 2e9
    free = shutil.disk_usage(root).free
    note = ""
    if free < needed:
        fitted = int((free - 2e9) / (models * dim * 4 * 1.05)) // 16_384 * 16_384
        note = (
            f"**n scaled down** from {rows:,} to {fitted:,}: /tmp has {free / 1e9:.1f} GB free, "
            f"the store needs {needed / 1e9:.1f} GB with a 2 GB margin."
        )
        rows = fitted
    store, names, write_seconds, size = build_store(root, "gemm", models=models, dim=dim, rows=rows)
    print(
        f"## 1. Every linear measure in one job vs the GEMM rate ({models} × {dim}, n = {rows:,})\n"
    )
    if note:
        print(note + "\n")
    width = models * (dim + 1) + 1
    flops = rows * width * (width + 1)  # SYRK: the upper triangle of BᵀB, 2 flops per term
    print(
        f"Store: {len(names)} representations ({names[0]} … {names[-1]}), "
        f"{size / 1e9:.2f} GB on disk, written in {write_seconds:.0f} s. D = {models}·({dim}+1)+1 "
        f"= {width:,}; the statistic costs n·D·(D+1) = {flops / 1e12:.2f} TFLOP as SYRK. "
        f"Measures: {', '.join(_label(m) for m in LINEAR_MEASURES)}; 2 actors.\n"
    )
    log("part 1: the job")
    result, monitor, actor_seconds = run_job(store, LINEAR_MEASURES, actors=2, timer=timer)
    job_seconds = result.summary["seconds"]
    moments_seconds = result.summary["pass_seconds"]["moments"]
    log(f"part 1: job {job_seconds:.1f} s, moments {moments_seconds:.1f} s; SYRK reference")
    reference = syrk_reference(store, names, args.gemm_rows, width)
    best = min(reference.values(), key=lambda r: r["scaled"])
    gemm_seconds, gemm_cpu = best["scaled"], best["cpu"]
    rows_out = [
        [
            f"SYRK alone, {block:,}-row blocks: {r['rows']:,} rows timed ({r['seconds']:.1f} s), "
            f"× {rows / r['rows']:.2f}",
            f"{r['scaled']:.1f}",
            f"{r['scaled'] / gemm_seconds:.2f}",
            f"{gemm_seconds / r['scaled']:.0%}",
            f"{flops / r['scaled'] / 1e9:.0f}",
            f"{r['cpu']:.0f}",
            f"{gemm_cpu / r['cpu']:.0%}",
        ]
        for block, r in sorted(reference.items())
    ]
    rows_out += [
        [
            what,
            f"{seconds:.1f}",
            f"{seconds / gemm_seconds:.2f}",
            f"{gemm_seconds / seconds:.0%}",
            f"{flops / seconds / 1e9:.0f}",
            f"{cpu:.0f}" if cpu else "",
            f"{gemm_cpu / cpu:.0%}" if cpu else "",
        ]
        for what, seconds, cpu in [
            ("job: the actors' part (`run_units`)", actor_seconds, monitor.actor_cpu),
            ("job: moments pass (`pass_seconds['moments']`)", moments_seconds, None),
            ("job: whole (`summary['seconds']`)", job_seconds, monitor.cpu),
        ]
    ]
    table(
        [
            "what",
            "wall seconds",
            "wall / GEMM",
            "share of the GEMM rate",
            "effective GFLOP/s",
            "CPU seconds",
            "share by CPU time",
        ],
        rows_out,
    )
    share = gemm_seconds / job_seconds
    print(
        f"GEMM time = the faster SYRK row ({gemm_seconds:.1f} s): float64 `dsyrk` accumulating "
        f"the {width:,}² upper triangle over row blocks of the same data, blocks built from the "
        f"store's float32 rows outside the clock, in the driver with {_blas_threads()} BLAS "
        f"threads; timed on the first rows and scaled linearly to n (the cost of equal blocks "
        f"adds up). CPU seconds: the reference's are this process's CPU time during the SYRK "
        f"calls; the job's are the driver's plus the actors' (/proc/<pid>/stat), Ray's daemons "
        f"not counted. On a shared machine CPU time is what other users' load disturbs least, "
        f"so 'share by CPU time' is the cross-check of the wall-clock share. Missing values "
        f"in the job: {result.summary['missing_values']}. Actor processes: "
        f"{len(monitor.actors)}; {_replays(result)}.\n\n"
        f"Target: the whole job at ≥ 60% of the GEMM rate, I/O included: "
        f"**{'met' if share >= 0.6 else 'missed'}** ({share:.0%} by wall time, "
        f"{gemm_cpu / monitor.cpu:.0%} by CPU time).\n"
    )
    log("part 1: breakdown")
    breakdown(store, names, rows, width, result, monitor, timer)
    shutil.rmtree(store, ignore_errors=True)


def _checkpoint_seconds(state, path):
    """Seconds to save ``state`` as `jobs.ray_slots.Accumulator` checkpoints it: pickle, fsync."""
    began = time.perf_counter()
    with open(path, "wb") as f:
        pickle.dump((1, state), f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - began
    os.remove(path)
    return seconds


def _replays(result):
    replays = result.summary.get("actor_replays", 0)
    if not replays:
        return "no actor died"
    return (
        f"**{replays} actor(s) died and their units were replayed**: this run's times include "
        "the redone work"
    )


def _label(measure):
    return measure["name"] + (f" {measure['estimator']}" if "estimator" in measure else "")


def _blas_threads():
    return max(
        (lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=1
    )


def syrk_reference(store, names, rows_timed, width):
    """Seconds of float64 dsyrk over the first rows of the store, by block height.

    Returns {block_rows: {"rows", "seconds", "scaled", "cpu"}}: rows timed, their seconds, and
    the wall and CPU seconds (all threads of this process) scaled to all n rows. Block heights:
    the engine's (`repalign.blocks.row_slices`) and `WIDE_BLOCK_ROWS`. Whole chunks of blocks
    are timed, so that no short block distorts the rate; reading and building the blocks is
    not timed.
    """
    representations = [open_store(store)[name] for name in names]
    total = representations[0].rows
    engine_rows = next(row_slices(10**9, width)).stop
    shifts = [r.read_rows(0, 1024)[1].astype(np.float64).mean(axis=0) for r in representations]
    reference = {}
    for block_rows in sorted({engine_rows, WIDE_BLOCK_ROWS}):
        chunk = max(1, 8192 // block_rows) * block_rows
        timed = max(chunk, min(rows_timed, total) // chunk * chunk)
        C = np.zeros((width, width), order="F")
        spent = cpu = 0.0
        for start in range(0, timed, chunk):
            blocks = [r.read_rows(start, start + chunk)[1] for r in representations]
            Z = build_rows(blocks, shifts, width)
            for row in range(0, chunk, block_rows):
                part = Z[row : row + block_rows]
                began, began_cpu = time.perf_counter(), time.process_time()
                C = dsyrk(1.0, part.T, beta=1.0, c=C, trans=0, overwrite_c=True)
                spent += time.perf_counter() - began
                cpu += time.process_time() - began_cpu
        reference[block_rows] = {
            "rows": timed,
            "seconds": spent,
            "scaled": spent * total / timed,
            "cpu": cpu * total / timed,
        }
    return reference


def build_rows(blocks, shifts, width):
    """[x¹ − c¹, ‖x¹ − c¹‖², …, 1] in float64, as `repalign.stats.GramState` builds its rows."""
    Z = np.empty((len(blocks[0]), width))
    column = 0
    for block, shift in zip(blocks, shifts, strict=True):
        U = Z[:, column : column + block.shape[1]]
        np.subtract(block, shift, out=U)
        np.einsum("ij,ij->i", U, U, out=Z[:, column + block.shape[1]])
        column += block.shape[1] + 1
    Z[:, -1] = 1.0
    return Z


def breakdown(store, names, rows, width, result, monitor, timer, sample=3):
    """Where the job's time goes (``monitor`` and ``timer`` as the job left them).

    The actors' work is replayed here on ``sample`` units, with one BLAS thread as an actor
    with 1 CPU has, through the same public calls as `jobs.tasks.MomentTask.compute`: read each
    representation's rows, a new `GramState`, `add_block` per engine row block, and the actor's
    ``state + part``. 'convert' (the float64 rows) is timed apart on the same blocks and taken
    off `add_block`, leaving the SYRK. Times are scaled to the units of one actor. The driver's
    share is measured in the job itself (`JobTimer`), per measure configuration.
    """
    actor_seconds, measures = timer.seconds, dict(timer.measures)
    unit_rows = pass_rows.unit_rows(width - len(names) - 1, len(names))
    units = math.ceil(rows / unit_rows)
    representations = [open_store(store)[name] for name in names]
    dims = [r.dim for r in representations]
    shifts = [np.zeros(d) for d in dims]
    parts = dict.fromkeys(["read (Parquet)", "convert (float32 → float64 rows)", "SYRK"], 0.0)
    parts.update({"new state per unit": 0.0, "merge (`state += part`, in place)": 0.0})
    sample = min(sample, units)
    running = None
    with threadpool_limits(1, user_api="blas"):
        for u in range(sample):
            start, stop = u * unit_rows, min((u + 1) * unit_rows, rows)
            began = time.perf_counter()
            blocks = [r.read_rows(start, stop)[1] for r in representations]
            parts["read (Parquet)"] += time.perf_counter() - began
            began = time.perf_counter()
            state = GramState(dims, shifts)
            parts["new state per unit"] += time.perf_counter() - began
            for piece in row_slices(stop - start, width):
                pieces = [b[piece] for b in blocks]
                began = time.perf_counter()
                build_rows(pieces, shifts, width)
                convert = time.perf_counter() - began
                began = time.perf_counter()
                state.add_block(pieces)
                parts["convert (float32 → float64 rows)"] += convert
                parts["SYRK"] += time.perf_counter() - began - convert
            began = time.perf_counter()
            if running is None:
                running = state
            else:
                running += state
            parts["merge (`state += part`, in place)"] += time.perf_counter() - began
    save = _checkpoint_seconds(running, store + "-checkpoint.pkl")
    del running
    per_actor = units / 2 / sample
    startup = actor_startup_seconds()
    moments = result.summary["pass_seconds"]["moments"]
    accounted = sum(parts.values()) * per_actor
    rows_out = [
        [f"actor: {name}", f"{seconds / sample:.3f}", f"{seconds * per_actor:.1f}"]
        for name, seconds in parts.items()
    ]
    every = getattr(alignment, "CHECKPOINT_SECONDS", None)
    if every:
        saves = int(actor_seconds // every)
        rows_out.append(
            [
                f"actor: checkpoint saves, one per {every:.0f} s (pickle + fsync of the state, "
                f"{save:.2f} s each): about {saves}",
                "",
                f"{saves * save:.1f}",
            ]
        )
        accounted += saves * save
    rows_out += [
        [
            "actor: sum of the above",
            f"{sum(parts.values()) / sample:.3f}",
            f"{accounted:.1f}",
        ],
        ["measured: the actors' part (`run_units`), wall", "", f"{actor_seconds:.1f}"],
        [
            "measured: CPU time of each actor process (mean of "
            f"{len(monitor.actors)}; /proc/<pid>/stat)",
            "",
            f"{monitor.actor_cpu / max(1, len(monitor.actors)):.1f}",
        ],
        [
            f"rest of `run_units`: actor start (alone: {startup:.2f} s), object transfer, "
            "final merge, uneven shares, waiting for a CPU while other users run",
            "",
            f"{actor_seconds - accounted:.1f}",
        ],
    ]
    pairs = len(names) * (len(names) + 1) // 2
    in_measures = sum(measures.values())
    driver_rows = [
        [f"`{label}`", f"{seconds / pairs * 1000:.0f}", f"{seconds:.1f}"]
        for label, seconds in sorted(measures.items(), key=lambda item: -item[1])
    ]
    driver_rows += [
        ["all measures", f"{in_measures / pairs * 1000:.0f}", f"{in_measures:.1f}"],
        [
            "rest of the moments pass: pilot means, constant checks, bookkeeping",
            "",
            f"{moments - actor_seconds - in_measures:.1f}",
        ],
        [
            "outside the passes: opening the store, the result table",
            "",
            f"{result.summary['seconds'] - moments:.1f}",
        ],
    ]
    eigh = {}
    C = np.cov(np.random.default_rng(ZOO_SEED).standard_normal((512, 2048)))
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            began = time.perf_counter()
            for _ in range(5):
                np.linalg.eigh(C)
            eigh[threads] = (time.perf_counter() - began) / 5
    slices = ", ".join(str(s.stop - s.start) for s in row_slices(unit_rows, width))
    print(
        f"Where the time goes: the job cut n into {units} units of {unit_rows:,} rows, dealt to "
        f"2 actors; each unit is read, then accumulated in SYRKs of {slices} rows "
        f"(`repalign.blocks.row_slices`). {sample} units replayed in this process with 1 BLAS "
        f"thread, scaled to {units / 2:.1f} units per actor. 'new state per unit' is the "
        f"{width:,}² float64 matrix `MomentTask.compute` allocates for every unit.\n"
    )
    table(["actors' side", "per unit (s)", "per actor, whole job (s)"], rows_out)
    print(
        f"The driver's side, measured in the job: time in `_moment_measure` per configuration, "
        f"over the {pairs} pairs (diagonal included), with the driver's {_blas_threads()} BLAS "
        f"threads. For scale: `numpy.linalg.eigh` of one 512×512 matrix takes "
        f"{eigh[1] * 1000:.0f} ms with 1 BLAS thread and {eigh[2] * 1000:.0f} ms with 2, now.\n"
    )
    table(["driver's side", "per pair (ms)", "whole job (s)"], driver_rows)


# -- part 2: peers ----------------------------------------------------------------------------


def part_peers(args, root, timer):
    models, dim, rows = 8, 512, args.peer_rows
    store, names, _, _ = build_store(root, "peers", models=models, dim=dim, rows=rows)
    print(f"## 2. All-pairs linear CKA against peers ({models} × {dim}, n = {rows:,})\n")
    measures = [{"name": "cka", "estimator": "biased"}, {"name": "cka", "estimator": "song"}]
    log("part 2: repalign")
    runs = []
    for _ in range(3):
        result, monitor, actor_seconds = run_job(store, measures, actors=2, timer=timer)
        runs.append(
            {
                "seconds": result.summary["seconds"],
                "actors": actor_seconds,
                "cpu": monitor.cpu,
                "result": result,
            }
        )
    best = min(runs, key=lambda r: r["seconds"])
    result = best["result"]
    reference = {e: values_matrix(result, names, "cka", e) for e in ("biased", "song")}
    data = np.stack([open_store(store)[name].read()[1] for name in names])
    data_path = os.path.join(root, "peers.npy")
    np.save(data_path, data)
    pair_list = list(combinations(range(models), 2))
    outcomes = [
        {
            "peer": "repalign job (biased + song)",
            "how": "`run_alignment`, 2 actors, from the Parquet store",
            "scope": f"all {len(pair_list)} pairs + diagonal, n = {rows:,}",
            "measured": best["seconds"],
            "full": best["seconds"],
            "full_cpu": best["cpu"],
            "diff": 0.0,
            "peak": None,
        }
    ]
    for peer in args.peers:
        log(f"part 2: {peer}")
        try:
            outcomes.append(run_peer(peer, data, data_path, rows, reference, pair_list, args))
        except Exception as exc:  # a peer failing is a result to report, not a crash
            outcomes.append({"peer": peer, "error": f"{type(exc).__name__}: {exc}"})
    os.remove(data_path)
    ok = [o for o in outcomes[1:] if "error" not in o]
    table(
        [
            "tool",
            "how",
            "measured scope",
            "measured (s)",
            "full matrix (s)",
            "÷ repalign",
            "full matrix, CPU (s)",
            "CPU ÷ repalign",
            "max abs diff",
            "peak RSS MiB",
        ],
        [
            [
                o["peer"],
                o.get("how", ""),
                o.get("scope", o.get("error", "")),
                f"{o['measured']:.2f}" if "measured" in o else "—",
                f"{o['full']:.1f}" if "full" in o else "—",
                f"{o['full'] / best['seconds']:.1f}×" if "full" in o else "—",
                f"{o['full_cpu']:.1f}" if "full_cpu" in o else "—",
                f"{o['full_cpu'] / best['cpu']:.1f}×" if "full_cpu" in o else "—",
                f"{o['diff']:.1e}" if "diff" in o else "—",
                mib(o["peak"]) if o.get("peak") else "—",
            ]
            for o in outcomes
        ],
    )
    moments = result.summary["pass_seconds"]["moments"]
    all_runs = ", ".join(f"{r['seconds']:.2f}" for r in runs)
    print(
        f"repalign: whole job, best of 3 ({all_runs} s): "
        f"{best['actors']:.2f} s in the actors' part (actor start, Parquet reads, SYRK, state "
        f"transfer), {moments - best['actors']:.2f} s in the driver after it (pilot means, "
        f"every pair's CKA from the statistic: "
        f"{', '.join(f'{k} {v:.2f} s' for k, v in timer.measures.items())} in the last run), "
        f"{result.summary['seconds'] - moments:.2f} s outside the pass. CPU time: driver plus "
        f"actors, as in part 1. The peers run on the same float32 arrays already in memory, "
        f"each in a fresh process (import not timed; CPU time from `getrusage`, all threads). "
        f"Differences are against repalign's job at n = {rows:,}, or against `repalign.cka` on "
        f"the same rows where a peer ran on fewer. 'peak RSS' is the peer process's "
        f"ru_maxrss (data included).\n"
    )
    if ok:
        fastest = min(ok, key=lambda o: o["full"])
        speedup = fastest["full"] / best["seconds"]
        agree = all(o["diff"] <= TOLERANCE for o in ok)
        print(
            f"Fastest peer: {fastest['peer']}, {fastest['full']:.1f} s → repalign is "
            f"**{speedup:.1f}×** faster by wall time, "
            f"{min(o['full_cpu'] for o in ok) / best['cpu']:.1f}× by CPU time against the "
            f"peer using least (target ≥ 10×: **{'met' if speedup >= 10 else 'missed'}**). "
            f"All peers agree with repalign to {TOLERANCE:g}: **{'yes' if agree else 'NO'}**.\n"
        )
    else:
        print("No peer could be run (see the errors above).\n")
    shutil.rmtree(store, ignore_errors=True)


def run_peer(peer, data, data_path, rows, reference, pair_list, args):
    """One peer in a fresh process: the time of its matrix, scaled to the whole if needed."""
    if peer == "ckatorch":
        pairs = pair_list[: args.ckatorch_pairs]
        run = _in_child(peer, data_path, rows, pairs)
        scale = len(pair_list) / len(pairs)
        return {
            "peer": peer,
            "how": "`ckatorch.cka_base(x, y)` per pair (float64 inside)",
            "scope": f"{len(pairs)} pairs, n = {rows:,}; × {scale:.1f} for the "
            f"{len(pair_list)} pairs",
            "measured": run["seconds"],
            "full": run["seconds"] * scale,
            "full_cpu": run["cpu"] * scale,
            "diff": _max_diff(run["matrix"], reference["biased"]),
            "peak": run["peak"],
        }
    if peer == "repsim":
        runs = [_in_child(peer, data_path, n, None) for n in args.repsim_rows]
        diffs = [
            _max_diff(run["matrix"], _library_matrix(data[:, :n], "biased"))
            for run, n in zip(runs, args.repsim_rows, strict=True)
        ]
        (n1, n2), (t1, t2) = args.repsim_rows, [run["seconds"] for run in runs]
        exponent = math.log(t2 / t1) / math.log(n2 / n1)
        scale = (rows / n2) ** exponent
        return {
            "peer": peer,
            "how": "`repsim.cka(mats, 'linear', 'gretton')`",
            "scope": f"all pairs at n = {n1:,} ({t1:.1f} s) and {n2:,} ({t2:.1f} s): time ∝ "
            f"n^{exponent:.2f}, extrapolated to n = {rows:,}",
            "measured": t2,
            "full": t2 * scale,
            "full_cpu": runs[1]["cpu"] * scale,
            "diff": max(diffs),
            "peak": max(run["peak"] for run in runs),
        }
    how = {
        "pytorch-cka": "`cka.cka_from_features(feats, feats)`, float64 tensors (Song HSIC)",
        "rsatoolbox": "`calc_rdm(…, 'euclidean')`, `compare(…, method='cosine_cov')`",
    }[peer]
    estimator = "song" if peer == "pytorch-cka" else "biased"
    available = psutil.virtual_memory().available / GIB
    n = rows
    if available < PEER_MEMORY_GIB[peer] * (rows / 8_000) ** 2:
        n = rows // 2
    run = _in_child(peer, data_path, n, None)
    if n == rows:
        diff = _max_diff(run["matrix"], reference[estimator])
        scope, scale = f"all pairs, n = {rows:,}", 1.0
    else:
        diff = _max_diff(run["matrix"], _library_matrix(data[:, :n], estimator))
        scale = (rows / n) ** 2
        scope = (
            f"all pairs at n = {n:,} (only {available:.1f} GiB free), × (n ratio)² for n = {rows:,}"
        )
    return {
        "peer": peer,
        "how": how,
        "scope": scope,
        "measured": run["seconds"],
        "full": run["seconds"] * scale,
        "full_cpu": run["cpu"] * scale,
        "diff": diff,
        "peak": run["peak"],
    }


def _library_matrix(data, estimator):
    models = data.shape[0]
    matrix = np.eye(models)
    for a, b in combinations(range(models), 2):
        matrix[a, b] = matrix[b, a] = repalign.cka(data[a], data[b], estimator=estimator)
    return matrix


def _max_diff(matrix, reference):
    done = ~np.isnan(matrix)
    return float(np.max(np.abs(matrix[done] - reference[done])))


def _in_child(peer, data_path, rows, pairs):
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(peer_child, peer, data_path, rows, pairs).result()


def peer_child(peer, data_path, rows, pairs):
    """Runs in a fresh process: wall and CPU seconds, the M×M matrix (NaN where not computed)
    and the process's peak resident set."""
    data = np.load(data_path, mmap_mode="r")
    mats = [np.array(data[m, :rows]) for m in range(data.shape[0])]
    compute = _peer_function(peer)
    started, started_cpu = time.perf_counter(), _own_cpu()
    matrix = compute(mats, pairs)
    seconds, cpu = time.perf_counter() - started, _own_cpu() - started_cpu
    return {
        "seconds": seconds,
        "cpu": cpu,
        "matrix": np.asarray(matrix, dtype=np.float64),
        "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def _own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peer_function(peer):
    """The peer's all-pairs CKA, imported before the clock starts."""
    if peer == "pytorch-cka":
        import torch
        from cka import cka_from_features

        def compute(mats, pairs):
            features = [torch.from_numpy(m).to(torch.float64) for m in mats]
            return cka_from_features(features, features).numpy()

    elif peer == "ckatorch":
        import torch
        from ckatorch import cka_base

        def compute(mats, pairs):
            matrix = np.full((len(mats), len(mats)), np.nan)
            for a, b in pairs:
                x, y = torch.from_numpy(mats[a]), torch.from_numpy(mats[b])
                matrix[a, b] = float(cka_base(x, y, kernel="linear"))
            return matrix

    elif peer == "rsatoolbox":
        import rsatoolbox

        def compute(mats, pairs):
            datasets = [rsatoolbox.data.Dataset(m) for m in mats]
            rdms = rsatoolbox.rdm.calc_rdm(datasets, method="euclidean")
            return rsatoolbox.rdm.compare(rdms, rdms, method="cosine_cov")

    else:
        import repsim

        def compute(mats, pairs):
            return repsim.cka(mats, kernel_type="linear", estimator="gretton")

    return compute


# -- part 3: memory in n ----------------------------------------------------------------------


def part_memory(args, root, timer):
    models, dim = 4, 128
    print(f"## 3. Peak memory of the linear job in n ({models} × {dim})\n")
    rows_out, peaks = [], []
    for n in args.memory_rows:
        store, _, _, size = build_store(root, f"memory-{n}", models=models, dim=dim, rows=n)
        log(f"part 3: job at n = {n:,}")
        result, monitor, _ = run_job(
            store, LINEAR_MEASURES, actors=2, timer=timer, interval=POLL_SECONDS
        )
        peaks.append((monitor.max_hwm, monitor.max_anon))
        rows_out.append(
            [
                f"{n:,}",
                f"{size / 1e9:.2f}",
                f"{result.summary['seconds']:.1f}",
                len(monitor.actors),
                mib(monitor.max_hwm),
                mib(monitor.max_anon),
                mib(monitor.sum_hwm),
                mib(monitor.driver_peak - monitor.driver_start),
            ]
        )
        shutil.rmtree(store, ignore_errors=True)
    table(
        [
            "n",
            "store GB",
            "job (s)",
            "actors",
            "max actor VmHWM MiB",
            "max actor RssAnon MiB",
            "Σ actors' VmHWM MiB",
            "driver peak growth MiB",
        ],
        rows_out,
    )
    (hwm_small, anon_small), (hwm_large, anon_large) = peaks
    ratio = hwm_large / hwm_small
    print(
        f"Ratio n = {args.memory_rows[1]:,} / n = {args.memory_rows[0]:,}: VmHWM "
        f"**{ratio:.2f}×**, RssAnon {anon_large / anon_small:.2f}× (target ≤ 1.2×: "
        f"**{'met' if ratio <= 1.2 else 'missed'}**). Measures: all linear ones, 2 actors; "
        f"memory read from /proc every {POLL_SECONDS * 1000:.0f} ms as the module docstring "
        f"says.\n"
    )


# -- part 4: exact RBF ------------------------------------------------------------------------


def part_rbf(args, root, timer):
    models, dim, n = 8, args.rbf_dim, args.rbf_rows
    store, _, _, _ = build_store(root, "rbf", models=models, dim=dim, rows=n)
    print(f"## 4. Exact RBF kernel measures ({models} × {dim}, n = {n:,})\n")
    log("part 4: job")
    result, monitor, _ = run_job(store, RBF_MEASURES, actors=2, timer=timer, interval=POLL_SECONDS)
    tile = pass_rows.TILE_ROWS
    blocks = math.ceil(n / tile)
    driver_growth = monitor.driver_peak - monitor.driver_start
    total = monitor.max_together + driver_growth
    table(
        [
            "job (s)",
            "tiles",
            "actors",
            "max actor VmHWM MiB",
            "max actor RssAnon MiB",
            "Σ actors' VmHWM MiB",
            "actors' RSS together, peak MiB",
            "driver peak growth MiB",
            "driver VmHWM MiB",
        ],
        [
            [
                f"{result.summary['seconds']:.0f}",
                f"{blocks * (blocks + 1) // 2} of {tile}²",
                len(monitor.actors),
                mib(monitor.max_hwm),
                mib(monitor.max_anon),
                mib(monitor.sum_hwm),
                mib(monitor.max_together),
                mib(driver_growth),
                mib(monitor.driver_peak),
            ]
        ],
    )
    missing = result.summary["missing_values"]
    print(
        f"Measures: {', '.join(_label(m) for m in RBF_MEASURES)} (RBF, median σ), one tile pass "
        f"(after a pass of column ranges, where the engine runs one: each pass has its own "
        f"actors, so 'actors' counts processes over the job and 'Σ VmHWM' adds peaks that were "
        f"not simultaneous; 'together' is the largest sum of the live actors' resident sets at "
        f"one poll). Live actors together plus the driver's growth: {total / GIB:.2f} GiB "
        f"(target < 4 GiB: "
        f"**{'met' if total < 4 * GIB else 'missed'}**). Missing values: {missing}. The driver's "
        f"VmHWM is its whole resident set (Python, Ray, Arrow, earlier parts' caches); its growth "
        f"is what this job added.\n"
    )
    shutil.rmtree(store, ignore_errors=True)


# -- part 5: 1 vs 2 actors --------------------------------------------------------------------


def part_speedup(args, root, timer):
    models, dim, n = 8, 512, args.speedup_rows
    store, _, _, _ = build_store(root, "speedup", models=models, dim=dim, rows=n)
    print(f"## 5. Two actors against one (linear CKA, {models} × {dim}, n = {n:,})\n")
    measures = [{"name": "cka", "estimator": "biased"}]
    best = {}
    for actors in (1, 2, 2, 1):  # ABBA, so that a drift in load hits both alike
        log(f"part 5: {actors} actor(s)")
        result, monitor, actor_seconds = run_job(store, measures, actors=actors, timer=timer)
        moments = result.summary["pass_seconds"]["moments"]
        entry = best.setdefault(actors, {"moments": [], "job": [], "actors": [], "seen": 0})
        entry["moments"].append(moments)
        entry["job"].append(result.summary["seconds"])
        entry["actors"].append(actor_seconds)
        entry["seen"] = max(entry["seen"], len(monitor.actors))
    table(
        [
            "actors (processes seen)",
            "CPUs per actor",
            "moments pass, runs (s)",
            "whole job, runs (s)",
            "actors' part, runs (s)",
        ],
        [
            [
                f"{actors} ({e['seen']})",
                2 // actors,
                ", ".join(f"{s:.1f}" for s in e["moments"]),
                ", ".join(f"{s:.1f}" for s in e["job"]),
                ", ".join(f"{s:.1f}" for s in e["actors"]),
            ]
            for actors, e in sorted(best.items())
        ],
    )
    one, two = min(best[1]["moments"]), min(best[2]["moments"])
    print(
        f"Speed-up of 2 actors (1 CPU each) over 1 actor (2 CPUs, 2 BLAS threads), best runs: "
        f"moments pass **{one / two:.2f}×**, whole job "
        f"{min(best[1]['job']) / min(best[2]['job']):.2f}×.\n"
    )
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
