"""The model-level matrix of an alignment table: how alike two models are, from their layers.

A representation is named ``<model>.<layer>``; the layers of a model are in depth order as the
heatmaps sort them (`repalign.alignment_tables.model_then_layer`). For each pair of models,
from one measure configuration:

- ``value``, ``layer_a``, ``layer_b``: the largest value over their layer pairs, and which
  layers give it (the score the platonic-representation work reports for two models);
- ``p_value``: a p-value for that maximum itself, not for the one pair that reached it. Under
  the null that the rows of the two models are unpaired, P(max ≥ v) ≤ Σ P(value_ab ≥ v) over
  the m layer pairs (a union bound, valid however the layers depend on each other), each term
  the upper tail at v of that pair's permutation null (its null_mean and null_std, by the gamma
  approximation of `repalign.measures.nulls`). Null when a layer pair lacks a null;
- ``matched_mean``: the mean value along matched depth: for i = 0 … L − 1, L the smaller layer
  count, the layers at relative depth i/(L − 1) of each model (the nearest one), as one
  would pair the layers of two networks of different depths;
- ``layer_pairs``: m, the layer pairs with a value.

A model against itself is left out. (docs/theory.md §2.10 for the null.)
"""

import numpy as np
import pyarrow as pa
from scipy.special import gammaincc

from repalign.alignment_tables import as_alignment_table, configuration_rows, model_then_layer
from repalign.arrow_rows import table_from_rows

MODEL_SCHEMA = pa.schema(
    [
        ("model_a", pa.string()),
        ("model_b", pa.string()),
        ("value", pa.float64()),
        ("layer_a", pa.string()),
        ("layer_b", pa.string()),
        ("p_value", pa.float64()),
        ("matched_mean", pa.float64()),
        ("layer_pairs", pa.int64()),
    ]
)
"""The model-level table: one row per unordered pair of distinct models, in model order."""


def model_table(table, *, measure, kernel, estimator):
    """The model-level matrix (`MODEL_SCHEMA`) of one configuration of an alignment table."""
    rows = configuration_rows(as_alignment_table(table), measure, kernel, estimator)
    by_pair = {}
    for row in rows.to_pylist():
        if row["value"] is not None and row["rep_a"] != row["rep_b"]:
            by_pair[row["rep_a"], row["rep_b"]] = by_pair[row["rep_b"], row["rep_a"]] = row
    names = model_then_layer({r for pair in by_pair for r in pair})
    layers = {}
    for name in names:
        layers.setdefault(name.partition(".")[0], []).append(name)
    models = list(layers)
    found = []
    for i, model_a in enumerate(models):
        for model_b in models[i + 1 :]:
            pairs = [
                by_pair[a, b] for a in layers[model_a] for b in layers[model_b] if (a, b) in by_pair
            ]
            if pairs:
                found.append(_model_pair(model_a, model_b, pairs, layers, by_pair))
    return table_from_rows(found, MODEL_SCHEMA)


def _model_pair(model_a, model_b, pairs, layers, by_pair):
    best = max(pairs, key=lambda row: row["value"])
    a, b = (best["rep_a"], best["rep_b"])
    if a.partition(".")[0] != model_a:
        a, b = b, a
    return {
        "model_a": model_a,
        "model_b": model_b,
        "value": best["value"],
        "layer_a": a.partition(".")[2],
        "layer_b": b.partition(".")[2],
        "p_value": max_p_value(best["value"], pairs),
        "matched_mean": _matched_mean(layers[model_a], layers[model_b], by_pair),
        "layer_pairs": len(pairs),
    }


def max_p_value(maximum, pairs):
    """min(1, Σ P(valueₐᵦ ≥ maximum)) over the layer pairs' permutation nulls: the gamma with
    each pair's null mean μ and standard deviation σ, shape μ²/σ², scale σ²/μ. None if a pair
    has no null."""
    total = 0.0
    for row in pairs:
        mean, std = row.get("null_mean"), row.get("null_std")
        if mean is None or std is None or not (mean > 0 and std > 0):
            return None
        total += float(gammaincc(mean * mean / (std * std), max(maximum, 0.0) * mean / (std * std)))
    return min(1.0, total)


def _matched_mean(layers_a, layers_b, by_pair):
    """The mean value of the layers at the same relative depth (nearest layer); None if one of
    those pairs has no value."""
    count = min(len(layers_a), len(layers_b))
    depths = np.linspace(0.0, 1.0, count) if count > 1 else np.array([1.0])
    values = []
    for depth in depths:
        a = layers_a[round(depth * (len(layers_a) - 1))]
        b = layers_b[round(depth * (len(layers_b) - 1))]
        if (a, b) not in by_pair:
            return None
        values.append(by_pair[a, b]["value"])
    return float(np.mean(values))
