"""What the Monte Carlo permutation null costs (issue 15): each job with ``null: permutation``
and ``permutations: B`` (100 by default) against the same job with ``null: none``.

The jobs (`jobs.alignment.run_alignment`, executor local, in this process), one per line of
`JOBS`: KA, CKA and HSIC at 8 × 512 (the moments pass and O(d²) per pair), Procrustes and CCA
at 8 × 128 (an SVD per pair), and exact RBF CKA, random-feature RBF CKA and mutual k-NN, whose
passes cost O(n²) or more, at 8 × 64. Data:
`repalign.zoo.build_zoo(store, "synth", ..., seed=0)`, float32, written once per size. Each job
runs its plain setting, then its permutation setting, then the plain one again; the figure is
the job's own wall time (reading the store, its passes, every pair's values and, with the null,
its B draws), and the plain figure the faster of its two runs. Expected: about B + 1 times the
plain job, less where a job's fixed costs (the pilot means, the bandwidths, the feature maps,
the table) are paid once. The observed values must be the same in both settings.

    .venv/bin/python benchmarks/permutation_null.py [--permutations 100] [--jobs linear rbf ...]
"""

import argparse
import tempfile
import time
from pathlib import Path

from jobs.alignment import run_alignment
from repalign.spec import parse_measure, parse_spec
from repalign.zoo import build_zoo

JOBS = {
    "linear": {"measures": ["ka", "cka", "hsic"], "models": 8, "dim": 512, "rows": 8_000},
    "spectral": {"measures": ["procrustes", "cca"], "models": 8, "dim": 128, "rows": 8_000},
    "rbf": {"measures": ["cka:rbf"], "models": 8, "dim": 64, "rows": 2_000},
    "rff": {"measures": ["cka:rbf,approx=rff,features=256"], "models": 8, "dim": 64, "rows": 2_000},
    "knn": {"measures": ["mutual_knn,k=10"], "models": 8, "dim": 64, "rows": 2_000},
}


def job(store, out, measures, **setting):
    content = {"store": str(store), "out": str(out), "executor": "local", **setting}
    spec = parse_spec({**content, "measures": [parse_measure(m) for m in measures]})
    start = time.perf_counter()
    result = run_alignment(spec, quiet=True)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    args = parser.parse_args()
    print("| job | n | plain job (s) | with `null: permutation`, B = "
          f"{args.permutations} (s) | ratio | per draw ÷ plain job | draws' share |")  # fmt: skip
    print("|:---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        stores = {}
        for name in args.jobs:
            sizes = JOBS[name]
            key = (sizes["models"], sizes["dim"], sizes["rows"])
            if key not in stores:
                stores[key] = Path(folder) / f"store-{len(stores)}"
                build_zoo(stores[key], "synth", models=key[0], dim=key[1], rows=key[2], seed=0,
                          progress=False)  # fmt: skip
            store, measures = stores[key], sizes["measures"]
            plain, first = job(store, Path(folder) / f"{name}-plain", measures, null="none")
            null, drawn = job(store, Path(folder) / f"{name}-null", measures,
                              null="permutation", permutations=args.permutations)  # fmt: skip
            again, _ = job(store, Path(folder) / f"{name}-again", measures, null="none")
            plain = min(plain, again)
            same = first.table.column("value").equals(drawn.table.column("value"))
            if not same:
                raise SystemExit(f"{name}: the values differ between the two settings")
            draws = drawn.summary["pass_seconds"]["permutations"]
            label = f"{name} ({sizes['models']} × {sizes['dim']}; {', '.join(measures)})"
            print(f"| {label} | {sizes['rows']:,} | {plain:.2f} | {null:.1f} | {null / plain:.1f}× "
                  f"| {draws / args.permutations / plain:.2f} | {draws / null:.0%} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
