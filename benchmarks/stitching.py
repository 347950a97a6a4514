"""Benchmark: the stitching job's throughput with 1 and 2 workers, and the alignment residual
Ã₂ from the shared statistics against a direct least-squares fit.

Two parts, in one run:

1. Workers. The digits zoo (`repalign.zoo.build_zoo(store, "digits")`, 16 networks, written to
   a temporary folder under /tmp and deleted at the end) and a fixed subset of
   `jobs.stitching.default_pairs`: ``--pairs`` of them drawn without replacement (seed
   ``SEED``) and kept in the default order, the same subset for both worker counts.
   `jobs.stitching.run_stitching` trains their stitchers with ``workers`` = 1 and 2 on a
   local Ray with 2 CPUs (one CPU per pair task), in the order 1, 2, 2, 1 twice, after an untimed
   warm-up that starts both Ray worker processes. Reported: pairs per minute of each run
   (wall time of the whole `run_stitching` call), the best run of each worker count, their
   ratio, the CPU seconds of the driver and the Ray worker processes (from /proc, as a
   cross-check on a shared machine), and whether every run's table equals the first run's in
   every column (the job promises the same table whatever the workers).
2. Ã₂ at n = ``--rows``. Paired float32 representations Z1 (standard normal) and
   Z2 = Z1 M/√d + noise, d₁ = d₂ = d for each width in ``WIDTHS``, built in memory from seed
   ``SEED``. Three ways to get Ã₂ = min_S mean ‖Z1 S − Z2‖²:

   - ``statistics``: `repalign.stitching.least_squares_map(Z1, Z2)`, which accumulates the
     second moments (`repalign.stats.GramState`, float64 SYRK over row blocks) and solves
     from them, as the stitching and alignment jobs do;
   - ``numpy lstsq``: float64 copies of Z1 and Z2, `numpy.linalg.lstsq` (LAPACK gelsd), then
     the residual mean ‖Z1 S − Z2‖² computed explicitly;
   - ``scipy lstsq``: the same with `scipy.linalg.lstsq(..., lapack_driver="gelsy")`
     (``check_finite=False``: neither numpy's lstsq nor the direct path checks).

   Timed in ``REPEATS`` interleaved rounds (the order reversed every other round), best of
   them; the direct fits are split into "fit" (copies + lstsq) and "residual" (Z1 S − Z2 and
   its squared norm). Peak extra memory is the process's peak resident set during a call
   (VmHWM, reset through /proc/self/clear_refs before it) minus its resident set before it,
   so BLAS and LAPACK work buffers count; "—" where the kernel does not reset VmHWM. The
   residuals must agree with the statistics' to a relative ``TOLERANCE``, else the script
   exits with 1.

Every ratio compares figures of the same run; on a shared machine the seconds are context
only, and the CPU seconds are the cross-check that other users' load disturbs least. Progress
goes to stderr, the markdown report to stdout.

Run from the repository root (a few minutes; ``--smoke`` checks the script in seconds):

    .venv/bin/python benchmarks/stitching.py > stitching-report.md
"""

import argparse
import contextlib
import datetime
import math
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import psutil
import ray
import scipy.linalg
from machine import cpu_model, git_state, package_version, total_memory_gib
from report import command_line, table
from threadpoolctl import threadpool_info

import repalign
from jobs.stitching import default_pairs, run_stitching
from repalign.spec import parse_spec
from repalign.stitching import least_squares_map
from repalign.zoo import build_zoo

SEED = 20256
PAIRS = 48
ROWS = 200_000
WIDTHS = (256, 512)
NOISE = 1.0
REPEATS = 3
WORKER_ORDER = (1, 2, 2, 1) * 2  # ABBA twice, so that a drift in load hits both alike
WARMUP_PAIRS = 2
RAY_CPUS = 2
TOLERANCE = 1e-8
METHODS = ("statistics", "numpy lstsq", "scipy lstsq")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pairs", type=int, default=PAIRS, help="part 1: pairs per run")
    parser.add_argument("--rows", type=int, default=ROWS, help="part 2: n")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the digits-small zoo, 4 pairs, n = 5,000 at widths 16 and 32, to check the script "
        "(the figures mean nothing)",
    )
    args = parser.parse_args(argv)
    args.preset, args.widths = "digits", WIDTHS
    if args.smoke:
        args.preset, args.pairs, args.rows, args.widths = "digits-small", 4, 5_000, (16, 32)
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    root = tempfile.mkdtemp(prefix="repalign-stitching-bench-", dir="/tmp")
    try:
        log("starting Ray")
        ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
        print_machine(args)
        workers_ok = run_part("1, workers", lambda: part_workers(args, root))
        residuals_ok = run_part("2, Ã₂", lambda: part_residual(args))
        print(f"Total: {time.perf_counter() - started:.0f} s.")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if ray.is_initialized():
            ray.shutdown()
    if not (workers_ok and residuals_ok):
        sys.exit(1)


def run_part(name, function):
    """Run one part; print its duration and the load average around it; pass its verdict on."""
    load = os.getloadavg()[0]
    part_started = time.perf_counter()
    ok = function()
    seconds = time.perf_counter() - part_started
    log(f"part {name} took {seconds:.0f} s")
    print(
        f"_(part took {seconds:.0f} s; load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after)_\n",
        flush=True,
    )
    return ok


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the machine -------------------------------------------------------------------------------


def print_machine(args):
    blas = [
        f"{lib['internal_api']} {lib['version']} ({os.path.basename(lib['filepath'])}, "
        f"{lib['architecture']}, {lib['num_threads']} threads)"
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    ]
    versions = ", ".join(
        f"{name} {package_version(name)}" for name in ("numpy", "scipy", "torch", "ray", "pyarrow")
    )
    print("### Machine\n")
    print(f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    print(f"- command: {command_line()}")
    print(
        f"- CPU: {cpu_model()}, nproc {len(os.sched_getaffinity(0))}, memory "
        f"{total_memory_gib():.1f} GiB ({psutil.virtual_memory().available / 2**30:.1f} GiB "
        f"available at start), {platform.machine()}; load average "
        f"{', '.join(f'{load:.2f}' for load in os.getloadavg())} (1, 5, 15 min)"
    )
    print(f"- OPENBLAS_CORETYPE: {os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"- BLAS (driver process): {'; '.join(blas)}")
    print(f"- Python {platform.python_version()}, repalign {repalign.__version__}; {versions}")
    print(f"- repalign working tree: {git_state()}")
    print(
        f"- Ray: local, `ray.init(num_cpus={RAY_CPUS})`; one task per pair with num_cpus=1, "
        f"torch on 1 thread inside it (`repalign.zoo.models.deterministic_torch`)"
    )
    print(
        f"- data: part 1 the `{args.preset}` zoo, stitcher defaults of `repalign.spec.Stitcher`; "
        f"part 2 seed {SEED}, n = {args.rows:,}, d₁ = d₂ ∈ {{{', '.join(map(str, args.widths))}}}, "
        f"float32, Z2 = Z1 M/√d + {NOISE}·noise; best of {REPEATS} interleaved rounds\n",
        flush=True,
    )


# -- part 1: pairs per minute with 1 and 2 workers ---------------------------------------------


def part_workers(args, root):
    store = os.path.join(root, "zoo")
    log(f"part 1: building the {args.preset} zoo")
    built = time.perf_counter()
    names = build_zoo(store, args.preset, progress=False)
    built = time.perf_counter() - built
    every = default_pairs(store)
    chosen = np.random.default_rng(SEED).choice(len(every), min(args.pairs, len(every)), False)
    pairs = [every[i].model_dump() for i in sorted(chosen)]
    print(f"### 1. Pairs per minute with 1 and 2 workers ({args.preset} zoo, {len(pairs)} pairs)\n")

    log(f"part 1: warm-up, {WARMUP_PAIRS} pairs with {RAY_CPUS} workers")
    run_job(store, root, pairs[:WARMUP_PAIRS], workers=RAY_CPUS)
    runs = []
    for workers in WORKER_ORDER:
        log(f"part 1: {len(pairs)} pairs with {workers} worker(s)")
        runs.append({"workers": workers, **run_job(store, root, pairs, workers=workers)})

    reference = runs[0]["table"]
    for run in runs:
        run["differs"] = differing_columns(reference, run["table"])
    table(
        [
            "run",
            "workers",
            "wall (s)",
            "pairs per minute",
            "CPU driver (s)",
            "CPU Ray workers (s)",
            "CPU per pair (s)",
            "CPU ÷ wall",
            "failed pairs",
            "table = run 1's",
        ],
        [
            [
                i,
                run["workers"],
                f"{run['seconds']:.1f}",
                f"{60 * len(pairs) / run['seconds']:.1f}",
                f"{run['driver_cpu']:.2f}",
                f"{run['workers_cpu']:.1f}",
                f"{run['cpu'] / len(pairs):.2f}",
                f"{run['cpu'] / run['seconds']:.2f}",
                run["failed"],
                "yes" if not run["differs"] else "NO: " + ", ".join(run["differs"]),
            ]
            for i, run in enumerate(runs, start=1)
        ],
    )
    best = {w: min(r["seconds"] for r in runs if r["workers"] == w) for w in (1, 2)}
    cpu = {w: min(r["cpu"] for r in runs if r["workers"] == w) for w in (1, 2)}
    identical = all(not run["differs"] for run in runs)
    source_models = sorted({p["source"].split(".", 1)[0] for p in pairs})
    target_models = sorted({p["target"].split(".", 1)[0] for p in pairs})
    print(
        f"Best runs: 1 worker {60 * len(pairs) / best[1]:.1f} pairs per minute, 2 workers "
        f"{60 * len(pairs) / best[2]:.1f}: 2 workers / 1 worker = **{best[1] / best[2]:.2f}×** "
        f"(2.00× would be perfect scaling on the 2 CPUs Ray is given). Least CPU seconds of each "
        f"worker count: 2 workers / 1 worker = {cpu[2] / cpu[1]:.2f} (1.00 = no extra work "
        f"for parallelism). All {len(runs)} tables identical in all "
        f"{reference.num_columns} columns: **{'yes' if identical else 'NO'}**.\n"
    )
    print(
        f"Zoo: {len(names)} representations written in {built:.1f} s; {len(every)} default "
        f"pairs, of which {len(pairs)} drawn at random (seed {SEED}): {len(source_models)} "
        f"source models, {len(target_models)} target models, "
        f"{sum(p['source'] == p['target'] for p in pairs)} pairs of a layer into itself. A run "
        f"is one `run_stitching` call, Ray already started and its worker processes warmed by "
        f"{WARMUP_PAIRS} untimed pairs; its wall time includes opening the store, reading the "
        f"targets, Ray's scheduling and the table. CPU: this process (`time.process_time`, "
        f"Ray's driver threads included) plus every process under it titled `ray::` "
        f"(/proc/<pid>/stat); Ray's daemons are not counted. 'CPU ÷ wall' is the number of "
        f"cores the run kept busy on average. Tables compared cell by cell, "
        f"NaN equal to NaN, nulls to nulls.\n"
    )
    shutil.rmtree(store, ignore_errors=True)
    return identical


def run_job(store, root, pairs, *, workers):
    """One `run_stitching` call: its table, wall seconds, CPU seconds and failed pairs."""
    spec = parse_spec(
        {
            "kind": "stitching",
            "store": store,
            "out": os.path.join(root, "out"),
            "workers": workers,
            "pairs": pairs,
        }
    )
    before, cpu_before = ray_worker_cpu(), time.process_time()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # keep Ray's messages off the report
        result = run_stitching(spec, quiet=True)
    seconds = time.perf_counter() - started
    after = ray_worker_cpu()
    driver_cpu = time.process_time() - cpu_before
    workers_cpu = sum(seconds_now - before.get(pid, 0.0) for pid, seconds_now in after.items())
    if set(before) - set(after):
        log(f"warning: Ray worker(s) {sorted(set(before) - set(after))} ended during the run")
    return {
        "table": result.table,
        "seconds": seconds,
        "driver_cpu": driver_cpu,
        "workers_cpu": workers_cpu,
        "cpu": driver_cpu + workers_cpu,
        "failed": result.summary["failed"],
    }


def ray_worker_cpu():
    """{pid: user + system CPU seconds} of the processes under this one titled ``ray::``."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if " ".join(child.cmdline()).startswith("ray::"):
                times = child.cpu_times()
                found[child.pid] = times.user + times.system
        except psutil.Error:
            continue
    return found


def differing_columns(a, b):
    """Names of the columns whose values differ between two tables of the same schema."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return ["(schema or rows)"]
    return [
        name
        for name in a.column_names
        if not all(
            _same(x, y)
            for x, y in zip(a.column(name).to_pylist(), b.column(name).to_pylist(), strict=True)
        )
    ]


def _same(x, y):
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


# -- part 2: Ã₂ from the statistics against a direct least-squares fit -------------------------


def part_residual(args):
    n = args.rows
    print(f"### 2. Ã₂ from the statistics against a direct least-squares fit (n = {n:,})\n")
    results = []
    for width in args.widths:
        Z1, Z2 = make_representations(n, width)
        results.extend(time_methods(Z1, Z2))
        del Z1, Z2
    table(
        [
            "d₁ = d₂",
            "method",
            "fit (s)",
            "residual (s)",
            "total (s)",
            "total ÷ statistics",
            "fit ÷ statistics",
            "CPU total (s)",
            "CPU ÷ statistics",
            "peak extra memory (MiB)",
            "Ã₂",
            "rel. diff vs statistics",
            "max |S − S_stat|",
        ],
        [
            [
                r["width"],
                r["method"],
                f"{r['fit']:.2f}",
                f"{r['residual_seconds']:.2f}" if r["method"] != "statistics" else "—",
                f"{r['total']:.2f}",
                f"{r['total'] / r['base_total']:.2f}",
                f"{r['fit'] / r['base_total']:.2f}",
                f"{r['cpu']:.2f}",
                f"{r['cpu'] / r['base_cpu']:.2f}",
                f"{r['peak'] / 2**20:,.0f}" if r["peak"] is not None else "—",
                f"{r['value']:.10g}",
                f"{r['rel_diff']:.1e}" if r["method"] != "statistics" else "—",
                f"{r['map_diff']:.1e}" if r["method"] != "statistics" else "—",
            ]
            for r in results
        ],
    )
    worst = max(r["rel_diff"] for r in results)
    agree = worst < TOLERANCE
    print(
        f"All residuals agree with the statistics' to a relative {TOLERANCE:g}: "
        f"**{'yes' if agree else 'NO'}** (largest difference {worst:.1e}). 'fit' is the float64 "
        f"copies of Z1 and Z2 plus the lstsq call (for the statistics: the whole "
        f"`least_squares_map` call, which returns S* and Ã₂ together); 'residual' is "
        f"Z1 S − Z2 and its mean squared norm. Seconds and CPU seconds (`time.process_time`, "
        f"all threads) are each the best of {REPEATS} rounds. Peak extra memory: the largest "
        f"over the rounds.\n"
    )
    return agree


def make_representations(n, width):
    """Z1 standard normal, Z2 = Z1 M/√d + noise, both (n, width) float32."""
    rng = np.random.default_rng(SEED)
    Z1 = rng.standard_normal((n, width), dtype=np.float32)
    M = rng.standard_normal((width, width), dtype=np.float32) / np.float32(np.sqrt(width))
    Z2 = Z1 @ M + np.float32(NOISE) * rng.standard_normal((n, width), dtype=np.float32)
    return Z1, Z2


def time_methods(Z1, Z2):
    """Best-of-REPEATS wall and CPU seconds, peak extra memory and Ã₂ of each method."""
    width = Z1.shape[1]
    calls = {
        "statistics": lambda: statistics_residual(Z1, Z2),
        "numpy lstsq": lambda: direct_residual(Z1, Z2, numpy_lstsq),
        "scipy lstsq": lambda: direct_residual(Z1, Z2, scipy_lstsq),
    }
    best = {
        name: {"fit": math.inf, "residual_seconds": math.inf, "total": math.inf, "cpu": math.inf}
        for name in calls
    }
    peaks = {name: [] for name in calls}
    for round_ in range(REPEATS):
        order = METHODS if round_ % 2 == 0 else METHODS[::-1]
        for name in order:
            log(f"part 2: d = {width}, {name}, round {round_ + 1} of {REPEATS}")
            start_rss, resettable = reset_peak_memory()
            cpu = time.process_time()
            outcome = calls[name]()
            cpu = time.process_time() - cpu
            peak = peak_memory() - start_rss if resettable else None
            entry = best[name]
            entry["fit"] = min(entry["fit"], outcome["fit"])
            entry["residual_seconds"] = min(entry["residual_seconds"], outcome["residual_seconds"])
            entry["total"] = min(entry["total"], outcome["fit"] + outcome["residual_seconds"])
            entry["cpu"] = min(entry["cpu"], cpu)
            entry["value"], entry["map"] = outcome["value"], outcome["map"]
            peaks[name].append(peak)
    for name, entry in best.items():
        entry["peak"] = None if None in peaks[name] else max(peaks[name])
    base = best["statistics"]
    return [
        {
            "width": width,
            "method": name,
            **entry,
            "base_total": base["total"],
            "base_cpu": base["cpu"],
            "rel_diff": abs(entry["value"] - base["value"]) / abs(base["value"]),
            "map_diff": float(np.max(np.abs(entry["map"] - base["map"]))),
        }
        for name, entry in best.items()
    ]


def statistics_residual(Z1, Z2):
    started = time.perf_counter()
    fitted = least_squares_map(Z1, Z2)
    seconds = time.perf_counter() - started
    return {
        "fit": seconds,
        "residual_seconds": 0.0,
        "value": fitted.residual,
        "map": fitted.weight.T,
    }


def direct_residual(Z1, Z2, solve):
    """Ã₂ from an explicit least-squares solve on float64 copies: fit, then the residual."""
    started = time.perf_counter()
    A, B = Z1.astype(np.float64), Z2.astype(np.float64)
    S = solve(A, B)
    fitted = time.perf_counter()
    R = A @ S
    R -= B
    value = float(np.vdot(R, R)) / A.shape[0]
    done = time.perf_counter()
    return {"fit": fitted - started, "residual_seconds": done - fitted, "value": value, "map": S}


def numpy_lstsq(A, B):
    return np.linalg.lstsq(A, B, rcond=None)[0]


def scipy_lstsq(A, B):
    return scipy.linalg.lstsq(A, B, lapack_driver="gelsy", check_finite=False)[0]


def reset_peak_memory():
    """This process's resident bytes now, and whether its peak (VmHWM) could be reset to it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return _status()["VmRSS"], False
    status = _status()
    return status["VmRSS"], status["VmHWM"] <= status["VmRSS"] + 2**20


def peak_memory():
    return _status()["VmHWM"]


def _status():
    """VmRSS and VmHWM of this process, in bytes."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


if __name__ == "__main__":
    main()
