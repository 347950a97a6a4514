"""The demo: the alignment matrix of the built-in digits model zoo.

On first use it trains the zoo (`repalign.zoo`, preset ``digits``: MLPs and CNNs trained on
scikit-learn's digits from three seeds, plus untrained controls) into a cache folder; then it
prints the linear-CKA matrix between every network's last hidden layer, and every measure of
`repalign.measures` for a few telling pairs.
"""

import os
import time
from pathlib import Path

from repalign import measures
from repalign.store import open_store
from repalign.zoo import build_zoo

PAIR_MEASURES = {
    "KA": measures.kernel_alignment,
    "CKA": measures.cka,
    "CKA song": lambda X, Y: measures.cka(X, Y, estimator="song"),
    "CKA rbf": lambda X, Y: measures.cka(X, Y, kernel="rbf"),
    "Procrustes": measures.procrustes,
    "SVCCA": measures.svcca,
    "mutual kNN": measures.mutual_knn,
    "CKNNA": measures.cknna,
}
PAIRS = {
    "same architecture, other seed": ("mlp-w64-s0.fc3", "mlp-w64-s1.fc3"),
    "MLP against CNN": ("mlp-w64-s0.fc3", "cnn-c8-s0.conv2"),
    "trained against untrained": ("mlp-w64-s0.fc3", "mlp-w64-init.fc3"),
    "first against last layer": ("mlp-w64-s0.fc1", "mlp-w64-s0.logits"),
}


def default_store():
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "repalign" / "zoo-digits"


def ensure_zoo(path):
    """Open the digits zoo at ``path``, building it first if it is missing or incomplete."""
    path = Path(path)
    if path.is_dir():
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


def cka_matrix(store, names):
    arrays = {name: store.read(name)[1] for name in names}
    return [[measures.cka(arrays[a], arrays[b]) for b in names] for a in names]


def format_matrix(labels, matrix, notes):
    """Rows numbered 1..M, columns by number; cells as .xx (1.0 when it rounds to 1)."""
    width = max(len(label) for label in labels)
    header = " " * (width + 5) + "".join(f"{i:>4}" for i in range(1, len(labels) + 1))
    lines = [header]
    for i, (label, row, note) in enumerate(zip(labels, matrix, notes, strict=True), start=1):
        cells = "".join(f"{value:>4.2f}"[1:].rjust(4) if value < 0.995 else " 1.0" for value in row)
        lines.append(f"{i:>3}. {label:<{width}}{cells}   {note}")
    return "\n".join(lines)


def format_pairs(store):
    columns = [(m, max(len(m), 6)) for m in PAIR_MEASURES]
    left = max(len(f"{a} ~ {b}") for a, b in PAIRS.values())
    header = " ".join([f"{'pair':<{left}}", *(f"{m:>{w}}" for m, w in columns)])
    lines = [header, "-" * len(header)]
    for description, (a, b) in PAIRS.items():
        X, Y = store.read(a)[1], store.read(b)[1]
        cells = (f"{PAIR_MEASURES[m](X, Y):>{w}.3f}" for m, w in columns)
        lines.append(" ".join([f"{a + ' ~ ' + b:<{left}}", *cells]) + f"   {description}")
    return "\n".join(lines)


def run(store_path=None):
    path = Path(store_path) if store_path else default_store()
    store, build_seconds = ensure_zoo(path)
    n = next(iter(store.representations.values())).rows
    origin = f"built in {build_seconds:.0f} s" if build_seconds is not None else "cached"
    print(
        f"repalign demo: the digits model zoo at {path} ({origin}): "
        f"{len(store.representations)} representations of n = {n} images\n"
    )
    layers = last_hidden_layers(store)
    accuracy = {
        model: (store[name].source or {}).get("test_accuracy") for model, name in layers.items()
    }
    notes = [f"test accuracy {a:.3f}" if a is not None else "" for a in accuracy.values()]
    print("Linear CKA between every network's last hidden layer:")
    print(format_matrix(list(layers.values()), cka_matrix(store, list(layers.values())), notes))
    print("\nEvery measure for a few pairs:")
    print(format_pairs(store))
    print(
        "\nSeeds of one architecture agree more than architectures do; untrained networks "
        "agree with\ntrained ones mostly through the input they share."
    )
