"""What the permutation null costs (issue 15): an all-pairs job of every linear measure with
``null: analytic`` against the same job with ``null: none``.

Data: `repalign.zoo.build_zoo(store, "synth", models=M, dim=d, rows=n, seed=0)`, float32, written
once. Each job runs in this process (`jobs.alignment.run_alignment`, executor local), the two
settings interleaved, ``--rounds`` times each; the figure is the job's own wall time (reading the
store, the moments pass, every pair's values and, with the null, its null). The values of the two
tables must be identical: the null adds columns and changes no value.

    .venv/bin/python benchmarks/nulls.py [--models 8] [--dim 512] [--rows 64000] [--rounds 3]
"""

import argparse
import tempfile
import time
from pathlib import Path

from jobs.alignment import run_alignment
from repalign.spec import parse_spec
from repalign.zoo import build_zoo

MEASURES = ["ka", "cka", "hsic", "procrustes", "cca", "svcca"]


def job_seconds(store, out, null):
    spec = parse_spec(
        {
            "store": str(store),
            "out": str(out),
            "measures": [{"name": name} for name in MEASURES],
            "executor": "local",
            "null": null,
        }
    )
    start = time.perf_counter()
    result = run_alignment(spec, quiet=True)
    return time.perf_counter() - start, result.table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rows", type=int, default=64_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store"
        build_zoo(store, "synth", models=args.models, dim=args.dim, rows=args.rows, seed=0)
        seconds = {"none": [], "analytic": []}
        tables = {}
        for round_ in range(args.rounds):
            for null in ("none", "analytic"):
                elapsed, tables[null] = job_seconds(store, Path(folder) / f"{null}-{round_}", null)
                seconds[null].append(elapsed)
        same = tables["none"]["value"].equals(tables["analytic"]["value"])
        with_null = sum(p is not None for p in tables["analytic"]["p_value"].to_pylist())
    print(
        f"{args.models} × {args.dim} at n = {args.rows:,}, measures {', '.join(MEASURES)}; "
        f"{with_null} values with a null; values identical: {same}"
    )
    print("| null | job seconds (each round) | best |")
    print("|:---|:---|---:|")
    for null, times in seconds.items():
        print(f"| {null} | {', '.join(f'{t:.2f}' for t in times)} | {min(times):.2f} |")
    ratio = min(seconds["analytic"]) / min(seconds["none"])
    print(f"\nanalytic ÷ none (best of each): {ratio:.3f} (target ≤ 1.3×, with the jackknife)")


if __name__ == "__main__":
    main()
