"""What drawing a run's heatmaps costs (issue 13, item 2: "heatmaps are drawn once, quickly").

An alignment run logs, per measure configuration, a PNG heatmap, an interactive page, the
calibrated PNG where the configuration has a null, and the model-level PNG
(`repalign.heatmap_files.write_heatmaps`). A job command draws them while its logging child
imports MLflow; the demo draws them before it logs. This times each file's drawing and the
whole folder, in this process, on the table of a `repalign.pairwise` job over ``--models`` ×
``--layers`` random representations (every linear measure, analytic null), made once before
the clock starts. Best of ``--rounds``.

To compare two revisions, run the script of one with the other's code first on the path:

    git worktree add /tmp/old <rev>
    PYTHONPATH=/tmp/old .venv/bin/python benchmarks/heatmaps.py
    .venv/bin/python benchmarks/heatmaps.py [--models 15] [--layers 4] [--rounds 3]
"""

import argparse
import io
import tempfile
import time

import numpy as np

import repalign
from repalign.heatmap_files import write_heatmaps
from repalign.heatmap_html import heatmap_html
from repalign.models import model_table
from repalign.plots import alignment_heatmap, model_heatmap

MEASURES = ["ka", "cka", "hsic", "procrustes", "cca", "svcca"]


def job_table(models, layers, rows=300, width=24):
    rng = np.random.default_rng(0)
    arrays = {
        f"model{m}.layer{layer}": rng.standard_normal((rows, width))
        for m in range(models)
        for layer in range(layers)
    }
    return repalign.pairwise(arrays, measures=MEASURES, null="analytic")


def best_seconds(work, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def saved(figure):
    figure.savefig(io.BytesIO(), format="png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=15)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    table = job_table(args.models, args.layers)
    config = {"measure": "cka", "kernel": "linear", "estimator": "biased"}
    models = model_table(table, **config)
    parts = {
        "alignment PNG (draw and save)": lambda: saved(alignment_heatmap(table, **config)),
        "calibrated PNG": lambda: saved(alignment_heatmap(table, **config, calibrated=True)),
        "interactive page": lambda: heatmap_html(table, **config),
        "model-level PNG": lambda: saved(model_heatmap(models, title="models", label="cka")),
    }
    with tempfile.TemporaryDirectory() as folder:
        parts["the whole folder (write_heatmaps)"] = lambda: write_heatmaps(table, folder)
        names = args.models * args.layers
        print(f"{names} representations ({args.models} models), {len(MEASURES)} configurations")
        print(f"repalign at {repalign.__file__}\n")
        print(f"| file | best of {args.rounds} (s) |")
        print("|:---|---:|")
        for part, work in parts.items():
            print(f"| {part} | {best_seconds(work, args.rounds):.3f} |")


if __name__ == "__main__":
    main()
