"""Benchmark: a user's whole all-pairs job, from a cold start, against the loops they would write
by hand, the peer libraries and the BLAS floor of the statistic (issue 13, item 6).

All-pairs linear CKA (biased) of 8 representations of width 512, float32, from
`repalign.zoo.build_zoo(store, "synth", seed=ZOO_SEED)`, at each n of ``--sizes`` (8,000 and
64,000), and the trivial job (2 representations of width 16 at n = 200). The store, and one
.npy file per representation read from it, are written before any clock starts.

Every contender but the limits runs in a FRESH process, and its time is the wall time of the
whole `subprocess.run`: Python's start, imports, reading the data (the store, or the .npy
files), the computation and writing the result. The contenders:

- ``repalign run --store S --out O --measure cka:linear:biased --quiet``, as typed in a shell
  (default executor and precision), and the same with ``--precision float32``. Each
  repetition runs in a new, empty working folder (where MLflow's default store is created) and
  then runs a second job in the same folder: the first pays for creating the tracking store,
  the second finds it.
- `repalign.pairwise` on the arrays read from the .npy files.
- the careful numpy loop: float64, centred once, ‖XcᵀXc‖_F once per representation and
  ‖XcᵀYc‖²_F per pair; and its per-pair naive form (all three products per pair), the yardstick
  of `repalign.cka` called per pair (also timed).
- a torch float32 loop (the same products in float32 on the CPU, torch's default threads).
- pytorch-cka (`cka_from_features` on float32 tensors: its default dtype; Song's unbiased HSIC)
  and rsatoolbox (`calc_rdm` Euclidean, `compare` cosine_cov). Both hold n×n matrices: where the
  memory they would need exceeds what the machine has free they are not started, and the
  table says so.
- the limits, timed IN THIS PROCESS on data in memory: ``S += BᵀB`` over row blocks B of the
  rows ``[x¹ − c¹, ‖x¹ − c¹‖², …, x⁸ − c⁸, ‖x⁸ − c⁸‖², 1]`` (D = 8·513 + 1 columns) for all n,
  float64 ``dsyrk`` accumulating in place, and float32 ``ssyrk`` per block added into a float64
  sum (what ``--precision float32`` does). Building the rows is outside the clock. This is the
  compute floor of the statistic the job accumulates.

Every contender's values are checked against repalign's table (the default job's
``alignment.parquet``; for pytorch-cka, `repalign.cka` with Song's estimator) over all pairs,
to 1e-12 for float64 paths and 1e-6 for float32 paths; the tables give the largest difference.

Two more sections: (2) precision: every linear measure of the moments pass, with each of its
estimators, run with ``--precision float32`` and with the default float64, on the benchmark
stores and on the digits zoo (preset "digits"); the largest absolute and relative difference of
each.
(3) incremental: 9 representations of width 256 at n = 64,000; a full run of all 9 against
``--incremental-from`` a run of the first 8: end to end and the moments pass
(``summary.json["pass_seconds"]["moments"]``).

Timings are the best of 3 where one run takes under ``CHEAP_SECONDS``, else one run; every
ratio compares figures taken in the same run of this script. Progress goes to stderr, the
markdown report to stdout. The script needs the peers of the ``bench`` extra (`make bench`);
without them their rows say "not installed". Run from the repository root (estimated 20 to 30
minutes on 2 quiet cores at the default sizes; ``--parts`` runs some sections only):

    .venv/bin/python benchmarks/end_to_end.py > end-to-end-report.md
    .venv/bin/python benchmarks/end_to_end.py --quick   # tiny sizes: checks the script only
"""

# This file is also the program each hand-written contender runs (``--child``), and a
# contender's clock includes its imports: the module level imports only the standard library
# and numpy; the harness imports what it needs inside its functions.
import json
import os
import sys
import time

import numpy as np

ZOO_SEED = 0
MODELS, DIM = 8, 512
TRIVIAL = {"rows": 200, "models": 2, "dim": 16}
INCREMENTAL = {"models": 9, "dim": 256, "rows": 64_000}
QUICK = {
    "sizes": [1_000],
    "dim": 64,
    "incremental": {"models": 9, "dim": 32, "rows": 1_000},
    "digits": "digits-small",
}
CHEAP_SECONDS = 10.0
WIDE_BLOCK_ROWS = 4096
GIB = 2**30
TOLERANCE = {"float64": 1e-12, "float32": 1e-6}
DIGITS_PRESET = "digits"
"""The digits zoo of section 2 (60 representations, 1,830 pairs; "digits-small" with --quick)."""
CKA = "cka:linear:biased"


# -- the contenders' programs (run as ``end_to_end.py --child NAME DATA RESULT``) ---------------


def child(name, data, result):
    """Read the .npy files in ``data``, compute the CKA matrix with contender ``name``, save it
    to ``result`` and print the seconds spent reading and computing as JSON."""
    started = time.perf_counter()
    compute = CHILDREN[name]()  # imports the contender's libraries
    with open(os.path.join(data, "names.json")) as f:
        names = json.load(f)
    arrays = [np.load(os.path.join(data, f"{n}.npy")) for n in names]
    loaded = time.perf_counter()
    matrix = compute(names, arrays)
    done = time.perf_counter()
    np.save(result, np.asarray(matrix, dtype=np.float64))
    print(json.dumps({"imports_and_load": loaded - started, "compute": done - loaded}))


def careful_numpy():
    """CKA = ‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F), float64, each ‖XcᵀXc‖_F once."""

    def compute(names, arrays):
        centred = []
        for X in arrays:
            Xc = X.astype(np.float64)
            Xc -= Xc.mean(axis=0)
            centred.append(Xc)
        norms = [np.linalg.norm(Xc.T @ Xc) for Xc in centred]
        matrix = np.eye(len(arrays))
        for a in range(len(arrays)):
            for b in range(a + 1, len(arrays)):
                cross = centred[a].T @ centred[b]
                matrix[a, b] = matrix[b, a] = np.vdot(cross, cross) / (norms[a] * norms[b])
        return matrix

    return compute


def naive_numpy():
    """The careful loop with all three products per pair, as one pair's CKA is computed."""

    def compute(names, arrays):
        centred = []
        for X in arrays:
            Xc = X.astype(np.float64)
            Xc -= Xc.mean(axis=0)
            centred.append(Xc)
        matrix = np.eye(len(arrays))
        for a in range(len(arrays)):
            for b in range(a + 1, len(arrays)):
                X, Y = centred[a], centred[b]
                cross = X.T @ Y
                matrix[a, b] = matrix[b, a] = np.vdot(cross, cross) / (
                    np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
                )
        return matrix

    return compute


def library_per_pair():
    import repalign

    cka = repalign.cka  # `import repalign` loads its measures on first use: not in the clock

    def compute(names, arrays):
        matrix = np.eye(len(arrays))
        for a in range(len(arrays)):
            for b in range(a + 1, len(arrays)):
                matrix[a, b] = matrix[b, a] = cka(arrays[a], arrays[b])
        return matrix

    return compute


def library_pairwise():
    import repalign

    pairwise = repalign.pairwise  # as in `library_per_pair`

    def compute(names, arrays):
        table = pairwise(dict(zip(names, arrays, strict=True)), measures=["cka"])
        return cka_matrix(columns_of(table), names)

    return compute


def torch_loop():
    """The careful loop in torch float32 on the CPU."""
    import torch

    def compute(names, arrays):
        centred = []
        for X in arrays:
            X = torch.from_numpy(X)
            centred.append(X - X.mean(dim=0))
        norms = [torch.linalg.norm(Xc.T @ Xc) for Xc in centred]
        matrix = np.eye(len(arrays))
        for a in range(len(arrays)):
            for b in range(a + 1, len(arrays)):
                cross = centred[a].T @ centred[b]
                value = (cross * cross).sum() / (norms[a] * norms[b])
                matrix[a, b] = matrix[b, a] = float(value)
        return matrix

    return compute


def pytorch_cka():
    """pytorch-cka's documented call on float32 tensors (its default; Song's HSIC)."""
    import torch
    from cka import cka_from_features

    def compute(names, arrays):
        features = [torch.from_numpy(X) for X in arrays]
        return cka_from_features(features, features).numpy()

    return compute


def rsatoolbox_cka():
    """Biased linear CKA as rsatoolbox computes it: cosine of the whitened Euclidean RDMs."""
    import rsatoolbox

    def compute(names, arrays):
        datasets = [rsatoolbox.data.Dataset(X) for X in arrays]
        rdms = rsatoolbox.rdm.calc_rdm(datasets, method="euclidean")
        return rsatoolbox.rdm.compare(rdms, rdms, method="cosine_cov")

    return compute


CHILDREN = {
    "numpy": careful_numpy,
    "numpy-naive": naive_numpy,
    "library": library_per_pair,
    "pairwise": library_pairwise,
    "torch": torch_loop,
    "pytorch-cka": pytorch_cka,
    "rsatoolbox": rsatoolbox_cka,
}


def columns_of(table):
    """A long table (pyarrow Table, pandas DataFrame or dict of columns) as a dict of lists."""
    if hasattr(table, "to_pydict"):
        return table.to_pydict()
    if hasattr(table, "to_dict"):
        return table.to_dict("list")
    return dict(table)


def cka_matrix(columns, names, estimator="biased"):
    """The M×M matrix of linear CKA with ``estimator`` from a long table (NaN where missing)."""
    index = {name: i for i, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    kernels = columns.get("kernel", ["linear"] * len(columns["value"]))
    estimators = columns.get("estimator", [""] * len(columns["value"]))
    for a, b, measure, kernel, found, value in zip(
        columns["rep_a"],
        columns["rep_b"],
        columns["measure"],
        kernels,
        estimators,
        columns["value"],
        strict=True,
    ):
        if measure == "cka" and kernel == "linear" and (found or "biased") == estimator:
            if value is not None:
                matrix[index[a], index[b]] = matrix[index[b], index[a]] = value
    return matrix


# -- the harness --------------------------------------------------------------------------------


def parse_args(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[8_000, 64_000], help="n of the speed section"
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["speed", "precision", "incremental"],
        choices=["speed", "precision", "incremental"],
        help="sections to run",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes everywhere, to check the script (the figures mean nothing)",
    )
    args = parser.parse_args(argv)
    args.dim, args.incremental, args.digits = DIM, dict(INCREMENTAL), DIGITS_PRESET
    if args.quick:
        args.sizes, args.dim, args.incremental = QUICK["sizes"], QUICK["dim"], QUICK["incremental"]
        args.digits = QUICK["digits"]
    return args


def main(argv=None):
    import shutil
    import tempfile

    args = parse_args(argv)
    started = time.perf_counter()
    root = tempfile.mkdtemp(prefix="repalign-end-to-end-", dir="/tmp")
    try:
        features = detect_features()
        print_machine(args, features)
        if "speed" in args.parts:
            part_speed(args, root, features)
        if "precision" in args.parts:
            part_precision(args, root, features)
        if "incremental" in args.parts:
            part_incremental(args, root)
        print(f"Total: {time.perf_counter() - started:.0f} s.")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


REPALIGN = os.path.join(os.path.dirname(sys.executable), "repalign")
"""The command a user of this environment types."""


def detect_features():
    """What the code under test offers now: {"precision", "executor", "pairwise"} -> bool, and
    the peers installed."""
    import importlib.util
    import subprocess

    help_text = subprocess.run(
        [REPALIGN, "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import repalign; print(hasattr(repalign, 'pairwise'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "precision": "--precision" in help_text,
        "executor": "--executor" in help_text,
        "pairwise": probe == "True",
        "pytorch-cka": importlib.util.find_spec("cka") is not None,
        "rsatoolbox": importlib.util.find_spec("rsatoolbox") is not None,
    }


def print_machine(args, features):
    import datetime
    import platform

    import psutil
    from machine import cpu_model, git_state, package_version
    from threadpoolctl import threadpool_info

    import repalign

    blas = [
        f"{lib['internal_api']} {lib['version']} ({os.path.basename(lib['filepath'])}, "
        f"{lib['num_threads']} threads)"
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    ]
    versions = ", ".join(
        f"{name} {package_version(name)}"
        for name in ("numpy", "scipy", "torch", "ray", "mlflow", "pytorch-cka", "rsatoolbox")
    )
    memory = psutil.virtual_memory()
    print("## Machine\n")
    print(f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    from report import command_line

    print(f"- command: {command_line()}")
    print(
        f"- CPU: {cpu_model()}, nproc {len(os.sched_getaffinity(0))}, memory "
        f"{memory.total / GIB:.1f} GiB ({memory.available / GIB:.1f} GiB available at start); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"- BLAS (this process, which times the limits): {'; '.join(blas)}")
    print(f"- Python {platform.python_version()}, repalign {repalign.__version__}; {versions}")
    print(f"- repalign working tree: {git_state()}")
    have = {True: "yes", False: "**not available**"}
    print(
        f"- in the code now: `repalign run --precision` {have[features['precision']]}, "
        f"`--executor` {have[features['executor']]}, `repalign.pairwise` "
        f"{have[features['pairwise']]}; installed: pytorch-cka "
        f"{have[features['pytorch-cka']]}, rsatoolbox {have[features['rsatoolbox']]}"
    )
    print(
        f"- data: `build_zoo(store, 'synth', models=…, dim=…, rows=…, seed={ZOO_SEED})`, "
        f"float32; no MLFLOW_TRACKING_URI or RAY_ADDRESS in the contenders' environment\n",
        flush=True,
    )


# -- running things from the shell --------------------------------------------------------------


def shell(command, cwd):
    """Run ``command`` in ``cwd`` as a user's shell would; returns (wall seconds, the completed
    process)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    started = time.perf_counter()
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, process


def failure(process):
    """One line saying why a process failed."""
    if process.returncode < 0:
        return f"killed by signal {-process.returncode}"
    lines = [line for line in process.stderr.strip().splitlines() if line.strip()]
    return f"exit {process.returncode}: {lines[-1] if lines else '(no message)'}"[:200]


def best_of(run_once):
    """Run once, and twice more if that took under `CHEAP_SECONDS`; returns every outcome
    (dicts with "seconds", or "error"), the best first."""
    outcomes = [run_once()]
    if "error" not in outcomes[0] and outcomes[0]["seconds"] < CHEAP_SECONDS:
        outcomes += [run_once(), run_once()]
    good = sorted((o for o in outcomes if "error" not in o), key=lambda o: o["seconds"])
    return good + [o for o in outcomes if "error" in o]


def repalign_command(store, out, measures, *extra):
    command = [REPALIGN, "run", "--store", store, "--out", out, "--quiet", *extra]
    for measure in measures:
        command += ["--measure", measure]
    return command


def run_job(root, store, measures, *extra, folder=None, label="job"):
    """One `repalign run` from the shell in ``folder`` (a new empty one if None)."""
    import tempfile

    folder = folder or tempfile.mkdtemp(prefix="cwd-", dir=root)
    out = tempfile.mkdtemp(prefix=f"{label}-", dir=folder)
    seconds, process = shell(repalign_command(store, out, measures, *extra), folder)
    if process.returncode != 0:
        return {"error": failure(process), "folder": folder}
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return {"seconds": seconds, "out": out, "folder": folder, "summary": summary}


def read_table(out):
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(out, "alignment.parquet")).to_pydict()


def tracking_place(job):
    """Where the job's MLflow store is: the working folder, its OUT, or neither."""
    if os.path.exists(os.path.join(job["folder"], "mlflow.db")):
        return "working folder"
    if os.path.exists(os.path.join(job["out"], "mlflow.db")):
        return "OUT"
    return "elsewhere"


# -- the data -----------------------------------------------------------------------------------


def prepare(root, *, models, dim, rows):
    """The synth store of these sizes and a folder of .npy files read from it (one per
    representation, and names.json): (store path, .npy folder, names, {name: array})."""
    from repalign.store import open_store

    store, names = synth_store(root, models, dim, rows)
    data = store + "-npy"
    os.makedirs(data, exist_ok=True)
    arrays = {}
    opened = open_store(store)
    for name in names:
        arrays[name] = opened[name].read()[1]
        np.save(os.path.join(data, f"{name}.npy"), arrays[name])
    with open(os.path.join(data, "names.json"), "w") as f:
        json.dump(names, f)
    return store, data, names, arrays


def max_difference(matrix, reference):
    """Largest |difference| over the pairs (strict upper triangle) both have."""
    upper = np.triu_indices(len(reference), k=1)
    a, b = matrix[upper], reference[upper]
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    return float(np.max(np.abs(a - b)))


# -- section 1: speed ---------------------------------------------------------------------------

HAND = [
    ("numpy", "careful numpy loop (float64, centred, ‖XcᵀXc‖ once, ‖XcᵀYc‖² per pair)", "float64"),
    ("torch", "torch float32 loop (the same products)", "float32"),
    ("pairwise", "`repalign.pairwise({name: array}, measures=['cka'])`", "float64"),
    ("numpy-naive", "numpy per pair (all three products per pair)", "float64"),
    ("library", "`repalign.cka(X, Y)` per pair", "float64"),
    ("pytorch-cka", "pytorch-cka `cka_from_features`, float32 tensors (Song)", "float32"),
    ("rsatoolbox", "rsatoolbox `calc_rdm` Euclidean + `compare` cosine_cov", "float64"),
]


def part_speed(args, root, features):
    print("## 1. All-pairs linear CKA from a cold start\n")
    print(
        "Each row but the limits: wall seconds of one `subprocess.run`, from the process's start "
        "to its exit (Python, imports, reading the store or the .npy files, computing, writing "
        "the result), best of 3 where a run takes under "
        f"{CHEAP_SECONDS:.0f} s. 'inside' is what the process itself measured: for "
        "`repalign run`, the job's `summary.json` seconds and its moments pass; for the others, "
        "the computation after the data was read. Limits: in this process, data in memory, rows "
        "built outside the clock. Ratios are of the best wall times.\n"
    )
    jobs = [(TRIVIAL["models"], TRIVIAL["dim"], TRIVIAL["rows"])]
    jobs += [(MODELS, args.dim, n) for n in args.sizes]
    for models, dim, rows in jobs:
        store, data, names, arrays = prepare(root, models=models, dim=dim, rows=rows)
        speed_table(root, store, data, names, arrays, features)


def speed_table(root, store, data, names, arrays, features):
    models, (rows, dim) = len(names), arrays[names[0]].shape
    title = "The trivial job" if rows == TRIVIAL["rows"] else "The benchmark"
    print(f"### {title}: {models} × {dim} at n = {rows:,}\n")
    log(f"n = {rows:,}: repalign run")
    found = repalign_rows(root, store, [], "float64", "run")
    reference = found[0].get("matrix")
    if features["precision"]:
        log(f"n = {rows:,}: repalign run --precision float32")
        found += repalign_rows(root, store, ["--precision", "float32"], "float32", "run32")
    else:
        found.append(skipped("run32", "`repalign run --precision float32`", "not available"))
    song = None
    for key, what, precision in HAND:
        why = why_not(key, features, models, rows)
        if why:
            found.append(skipped(key, what, why))
            continue
        log(f"n = {rows:,}: {key}")
        result = os.path.join(root, f"{key}-result.npy")
        outcomes = best_of(lambda key=key, result=result: run_child(key, data, result, root))
        row = {"key": key, "what": what, "how": "fresh process, from .npy files"}
        row.update(precision=precision, outcomes=outcomes)
        if "error" not in outcomes[0]:
            row["compute"] = outcomes[0]["compute"]
            row["inside"] = secs(row["compute"])
            row["matrix"] = np.load(result)
            if key == "pytorch-cka":
                song = library_matrix(names, arrays, "song")
        found.append(row)
    for row in found:
        if "matrix" in row and reference is not None:
            against = song if row["key"] == "pytorch-cka" else reference
            row["difference"] = max_difference(row["matrix"], against)
    log(f"n = {rows:,}: SYRK limits")
    limits = syrk_limits(list(arrays.values()))
    best = {row["key"]: best_seconds(row) for row in found}
    print_speed(found, limits, best)
    if reference is not None:
        summary = found[0]["outcomes"][0]["summary"]
        print(
            f"`repalign run` ran with executor {summary['params'].get('executor', '?')!r}, "
            f"{summary['params'].get('actors', '?')} actor(s) or slot(s); its MLflow store was "
            f"in the {tracking_place(found[0]['outcomes'][0])}. Differences: largest over the "
            f"{models * (models - 1) // 2} pairs against the table of the default job's best run "
            f"(pytorch-cka: against `repalign.cka(…, estimator='song')`, its estimator).\n"
        )
    print_targets(rows, best, limits, found)


def why_not(key, features, models, rows):
    """Why a contender is not run here, or None."""
    import psutil

    if key == "pairwise" and not features["pairwise"]:
        return "not available (`repalign.pairwise` missing)"
    if key not in ("pytorch-cka", "rsatoolbox"):
        return None
    if not features[key]:
        return "not installed (`make bench`)"
    need, free = peer_memory_gib(key, models, rows), psutil.virtual_memory().available / GIB
    if need > 0.9 * free:
        return f"not run: out of memory (needs about {need:,.0f} GiB; {free:.0f} GiB available)"
    return None


def peer_memory_gib(name, models, rows):
    """Memory a peer holding n×n matrices needs, about: pytorch-cka three stacks of M float32
    Gram matrices (its own and its cross terms); rsatoolbox 14 GiB at M = 8, n = 8,000
    (measured by benchmarks/engine.py), ∝ M n²."""
    if name == "pytorch-cka":
        return 3 * models * rows**2 * 4 / GIB
    return 14.0 * (models / 8) * (rows / 8_000) ** 2


def skipped(key, what, why):
    return {"key": key, "what": what, "how": why, "outcomes": []}


def repalign_rows(root, store, extra, precision, key):
    """`repalign run` in a new folder, then a second job in the same folder; best of 3 if the
    first is cheap. Two rows: the first jobs, the second jobs (keys ``key`` and ``key-again``)."""
    import shutil

    firsts, seconds = [], []

    def once():
        first = run_job(root, store, [CKA], *extra, label="first")
        firsts.append(first)
        if "error" not in first:
            seconds.append(run_job(root, store, [CKA], *extra, folder=first["folder"], label="2nd"))
        return first

    best_of(once)
    rows, command = [], f"`repalign run{''.join(' ' + e for e in extra)}`"
    for suffix, how, outcomes in (
        ("", "from the shell, in a new folder", firsts),
        ("-again", "from the shell, a second job in the same folder", seconds),
    ):
        outcomes.sort(key=lambda o: ("error" in o, o.get("seconds", 0)))
        row = {"key": key + suffix, "what": command, "how": how, "precision": precision}
        row["outcomes"] = outcomes
        if outcomes and "error" not in outcomes[0]:
            summary = outcomes[0]["summary"]
            moments = summary["pass_seconds"].get("moments", float("nan"))
            row["inside"] = f"{secs(summary['seconds'])} (moments {secs(moments)})"
            row["matrix"] = cka_matrix(
                read_table(outcomes[0]["out"]), summary["params"]["representations"]
            )
        for job in outcomes[1:]:
            if "out" in job:
                shutil.rmtree(job["out"], ignore_errors=True)
        rows.append(row)
    return rows


def run_child(name, data, result, root):
    seconds, process = shell(
        [sys.executable, os.path.abspath(__file__), "--child", name, data, result], root
    )
    if process.returncode != 0:
        return {"error": failure(process)}
    return {"seconds": seconds, "compute": json.loads(process.stdout)["compute"]}


def library_matrix(names, arrays, estimator):
    import repalign

    matrix = np.eye(len(names))
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            matrix[a, b] = matrix[b, a] = repalign.cka(
                arrays[names[a]], arrays[names[b]], estimator=estimator
            )
    return matrix


def best_seconds(row):
    outcomes = row["outcomes"]
    return outcomes[0]["seconds"] if outcomes and "error" not in outcomes[0] else None


def syrk_limits(arrays):
    """Seconds of ``S += BᵀB`` over row blocks of the statistic's rows for all n, float64
    (`dsyrk` in place) and float32 (`ssyrk` per block, added into a float64 S), at the
    engine's block height (`repalign.blocks.block_rows`) and at `WIDE_BLOCK_ROWS`; the faster
    of the two, best of 3 if cheap. Building the rows is not timed."""
    from scipy.linalg.blas import dsyrk, ssyrk

    from repalign.blocks import block_rows

    rows = len(arrays[0])
    width = sum(X.shape[1] + 1 for X in arrays) + 1
    shifts = [X[:1024].astype(np.float64).mean(axis=0) for X in arrays]
    Z = statistic_rows(arrays, shifts, width)
    Z32 = Z.astype(np.float32)
    heights = sorted({min(block_rows(width), rows), min(WIDE_BLOCK_ROWS, rows)})

    def float64(height):
        S = np.zeros((width, width), order="F")
        started = time.perf_counter()
        for start in range(0, rows, height):
            S = dsyrk(1.0, Z[start : start + height].T, beta=1.0, c=S, trans=0, overwrite_c=True)
        return time.perf_counter() - started

    def float32(height):
        S = np.zeros((width, width), order="F")
        started = time.perf_counter()
        for start in range(0, rows, height):
            S += ssyrk(1.0, Z32[start : start + height].T, trans=0)
        return time.perf_counter() - started

    limits = {}
    for precision, timed, how in (
        ("float64", float64, "`dsyrk` into S in place"),
        ("float32", float32, "`ssyrk` per block, added into a float64 S"),
    ):
        runs = {}
        for height in heights:
            outcomes = best_of(lambda height=height, timed=timed: {"seconds": timed(height)})
            runs[height] = [o["seconds"] for o in outcomes]
        height = min(runs, key=lambda h: runs[h][0])
        limits[precision] = {
            "seconds": runs[height][0],
            "runs": runs[height],
            "block_rows": height,
            "tried": " and ".join(f"{h:,}" for h in heights),
            "how": f"D = {width:,}, {how}",
        }
    return limits


def statistic_rows(arrays, shifts, width):
    """[x¹ − c¹, ‖x¹ − c¹‖², …, 1] in float64, as `repalign.stats.GramState` builds its rows."""
    Z = np.empty((len(arrays[0]), width))
    column = 0
    for X, shift in zip(arrays, shifts, strict=True):
        U = Z[:, column : column + X.shape[1]]
        np.subtract(X, shift, out=U)
        np.einsum("ij,ij->i", U, U, out=Z[:, column + X.shape[1]])
        column += X.shape[1] + 1
    Z[:, -1] = 1.0
    return Z


def print_speed(found, limits, best):
    from report import table

    numpy = best.get("numpy")
    syrk64, syrk32 = limits["float64"]["seconds"], limits["float32"]["seconds"]
    rows = []
    for row in found:
        good = [o for o in row["outcomes"] if "error" not in o]
        errors = [o["error"] for o in row["outcomes"] if "error" in o]
        seconds = best[row["key"]]
        how = row["how"] + (f"; failed: {errors[0]}" if errors else "")
        if row["key"] == "run":
            difference = "(the reference)"
        else:
            difference = checked(row.get("difference"), row.get("precision"))
        rows.append(
            [
                row["what"],
                how,
                ", ".join(secs(o["seconds"]) for o in good) or "—",
                secs(seconds) if seconds else "—",
                row.get("inside", "—"),
                ratio(seconds, numpy),
                ratio(seconds, syrk64),
                ratio(seconds, syrk32),
                difference,
            ]
        )
    for precision, limit in limits.items():
        rows.append(
            [
                f"limit: {precision} SYRK of the statistic",
                f"in this process, data in memory; {limit['how']}; {limit['block_rows']:,}-row "
                f"blocks (the faster of {limit['tried']})",
                ", ".join(secs(s) for s in limit["runs"]),
                secs(limit["seconds"]),
                "—",
                ratio(limit["seconds"], numpy),
                ratio(limit["seconds"], syrk64),
                ratio(limit["seconds"], syrk32),
                "—",
            ]
        )
    headers = ["contender", "how", "runs (s)", "best (s)", "inside (s)", "÷ careful numpy"]
    headers += ["÷ SYRK float64", "÷ SYRK float32", "largest difference from repalign (tolerance)"]
    table(headers, rows)


def secs(seconds):
    """Seconds with three significant figures at least down to a millisecond."""
    return f"{seconds:.2f}" if seconds >= 1 else f"{seconds:.3f}"


def ratio(seconds, reference):
    if not seconds or not reference:
        return "—"
    return f"{seconds / reference:.2f}×"


def checked(difference, precision):
    if difference is None:
        return "—"
    if difference != difference:
        return "values missing"
    tolerance = TOLERANCE[precision]
    verdict = "ok" if difference <= tolerance else "**over**"
    return f"{difference:.1e} ({tolerance:g}: {verdict})"


def print_targets(rows, best, limits, found):
    """The issue's targets that concern this n, met or missed, from this run's best times."""
    lines = []

    def target(text, seconds, reference, bound):
        if not seconds or not reference:
            lines.append(f"- {text}: not measured")
            return
        value = seconds / reference
        verdict = "met" if value <= bound else "missed"
        lines.append(f"- {text}: {value:.2f}× (≤ {bound:g}×: **{verdict}**)")

    run, again = best.get("run"), best.get("run-again")
    run32, again32 = best.get("run32"), best.get("run32-again")
    numpy, torch = best.get("numpy"), best.get("torch")
    syrk64, syrk32 = limits["float64"]["seconds"], limits["float32"]["seconds"]
    if rows == TRIVIAL["rows"]:
        for label, seconds in (("in a new folder", run), ("in the same folder", again)):
            verdict = "—" if seconds is None else ("met" if seconds <= 3.0 else "missed")
            shown = "not measured" if seconds is None else f"{seconds:.2f} s"
            lines.append(f"- trivial job, `repalign run` {label}: {shown} (≤ 3 s: **{verdict}**)")
    else:
        if rows >= 8_000:
            target("`repalign.pairwise` ÷ careful numpy", best.get("pairwise"), numpy, 1.0)
        if rows >= 64_000:
            for label, seconds in (("new folder", run), ("same folder", again)):
                target(f"`repalign run` ({label}) ÷ float64 SYRK limit", seconds, syrk64, 1.15)
            for label, seconds in (("new folder", run32), ("same folder", again32)):
                target(f"`--precision float32` ({label}) ÷ torch float32 loop", seconds, torch, 1.0)
                target(
                    f"`--precision float32` ({label}) ÷ float32 SYRK limit", seconds, syrk32, 1.3
                )
        else:
            for label, seconds in (("new folder", run), ("same folder", again)):
                target(f"`repalign run` ({label}) ÷ careful numpy", seconds, numpy, 1.5)
            for label, seconds in (("new folder", run32), ("same folder", again32)):
                target(f"`--precision float32` ({label}) ÷ careful numpy", seconds, numpy, 1.0)
    compute = {row["key"]: row.get("compute") for row in found}
    target(
        "`repalign.cka` per pair ÷ numpy per pair, computation inside the process only",
        compute.get("library"),
        compute.get("numpy-naive"),
        1.1,
    )
    print("Targets (issue 13) at this n:\n\n" + "\n".join(lines) + "\n", flush=True)


# -- section 2: precision -----------------------------------------------------------------------


def linear_measures():
    """Every measure the moments pass computes, with each of its estimators, as --measure text."""
    from repalign.registry import MEASURES

    return [
        f"{name}:linear" + (f":{estimator}" if estimator else "")
        for name, definition in MEASURES.items()
        if definition.passes.get("linear") == "moments"
        for estimator in definition.estimators
    ]


def part_precision(args, root, features):
    from report import table

    from repalign.zoo import build_zoo

    print("## 2. `--precision float32` against the default float64, every linear measure\n")
    if not features["precision"]:
        print("Not measured: `repalign run` has no `--precision` flag in this working tree.\n")
        return
    measures = linear_measures()
    datasets = [
        (f"synth {MODELS} × {args.dim}, n = {n:,}", synth_store(root, MODELS, args.dim, n)[0])
        for n in args.sizes
    ]
    digits = os.path.join(root, f"zoo-{args.digits}")
    log(f"precision: building the {args.digits} zoo")
    started = time.perf_counter()
    names = build_zoo(digits, args.digits, progress=False)
    built = time.perf_counter() - started
    datasets.append((f"zoo {args.digits} ({len(names)} representations)", digits))
    differences, notes = {}, []
    for label, store in datasets:
        jobs = {}
        for precision in ("float64", "float32"):
            log(f"precision: {label}, {precision}")
            jobs[precision] = run_job(root, store, measures, "--precision", precision)
        if any("error" in job for job in jobs.values()):
            errors = "; ".join(f"{p}: {j['error']}" for p, j in jobs.items() if "error" in j)
            notes.append(f"{label}: failed ({errors})")
            continue
        differences[label] = compare_tables(
            read_table(jobs["float64"]["out"]), read_table(jobs["float32"]["out"])
        )
        notes.append(
            f"{label}: jobs of every measure took {jobs['float64']['seconds']:.1f} s (float64) "
            f"and {jobs['float32']['seconds']:.1f} s (float32) end to end"
        )
    headers = ["measure"] + [f"{label}: max abs, max rel" for label in differences]
    rows = []
    for measure in measures:
        cells = []
        for found in differences.values():
            entry = found.get(measure_key(measure))
            cells.append("—" if entry is None else describe(entry))
        rows.append([f"`{measure}`", *cells])
    table(headers, rows)
    verdicts = []
    for measure in measures:
        if measure.split(":")[0] not in ("cka", "ka", "procrustes"):
            continue
        worst = max(
            (
                found[measure_key(measure)]["abs"]
                for found in differences.values()
                if measure_key(measure) in found
            ),
            default=None,
        )
        if worst is not None:
            verdict = "met" if worst <= 1e-6 else "missed"
            verdicts.append(f"`{measure}` {worst:.1e} (**{verdict}**)")
    print(
        "Largest |float32 − float64| over every pair of each store (relative: over |float64 "
        "value|, pairs with a nonzero value); a pair present in one table and missing in the "
        "other is counted apart. The "
        f"{args.digits} zoo was trained here in {built:.0f} s. "
        + "; ".join(notes)
        + ".\n\nTarget ≤ 1e-6 for CKA, KA and Procrustes: "
        + (", ".join(verdicts) or "not measured")
        + ".\n"
    )


def synth_store(root, models, dim, rows):
    """The synth store of these sizes under ``root``, written once: (path, names)."""
    from repalign.store import open_store
    from repalign.zoo import build_zoo

    store = os.path.join(root, f"synth-{models}x{dim}-n{rows}")
    if os.path.isdir(store):
        return store, open_store(store).select(None)
    log(f"writing the synth store: {models} × {dim} at n = {rows:,}")
    names = build_zoo(
        store, "synth", models=models, dim=dim, rows=rows, seed=ZOO_SEED, progress=False
    )
    return store, names


def measure_key(text):
    name, _, estimator = [*text.split(":"), ""][:3]
    return name, estimator


def compare_tables(reference, other):
    """{(measure, estimator): {"abs", "rel", "pairs", "one_missing"}} over the linear rows."""

    def values(columns):
        found = {}
        for a, b, measure, kernel, estimator, value in zip(
            columns["rep_a"],
            columns["rep_b"],
            columns["measure"],
            columns["kernel"],
            columns["estimator"],
            columns["value"],
            strict=True,
        ):
            if kernel == "linear":
                found[(measure, estimator or ""), a, b] = value
        return found

    first, second = values(reference), values(other)
    result = {}
    for key, value in first.items():
        entry = result.setdefault(key[0], {"abs": 0.0, "rel": 0.0, "pairs": 0, "one_missing": 0})
        other_value = second.get(key)
        if (value is None) != (other_value is None):
            entry["one_missing"] += 1
            continue
        if value is None:
            continue
        difference = abs(value - other_value)
        entry["pairs"] += 1
        entry["abs"] = max(entry["abs"], difference)
        if value != 0:
            entry["rel"] = max(entry["rel"], difference / abs(value))
    return result


def describe(entry):
    text = f"{entry['abs']:.1e}, {entry['rel']:.1e}"
    if entry["one_missing"]:
        text += f" ({entry['one_missing']} pairs missing in one table only)"
    return text


# -- section 3: incremental ---------------------------------------------------------------------


def part_incremental(args, root):
    from report import table

    sizes = args.incremental
    models, dim, rows = sizes["models"], sizes["dim"], sizes["rows"]
    print(
        f"## 3. Adding a representation: {models - 1} + 1 of width {dim} at n = {rows:,}, "
        "linear CKA\n"
    )
    store, names = synth_store(root, models, dim, rows)
    log("incremental: the run of the first representations (the saved state)")
    base = run_job(root, store, [CKA], "--representations", *names[:-1], label="base")
    if "error" in base:
        print(f"The run of the first {models - 1} failed: {base['error']}\n")
        return
    log("incremental: full runs")
    full = best_of(lambda: run_job(root, store, [CKA], label="full"))
    log("incremental: incremental runs")
    incremental = best_of(
        lambda: run_job(root, store, [CKA], "--incremental-from", base["out"], label="incr")
    )
    rows_out = []
    for what, outcomes in (
        (f"`repalign run` of the first {models - 1} (the state reused below; one run)", [base]),
        (f"`repalign run` of all {models}", full),
        (f"`repalign run --incremental-from` that run, all {models}", incremental),
    ):
        good = [o for o in outcomes if "error" not in o]
        errors = [o["error"] for o in outcomes if "error" in o]
        rows_out.append(
            [
                what + (f"; failed: {errors[0]}" if errors else ""),
                ", ".join(f"{o['seconds']:.2f}" for o in good) or "—",
                ", ".join(f"{o['summary']['seconds']:.2f}" for o in good) or "—",
                ", ".join(f"{moments_seconds(o):.2f}" for o in good) or "—",
            ]
        )
    table(
        ["job", "end to end, from the shell (s)", "job, summary seconds (s)", "moments pass (s)"],
        rows_out,
    )
    if "error" in full[0] or "error" in incremental[0]:
        return
    reference = cka_matrix(read_table(full[0]["out"]), names)
    difference = max_difference(cka_matrix(read_table(incremental[0]["out"]), names), reference)
    pass_ratio = min(moments_seconds(o) for o in incremental if "error" not in o) / min(
        moments_seconds(o) for o in full if "error" not in o
    )
    wall_ratio = incremental[0]["seconds"] / full[0]["seconds"]
    print(
        f"Best runs: the incremental run takes {wall_ratio:.2f}× the full run end to end, and "
        f"its moments pass {pass_ratio:.2f}× the full pass (the new block row is "
        f"2/{models} = {2 / models:.2f} of the statistic's blocks; target ≤ 0.3×: "
        f"**{'met' if pass_ratio <= 0.3 else 'missed'}**). Largest difference between the two "
        f"tables: {difference:.1e} (1e-12: {'ok' if difference <= 1e-12 else '**over**'}). Each "
        "run in a new working folder.\n"
    )


def moments_seconds(job):
    return job["summary"]["pass_seconds"].get("moments", float("nan"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
    else:
        main()
