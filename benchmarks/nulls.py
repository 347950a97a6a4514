"""What the permutation null and the jackknife cost (issue 15): an all-pairs job of every linear
measure with ``null: analytic``, and with ``null: analytic`` and ``jackknife: 16``, against the
same job with ``null: none`` and no jackknife.

Data: `repalign.zoo.build_zoo(store, "synth", models=M, dim=d, rows=n, seed=0)`, float32, written
once. Each job runs in this process (`jobs.alignment.run_alignment`, executor local), the three
settings interleaved, ``--rounds`` times each; the figure is the job's own wall time (reading the
store, the moments pass, every pair's values and what each setting adds), and its peak resident
memory is that of the whole process so far (ru_maxrss), so the settings run in order of need.
The values of the tables must agree: the null adds columns, and the jackknife sums the same
rows in groups (rounding only).

    .venv/bin/python benchmarks/nulls.py [--models 8] [--dim 512] [--rows 64000] [--rounds 3]
        [--measures ka cka ...]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from jobs.alignment import run_alignment
from repalign.spec import parse_spec
from repalign.zoo import build_zoo

LINEAR = ["ka", "cka", "hsic", "procrustes", "cca", "svcca"]


SETTINGS = {
    "plain": {"null": "none"},
    "null": {"null": "analytic"},
    "null + jackknife 16": {"null": "analytic", "jackknife": 16},
}


def job_seconds(store, out, setting, measures):
    content = {"store": str(store), "out": str(out), "executor": "local", **SETTINGS[setting]}
    spec = parse_spec({**content, "measures": [{"name": name} for name in measures]})
    start = time.perf_counter()
    result = run_alignment(spec, quiet=True)
    return time.perf_counter() - start, result.table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rows", type=int, default=64_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--measures", nargs="+", default=LINEAR, help="default: every linear measure"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store"
        build_zoo(store, "synth", models=args.models, dim=args.dim, rows=args.rows, seed=0)
        seconds = {setting: [] for setting in SETTINGS}
        peaks, tables = {}, {}
        for round_ in range(args.rounds):
            for setting in SETTINGS:
                out = Path(folder) / f"{len(seconds[setting])}-{round_}"
                elapsed, tables[setting] = job_seconds(store, out, setting, args.measures)
                seconds[setting].append(elapsed)
                peaks.setdefault(setting, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        plain = np.array(tables["plain"]["value"].to_numpy(zero_copy_only=False), dtype=float)
        differences = {
            s: np.nanmax(np.abs(np.array(t["value"].to_numpy(zero_copy_only=False), float) - plain))
            for s, t in tables.items()
        }
        with_null = sum(p is not None for p in tables["null"]["p_value"].to_pylist())
        with_error = sum(
            e is not None for e in tables["null + jackknife 16"]["std_err"].to_pylist()
        )
    print(
        f"{args.models} × {args.dim} at n = {args.rows:,}, measures {', '.join(args.measures)}; "
        f"{with_null} values with a null, {with_error} with a std_err"
    )
    print(
        "| setting | job seconds (each round) | best | ÷ plain | peak RSS after its first run "
        "| largest value difference from plain |"
    )
    print("|:---|:---|---:|---:|---:|---:|")
    for setting, times in seconds.items():
        ratio = min(times) / min(seconds["plain"])
        print(
            f"| {setting} | {', '.join(f'{t:.2f}' for t in times)} | {min(times):.2f} | "
            f"{ratio:.3f}× | {peaks[setting] / 2**20:.2f} GiB | {differences[setting]:.1e} |"
        )
    print("\ntarget (issue 15): null + jackknife ≤ 1.3× plain")


if __name__ == "__main__":
    main()
