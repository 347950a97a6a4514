"""The demo: the all-pairs alignment job on the built-in digits model zoo.

On first use it trains the zoo (`repalign.zoo`, preset ``digits``: MLPs and CNNs trained on
scikit-learn's digits from three seeds, plus untrained controls) into a cache folder. Then it
runs the alignment job (`jobs.alignment`) over all 60 representations (in this process: it is
small, `jobs.alignment.choose_executor`), logs it where MLflow logs by default (mlflow.db in the
working folder, `repalign.tracking.default_store`), prints the linear-CKA matrix between every
network's last hidden layer and every measure for a few telling pairs. Then it trains stitchers
for a few pairs (`jobs.stitching`), prints each with the paper's Theorem 1 bound beside it, and
says how to open the MLflow UI on both runs.
"""

import os
import time
from pathlib import Path

from jobs import stitching
from jobs.alignment import run_alignment, write_result
from jobs.outputs import log_libraries_to
from jobs.uploader import job_tags
from repalign.cache import cache_folder
from repalign.contract import ALIGNMENT_TABLE_FILE, STITCHING_TABLE_FILE
from repalign.spec import parse_spec
from repalign.store import open_store
from repalign.tracking import default_store, log_alignment_run, log_stitching_run
from repalign.zoo import build_zoo
from repalign.zoo.models import MODELS_FOLDER, TARGETS_FILE

MEASURES = [
    {"name": "ka"},
    {"name": "cka"},
    {"name": "cka", "estimator": "song"},
    {"name": "cka", "kernel": "rbf"},
    {"name": "mutual_knn"},
    {"name": "cknna"},
]
COLUMNS = {
    "KA": ("ka", "linear", ""),
    "CKA": ("cka", "linear", "biased"),
    "CKA song": ("cka", "linear", "song"),
    "CKA rbf": ("cka", "rbf", "biased"),
    "mutual kNN": ("mutual_knn", "linear", ""),
    "CKNNA": ("cknna", "linear", ""),
}
PAIRS = {
    "same architecture, other seed": ("mlp-w64-s0.fc3", "mlp-w64-s1.fc3"),
    "MLP against CNN": ("cnn-c8-s0.conv2", "mlp-w64-s0.fc3"),
    "trained against untrained": ("mlp-w64-init.fc3", "mlp-w64-s0.fc3"),
    "first against last layer": ("mlp-w64-s0.fc1", "mlp-w64-s0.logits"),
}
STITCHES = {
    "itself": ("mlp-w64-s0.fc3", "mlp-w64-s0.fc3"),
    "other seed": ("mlp-w64-s1.fc3", "mlp-w64-s0.fc3"),
    "CNN into MLP": ("cnn-c8-s0.conv2", "mlp-w64-s0.fc3"),
    "wider MLP into CNN": ("mlp-w128-s0.fc3", "cnn-c8-s0.conv2"),
    "untrained control": ("mlp-w64-init.fc3", "mlp-w64-s0.fc3"),
}
EXPERIMENT = "digits-zoo"


def ensure_zoo(path):
    """Open the digits zoo at ``path``, building it first if it is missing or incomplete."""
    path = Path(path)
    if path.is_dir() and (path / MODELS_FOLDER / TARGETS_FILE).exists():
        store = open_store(path)
        if all(name in store.representations for pair in PAIRS.values() for name in pair):
            return store, None
    start = time.perf_counter()
    build_zoo(path, "digits", overwrite=True)
    return open_store(path), time.perf_counter() - start


def last_hidden_layers(store):
    """model name → its last representation before the logits, in store order."""
    layers = {}
    for name in store.representations:
        model, layer = name.rsplit(".", 1)
        if layer != "logits":
            layers[model] = name
    return layers


def format_matrix(labels, matrix, notes):
    """Rows numbered 1..M, columns by number; cells as .xx, -.xx or 1.0 (when it rounds to 1),
    and — for a missing value."""
    width = max(len(label) for label in labels)
    header = " " * (width + 5) + "".join(f"{i:>4}" for i in range(1, len(labels) + 1))
    lines = [header]
    for i, (label, row, note) in enumerate(zip(labels, matrix, notes, strict=True), start=1):
        cells = "".join(_cell(v) for v in row)
        lines.append(f"{i:>3}. {label:<{width}}{cells}   {note}".rstrip())
    return "\n".join(lines)


def _cell(value):
    if value is None:
        return "   —"
    if value >= 0.995:
        return " 1.0"
    return f"{value:.2f}".replace("0.", ".", 1).rjust(4)


def format_pairs(values):
    columns = [(m, max(len(m), 6)) for m in COLUMNS]
    left = max(len(f"{a} ~ {b}") for a, b in PAIRS.values())
    header = " ".join([f"{'pair':<{left}}", *(f"{m:>{w}}" for m, w in columns)])
    lines = [header, "-" * len(header)]
    for description, (a, b) in PAIRS.items():
        cells = (f"{values[(*COLUMNS[m], a, b)]:>{w}.3f}" for m, w in columns)
        lines.append(" ".join([f"{a + ' ~ ' + b:<{left}}", *cells]) + f"   {description}")
    return "\n".join(lines)


def format_stitches(rows):
    """One line per stitch: alignment, residual, the target's and the stitched risk, the bound."""
    header = (
        f"{'source -> target':<37} {'CKA':>5} {'Ã₂':>7} {'κ₂':>5} {'R₂':>6} {'R(S*)':>6} "
        f"{'trained':>7} {'bound':>7} {'acc₂':>5} {'acc':>5}"
    )
    lines = [header, "-" * len(header)]
    for description, row in rows:
        pair = f"{row['source']} -> {row['target']}"
        lines.append(
            f"{pair:<37} {row['cka']:>5.3f} {row['residual_test']:>7.3f} {row['kappa']:>5.2f} "
            f"{row['target_risk_test']:>6.3f} {row['plugin_risk_test']:>6.3f} "
            f"{row['stitched_risk_test']:>7.3f} {row['bound_test']:>7.3f} "
            f"{row['target_accuracy_test']:>5.3f} {row['stitched_accuracy_test']:>5.3f}"
            f"   {description}"
        )
    return "\n".join(lines)


def run_stitches(store_path, out, tracking_uri, artifacts, quiet):
    spec = parse_spec(
        {
            "kind": "stitching",
            "store": str(store_path),
            "out": str(out),
            "experiment": EXPERIMENT,
            "pairs": [{"source": a, "target": b} for a, b in STITCHES.values()],
        }
    )
    result = stitching.run_stitching(spec, quiet=quiet)
    stitching.write_result(result, out)
    run_id = log_stitching_run(
        result.table,
        params=result.params,
        summary=result.summary,
        experiment=EXPERIMENT,
        tracking_uri=tracking_uri,
        tags=job_tags(store_path),
        artifact_location=artifacts,
    )
    rows = list(zip(STITCHES, result.table.to_pylist(), strict=True))
    print(
        "\nStitching (test split, squared loss of the class probabilities): the target's own "
        "risk R₂,\nthe stitched model at the least-squares map S* and after training, and "
        "Theorem 1's bound\n(√R₂ + κ₂√Ã₂)², Ã₂ the mean squared residual of S* (fitted on "
        "training rows):"
    )
    print(format_stitches(rows))
    print(
        "Ã₂ is in the units of the target layer: compare it between stitches into one target. "
        "A bound\nabove 2 says nothing here, as this risk never exceeds 2."
    )
    return run_id


def run(store_path=None, out=None, quiet=False):
    store_path = Path(store_path) if store_path else cache_folder() / "zoo-digits"
    out = Path(out) if out else store_path.parent / f"{store_path.name}-alignment"
    store, build_seconds = ensure_zoo(store_path)
    spec = parse_spec(
        {"store": str(store_path), "out": str(out), "experiment": EXPERIMENT, "measures": MEASURES}
    )
    log_libraries_to(out)
    result = run_alignment(spec, quiet=quiet)
    write_result(result, out)
    tracking_uri, artifacts = default_store()
    run_id = log_alignment_run(
        result.table,
        params=result.params,
        summary=result.summary,
        experiment=EXPERIMENT,
        tracking_uri=tracking_uri,
        tags=job_tags(store_path),
        artifact_location=artifacts,
    )
    rows = result.table.to_pylist()
    values = {(r["measure"], r["kernel"], r["estimator"], r["rep_a"], r["rep_b"]): r for r in rows}
    values.update({(m, k, e, b, a): row for (m, k, e, a, b), row in values.items()})
    origin = f"built in {build_seconds:.0f} s" if build_seconds is not None else "cached"
    print(
        f"repalign demo: the digits model zoo at {store_path} ({origin}): "
        f"{len(store.representations)} representations of n = {result.summary['n']} images, "
        f"{result.table.num_rows:,} values in {result.summary['seconds']:.0f} s "
        f"({'in this process' if result.summary['executor'] == 'local' else 'on Ray'})\n"
    )
    layers = list(last_hidden_layers(store).values())
    cka = [[values[("cka", "linear", "biased", a, b)] for b in layers] for a in layers]
    notes = []
    for name in layers:
        accuracy = (store[name].source or {}).get("test_accuracy")
        notes.append(f"test accuracy {accuracy:.3f}" if accuracy is not None else "")
    print("Linear CKA between every network's last hidden layer:")
    print(format_matrix(layers, [[r["value"] for r in row] for row in cka], notes))
    chance = [r for row in cka for r in row if r["q_value"] is not None and r["q_value"] >= 0.05]
    print(
        "\nThe same, calibrated against its permutation null, (CKA − null mean)/(1 − null mean): "
        "0 for\nnetworks whose layers are unrelated, whatever their widths "
        f"(docs/theory.md §2.10); {len(chance) // 2} pairs\nhave q ≥ 0.05, no more alike than "
        "chance:"
    )
    calibrated = [[r["calibrated"] for r in row] for row in cka]
    print(format_matrix(layers, calibrated, [""] * len(layers)))
    print("\nEvery measure for a few pairs:")
    print(format_pairs({key: row["value"] for key, row in values.items()}))
    stitch_run = run_stitches(store_path, out, tracking_uri, artifacts, quiet)
    print(
        f"\nThe whole tables: {out / ALIGNMENT_TABLE_FILE}, {out / STITCHING_TABLE_FILE}; MLflow "
        f"runs {run_id} (alignment) and {stitch_run} (stitching), logged where MLflow logs by "
        f"default: {tracking_uri} (mlflow.db in this folder; every job run here without "
        "--tracking-uri logs there too). To browse them, run in this folder the command below "
        "and open the address it prints (MLflow 3 opens in its GenAI view: choose 'Model "
        "training' at the top of its sidebar, then the experiment digits-zoo):"
    )
    print(f"  {Path(os.sys.executable).parent / 'repalign'} ui")
