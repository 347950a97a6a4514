"""The stitching job: train a stitcher for every pair of a zoo, in this process or in parallel on
Ray (`choose_executor`), with the paper's Theorem 1 bound beside each (docs/theory.md §4.5).

A pair maps the representation ``source`` (``model.layer``) into the layer ``target`` of a
trained model, whose remaining layers and a softmax are the frozen head g₂. The risk is the
squared loss of §4.1 between the head's class probabilities and the one-hot label (the Brier
score); the softmax is ½-Lipschitz, so κ₂ is `repalign.stitching.lipschitz_bound` of the
whole head.

Rows: the zoo's training split is cut once more (seeded) into *fit* rows, on which S*, Ã₂, the
bound and the stitcher are fitted (reported as ``*_train``), and *validation* rows for early
stopping; the test split is only evaluated. On the fit rows the plug-in risk at S* never
exceeds the bound (the per-S inequality [E26]); on the test split the bound uses S* as fitted,
not refitted, and holds as well.

Each pair is one unit of a slot (`jobs.engine`; on Ray, an actor with one CPU), torch on one
thread, deterministic: the table is the same whatever the number of workers and executor.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits
from torch import nn

from jobs.engine import LocalSlots, forced_executor
from jobs.outputs import write_table_and_summary
from jobs.progress import Progress
from repalign.contract import RESULT_FILES
from repalign.errors import MisalignedError, RepalignError, StoreError
from repalign.measures.alignment import kernel_measure
from repalign.measures.kernel_products import FeatureProducts
from repalign.spec import StitchPair
from repalign.stats import GramState
from repalign.stitching import (
    head_outputs,
    least_squares_map_from_state,
    lipschitz_bound,
    rounded_theorem1_bound,
    squared_risk,
    theorem1_bound,
    theorem2_gap_bound,
    train_stitcher,
)
from repalign.store import open_store
from repalign.zoo.models import MODELS_FOLDER, deterministic_torch, load_model, load_targets

LOCAL_MAX_PAIRS = 8
"""A stitching job with no Ray cluster trains at most this many pairs in process, one after
another; a pair takes seconds on one thread, so more pairs pay for a local Ray's start."""
COLUMNS = [
    ("source", pa.string()),
    ("target", pa.string()),
    ("source_model", pa.string()),
    ("target_model", pa.string()),
    ("control", pa.bool_()),  # the source is an untrained network
    ("n_train", pa.int64()),
    ("n_validation", pa.int64()),
    ("n_test", pa.int64()),
    ("cka", pa.float64()),  # linear, biased, on the fit rows
    ("ka", pa.float64()),
    ("residual", pa.float64()),  # Ã₂ on the fit rows
    ("residual_rounding", pa.float64()),  # δ ≥ |rounding error of Ã₂|, residual_rounding
    ("residual_test", pa.float64()),  # mean ‖S* z₁ − z₂‖² on the test split, S* not refitted
    ("kappa", pa.float64()),
    ("target_risk_train", pa.float64()),
    ("target_risk_test", pa.float64()),
    ("target_accuracy_train", pa.float64()),
    ("target_accuracy_test", pa.float64()),
    ("bound_train", pa.float64()),  # (√R₂ + κ₂√Ã₂)², Theorem 1
    ("bound_test", pa.float64()),
    ("plugin_risk_train", pa.float64()),  # the stitched model at S*
    ("plugin_risk_test", pa.float64()),
    ("plugin_within_bound", pa.bool_()),  # plugin_risk_train ≤ the bound, rounding allowed for
    ("stitched_risk_train", pa.float64()),  # the trained stitcher
    ("stitched_risk_test", pa.float64()),
    ("stitched_accuracy_train", pa.float64()),
    ("stitched_accuracy_test", pa.float64()),
    ("penalty", pa.float64()),  # stitched_risk_test − target_risk_test
    ("gap_bound", pa.float64()),  # Theorem 2, where Lemma 3 applies (else null)
    ("epochs", pa.int64()),
    ("best_epoch", pa.int64()),
    ("status", pa.string()),
    ("reason", pa.string()),
]


@dataclass
class StitchingResult:
    """The job's table (one row per pair, `COLUMNS`), its summary and its parameters."""

    table: pa.Table
    summary: dict
    params: dict


def run_stitching(spec, *, ray_address=None, quiet=False):
    """Train every pair's stitcher of a `repalign.spec.StitchingSpec`, in process or on Ray.

    Parameters
    ----------
    spec : StitchingSpec
    ray_address : str, optional
        A Ray cluster to join; with none, `choose_executor` says where the pairs run.
    quiet : bool, default=False
        No progress bar.

    Returns
    -------
    StitchingResult
    """
    started = time.perf_counter()
    store = open_store(spec.store)
    pairs = spec.pairs or default_pairs(spec.store)
    for pair in pairs:
        for name in (pair.source, pair.target):
            store[name]
    load_targets(spec.store)  # fail here, not in every task, when the zoo has none
    executor, executor_reason = choose_executor(spec, len(pairs), ray_address)
    settings = spec.stitcher.model_dump()
    task = StitchPairs(spec.store, [(p.source, p.target) for p in pairs], settings)
    units = list(range(len(pairs)))
    if executor == "ray":
        import ray

        from jobs.ray_slots import Slots, start_ray

        start_ray(ray_address)
        workers = spec.workers or max(1, int(ray.available_resources().get("CPU", 1)))
        # one CPU a pair, as torch runs on one thread (`deterministic_torch`)
        slots = Slots(task, units, workers, cpus=1)
    else:
        # one after another: torch's and BLAS's thread counts are settings of the whole process
        workers = 1
        slots = LocalSlots(task, units, workers)
    with Progress(total=len(pairs), desc="stitching", unit="pair", disable=quiet or None) as bar:
        slots.run(bar, "stitching")
    states = ray.get(slots.states) if executor == "ray" else slots.states
    rows = [row for _, row in sorted(entry for state in states for entry in state or [])]
    nodes = {node for node in slots.nodes if node}  # Ray node ids of the actors that gave rows
    table = pa.table({name: pa.array([r[name] for r in rows], kind) for name, kind in COLUMNS})
    failed = [r for r in rows if r["status"] != "ok"]
    ok = [r for r in rows if r["status"] == "ok"]
    summary = {
        "pairs": len(rows),
        "failed": len(failed),
        "failures": {f"{r['source']} -> {r['target']}": r["reason"] for r in failed},
        "plugin_within_bound": sum(r["plugin_within_bound"] for r in ok),
        "workers": workers,
        "executor": executor,
        "executor_reason": executor_reason,
        "nodes": sorted(nodes),
        "seconds": round(time.perf_counter() - started, 3),
    }
    params = {
        "kind": "stitching",
        "store": str(spec.store),
        "pairs": [f"{p.source} -> {p.target}" for p in pairs],
        "stitcher": settings,
        "workers": workers,
        "risk": "mean squared distance of softmax probabilities to one-hot labels (Brier)",
    }
    return StitchingResult(table, summary, params)


def choose_executor(spec, pairs, ray_address=None):
    """Where the pairs are trained, ``"local"`` (this process) or ``"ray"``, and why.

    As the alignment job (`jobs.engine.forced_executor`): the spec's ``executor``, else Ray
    when there is a cluster; else in this process for at most `LOCAL_MAX_PAIRS` pairs, and on
    a local Ray beyond, where training pairs side by side on the cores (each on one thread)
    saves more than Ray's start costs.
    """
    forced = forced_executor(spec.executor, ray_address)
    if forced is not None:
        return forced
    if pairs > LOCAL_MAX_PAIRS:
        return "ray", f"{pairs} pairs (over {LOCAL_MAX_PAIRS}): trained side by side on Ray"
    return "local", f"no Ray cluster, and {pairs} pairs (at most {LOCAL_MAX_PAIRS}): in process"


def write_result(result, out):
    """Write ``stitching.parquet`` and ``stitching-summary.json`` into ``out`` (atomically)."""
    summary = {**result.summary, "params": result.params}
    return write_table_and_summary(out, RESULT_FILES["stitching"], result.table, summary)


# -- which pairs --------------------------------------------------------------------------------


def default_pairs(store_path):
    """Every model's hidden layers into every trained model, at matching relative depth.

    A hidden layer k of L (the layers before ``logits``) sits at relative depth k / L; each
    source layer goes into the target's layer of nearest relative depth (the deeper one on a
    tie). Sources include the untrained controls and the target itself (its own layer, the
    reference: Ã₂ = 0).
    """
    store = open_store(store_path)
    models = _saved_models(store_path)
    layers = {model: [n.split(".", 1)[1] for n in store.select([f"{model}.*"])] for model in models}
    hidden = {model: _hidden_layers(store, model, names) for model, names in layers.items()}
    pairs = []
    for target, record in models.items():
        if not record.get("trained", True) or not hidden[target]:
            continue
        for source in models:
            for k, layer in enumerate(hidden[source], start=1):
                depth = k / len(hidden[source])
                into = min(
                    range(1, len(hidden[target]) + 1),
                    key=lambda j: (abs(j / len(hidden[target]) - depth), -j),
                )
                pairs.append(
                    StitchPair(
                        source=f"{source}.{layer}", target=f"{target}.{hidden[target][into - 1]}"
                    )
                )
    if not pairs:
        raise StoreError(f"{store_path} has no trained model with hidden layers to stitch into.")
    return pairs


def _saved_models(store_path):
    folder = Path(store_path) / MODELS_FOLDER
    records = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    networks = {name: record for name, record in records.items() if "architecture" in record}
    if not networks:
        raise StoreError(
            f"{store_path} holds no saved networks ({MODELS_FOLDER}/): stitching runs the rest "
            "of a trained network from a stored layer, so it needs a zoo that saves its networks "
            "(`repalign zoo build --preset digits`); ingested embeddings and the synth and minilm "
            "presets have none."
        )
    return networks


def _hidden_layers(store, model, names):
    """The layers of ``model`` before its output, in the network's order."""
    order = load_model(store.path, model).layer_names
    return [layer for layer in order if layer in names and layer != order[-1]]


# -- one pair -----------------------------------------------------------------------------------


class StitchPairs:
    """The stitching job's task for `jobs.ray_slots.Slots`: unit i is pair i, and its state is
    the list ``[(i, row)]``, so that a slot's state is the rows of its pairs, in order."""

    def __init__(self, store_path, pairs, settings):
        self.store_path, self.pairs, self.settings = store_path, pairs, settings

    def compute(self, index):
        source, target = self.pairs[index]
        return [(index, stitch_pair(self.store_path, source, target, self.settings))]

    def rows(self, index):
        return 1


def stitch_pair(store_path, source, target, settings):
    """One row of the table: the stitcher of ``source`` into ``target`` and its bounds.

    Failures of the data (a constant representation, say) give a row with status "failed"
    and the reason; every other column is then null.
    """
    row = dict.fromkeys(name for name, _ in COLUMNS)
    source_model, target_model = source.split(".", 1)[0], target.split(".", 1)[0]
    row.update(source=source, target=target, source_model=source_model, target_model=target_model)
    try:
        # one thread for torch and for BLAS: a sum split over threads rounds differently, and
        # the table must not depend on where the pair ran
        with deterministic_torch(), threadpool_limits(limits=1):
            row.update(_stitch(store_path, source, target, settings), status="ok", reason="")
    except (RepalignError, np.linalg.LinAlgError) as exc:
        row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    return row


def _stitch(store_path, source, target, settings):
    store = open_store(store_path)
    targets = load_targets(store_path)
    fit, validation, test = _split(targets, settings)
    last = int(max(fit.max(), validation.max(), test.max())) + 1
    Z1, Z2 = (_read(store[name], targets, last) for name in (source, target))
    labels = targets.labels[:last]
    Y = np.eye(int(labels.max()) + 1)[labels]
    target_model, target_layer = target.split(".", 1)
    source_record = load_model(store_path, source.split(".", 1)[0]).record
    network = load_model(store_path, target_model)
    head = _head(network, target_layer)
    kappa = lipschitz_bound(head, Z2.shape[1])

    state = GramState.from_arrays([Z1[fit], Z2[fit]])
    products = FeatureProducts(state, 0, 1)
    cka = kernel_measure(products, "cka", "biased")
    ka = kernel_measure(products, "ka", None)
    best = least_squares_map_from_state(state, 0, 1, affine=settings["affine"])
    residual_test = squared_risk(best(Z1[test]), Z2[test])

    own = head_outputs(head, Z2)
    plugin = head_outputs(head, best(Z1))
    trained = train_stitcher(
        Z1[fit],
        Y[fit],
        head,
        affine=settings["affine"],
        init=best,
        validation=(Z1[validation], Y[validation]),
        optimizer=settings["optimizer"],
        max_epochs=settings["max_epochs"],
        patience=settings["patience"],
        learning_rate=settings["learning_rate"],
        seed=settings["seed"],
    )
    stitched = head_outputs(head, trained.map(Z1))
    risk_train, risk_test = squared_risk(own[fit], Y[fit]), squared_risk(own[test], Y[test])
    stitched_test = squared_risk(stitched[test], Y[test])
    plugin_train = squared_risk(plugin[fit], Y[fit])
    # at Ã₂ = 0 (a self-stitch) the plug-in risk equals the bound up to rounding only
    widened = rounded_theorem1_bound(
        risk_train, best.residual, kappa, rounding=best.rounding, terms=Y[fit].size
    )
    lemma3 = _forward_class(source_record, network, source, target)
    return {
        "control": not source_record.get("trained", True),
        "n_train": len(fit),
        "n_validation": len(validation),
        "n_test": len(test),
        "cka": cka,
        "ka": ka,
        "residual": best.residual,
        "residual_rounding": best.rounding,
        "residual_test": residual_test,
        "kappa": kappa,
        "target_risk_train": risk_train,
        "target_risk_test": risk_test,
        "target_accuracy_train": _accuracy(own[fit], labels[fit]),
        "target_accuracy_test": _accuracy(own[test], labels[test]),
        "bound_train": theorem1_bound(risk_train, best.residual, kappa),
        "bound_test": theorem1_bound(risk_test, residual_test, kappa),
        "plugin_risk_train": plugin_train,
        "plugin_risk_test": squared_risk(plugin[test], Y[test]),
        "plugin_within_bound": bool(plugin_train <= widened),
        "stitched_risk_train": squared_risk(stitched[fit], Y[fit]),
        "stitched_risk_test": stitched_test,
        "stitched_accuracy_train": _accuracy(stitched[fit], labels[fit]),
        "stitched_accuracy_test": _accuracy(stitched[test], labels[test]),
        "penalty": stitched_test - risk_test,
        "gap_bound": theorem2_gap_bound(risk_train, best.residual, kappa) if lemma3 else None,
        "epochs": trained.epochs,
        "best_epoch": trained.best_epoch,
    }


def _split(targets, settings):
    """Fit, validation and test rows: the training split cut by ``validation_fraction``."""
    train, test = targets.rows("train"), targets.rows("test")
    order = np.random.default_rng(settings["seed"]).permutation(len(train))
    held = max(1, round(settings["validation_fraction"] * len(train)))
    return np.sort(train[order[held:]]), np.sort(train[order[:held]]), test


def _read(representation, targets, rows):
    """The first ``rows`` rows, float64, checked against the targets' sample ids."""
    ids, values = representation.read_rows(0, rows)
    if not np.array_equal(ids, targets.sample_ids[:rows]):
        raise MisalignedError(
            f"{representation.name}: its sample ids differ from the zoo's targets "
            f"({MODELS_FOLDER}/targets.parquet) in the first {rows} rows."
        )
    return values.astype(np.float64)


def _head(network, layer):
    """The layers of ``network`` after ``layer``, then a softmax: g₂ on probabilities."""
    names = network.layer_names
    after = [network.stages[name] for name in names[names.index(layer) + 1 :]]
    return nn.Sequential(*after, nn.Softmax(dim=1)).double().eval()


def _forward_class(source_record, target_network, source, target):
    """Does Lemma 3 hold: every g₂∘S a head of model 1's own class after its layer?

    True when both models have the same architecture, the layers are the same, and the head
    begins with a dense linear layer (which absorbs any linear S); a convolution does not.
    """
    same = source_record["architecture"] == target_network.record["architecture"]
    layer = target.split(".", 1)[1]
    if not same or source.split(".", 1)[1] != layer:
        return False
    names = target_network.layer_names
    stage = target_network.stages[names[names.index(layer) + 1]]
    first = next(m for m in stage.modules() if not list(m.children()))
    return isinstance(first, nn.Linear)


def _accuracy(probabilities, labels):
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))
