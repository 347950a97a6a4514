"""A nightly comparison: one run of a scheduled alignment job, and what changed since the last.

`run_nightly` runs an alignment spec against the output folder of the schedule's previous
successful run (``previous``), in four steps:

1. Plan (`plan_run`). The manifests' hashes (`jobs.alignment.representation_digest`) say which
   selected representations are new, changed or removed since then. If every representation of
   the previous run's saved second moments is still selected and unchanged, the job runs
   incrementally (only the moment blocks of new representations are computed; the engine's
   other passes are recomputed in full). Otherwise it runs in full and the plan says why: a
   representation rewritten in place makes its saved moments stale.
2. The job itself (`jobs.alignment.run_alignment`), written with `jobs.alignment.write_result`.
3. Mean embeddings for drift. Every selected representation's random Fourier feature mean
   embedding (`repalign.approx.MeanEmbedding`) is saved, so that the next run can measure how
   far a rewritten representation moved although its old rows are gone:

       MMD²_b(old, new) ≈ ‖μ̂_old − μ̂_new‖²,   μ̂ = (1/n) Σᵢ φ(xᵢ)

   (`repalign.approx.approximate_mmd2`), which needs the same map φ on both sides: a
   representation seen before keeps its σ, seed and width; a new one gets σ from the median
   heuristic (`repalign.median_sigma`, on the same seeded subsample of at most 4,096 rows),
   seed `DRIFT_SEED` and `DRIFT_FEATURES` features. An unchanged representation's embedding
   is copied from the previous run (same hashes, same rows); a new or changed one costs a
   plain pass over its rows in blocks (`EMBEDDING_BLOCK_BYTES` of rows and features),
   O(n·d·features) time, on the driver (no Ray), plus a pass to pick the median heuristic's
   rows when it is new and has more than 4,096 rows.
4. The change report (`change_report`): the pairs whose value moved by more than a threshold
   between the previous table and this one, and the MMD² drift of each changed representation.

Outputs in OUT, besides those of the alignment job:

    drift/mean_embeddings.npz    names, dims, sigma, seed, features, blocks, rows, and per
                                 representation i: sums_<i> (Σφ) and squared_norms_<i>
                                 (Σ‖φₖ‖² per block k), the state of a `MeanEmbedding`
    drift/representations.json   per selected representation: digest, dim, rows, and sigma,
                                 seed, features, blocks, reused (from the previous run), or
                                 the reason no embedding was computed
    changes.json                 the change report (keys in `change_report`)
    nightly.json                 {"run_id", "tracking_uri", "plan"}, written once the run is
                                 logged (`jobs.sync`)
"""

import json
import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from jobs.alignment import (
    AlignmentResult,
    representation_digest,
    run_alignment,
    write_result,
)
from repalign.approx import RFF_BLOCKS, MeanEmbedding, RandomFourierFeatures, approximate_mmd2
from repalign.contract import ALIGNMENT_TABLE_FILE, CHANGES_FILE, atomic_write
from repalign.errors import InvalidParameterError, RepalignError
from repalign.measures.kernels import MEDIAN_MAX_ROWS, MEDIAN_SEED, resolve_sigma
from repalign.registry import pass_of
from repalign.store import open_store
from repalign.store.format import write_json_atomically

DEFAULT_THRESHOLD = 0.05
"""A pair "moved" when its value changed by more than this (absolute difference)."""
DRIFT_FEATURES = 2048
"""Random Fourier features of a new representation's mean embedding (16 blocks of 128)."""
DRIFT_SEED = 0
"""Seed of a new representation's random Fourier features."""
DRIFT_ESTIMATOR = "biased"
"""The MMD² estimator of the drift: ‖μ̂_old − μ̂_new‖², exactly 0 for identical samples."""
EMBEDDING_BLOCK_BYTES = 64 * 2**20
"""Float64 bytes of rows and their random features held at once while embedding one."""

DRIFT_FOLDER = "drift"
EMBEDDINGS_FILE = "mean_embeddings.npz"
MAPS_FILE = "representations.json"


@dataclass(frozen=True)
class Plan:
    """How a nightly run computes its matrix, and why; the representations that differ."""

    mode: str  # "incremental" or "full"
    reason: str
    new: list
    changed: list
    removed: list


@dataclass
class NightlyResult:
    """A nightly run: its plan, the alignment job's result, the change report, and timings."""

    plan: Plan
    alignment: AlignmentResult
    changes: dict
    embeddings: dict  # "computed", "reused": names; "seconds": the embedding pass


def run_nightly(spec, *, previous=None, threshold=DEFAULT_THRESHOLD, ray_address=None, quiet=False):
    """Run ``spec`` as a nightly comparison against the output folder ``previous``.

    Parameters
    ----------
    spec : repalign.spec.AlignmentSpec
        The scheduled job; its ``out`` receives every output (see the module docstring).
    previous : path-like, default=None
        The output folder of the schedule's last successful run; None on its first run.
    threshold : float, default=0.05
        A pair is reported as moved when |after − before| > threshold.
    ray_address : str, default=None
        As in `jobs.alignment.run_alignment`.
    quiet : bool, default=False
        No progress bars.

    Returns
    -------
    NightlyResult
        Not yet logged to MLflow: the command logs ``alignment`` and ``changes`` to one run.
    """
    threshold = _check_threshold(threshold)
    out = Path(spec.out)
    if previous is not None:
        previous = Path(previous)
        if not previous.is_dir():
            raise InvalidParameterError(
                f"the previous run's folder {previous} does not exist or is not a folder; "
                "pass the output folder of the schedule's last successful run, or no "
                "--previous on its first run."
            )
        if previous.resolve() == out.resolve():
            raise InvalidParameterError(
                f"the output folder must differ from the previous run's ({previous}): that "
                "run's outputs are what this one is compared with."
            )
    store = open_store(spec.store)
    names = store.select(spec.representations)
    plan = plan_run(spec, store, names, previous)
    before_table = _previous_table(previous)
    before_embeddings = load_mean_embeddings(previous) if previous is not None else {}
    result = run_alignment(
        spec,
        ray_address=ray_address,
        quiet=quiet,
        incremental_from=previous if plan.mode == "incremental" else None,
    )
    write_result(result, out)
    started = time.perf_counter()
    embeddings, maps, reused = _mean_embeddings(store, names, plan, before_embeddings)
    seconds = round(time.perf_counter() - started, 3)
    save_mean_embeddings(out, embeddings, maps)
    drift = {name: _drift(name, before_embeddings, embeddings, maps) for name in plan.changed}
    changes = change_report(plan, before_table, result.table, threshold, drift, previous)
    write_json_atomically(out / CHANGES_FILE, changes)
    computed = [name for name in embeddings if name not in reused]
    return NightlyResult(
        plan, result, changes, {"computed": computed, "reused": reused, "seconds": seconds}
    )


def plan_run(spec, store, names, previous):
    """Incremental or full, and why; which of ``names`` are new or changed, which removed.

    The previous run's digests are those of its mean embeddings (every representation it
    selected), else those of its saved second moments (a folder written by ``repalign run``).
    """
    if previous is None:
        return Plan("full", "no previous run: every representation is new", names, [], [])
    before = _previous_digests(previous)
    if before is None:
        return Plan(
            "full",
            f"{previous} holds no saved state of an earlier run: every representation is new",
            names,
            [],
            [],
        )
    new = [name for name in names if name not in before]
    changed = [
        name
        for name in names
        if name in before and representation_digest(store[name]) != before[name]
    ]
    removed = sorted(set(before) - set(names))
    moments = _saved_moment_digests(previous)
    if not any(pass_of(m) == "moments" for m in spec.measures):
        reason = "the job has no linear-kernel measure, so it has no second moments to reuse"
    elif moments is None:
        reason = f"{previous} holds no saved second moments (state/)"
    else:
        stale = [
            name
            for name in moments
            if name in names and representation_digest(store[name]) != moments[name]
        ]
        gone = [name for name in moments if name not in names]
        if not stale and not gone:
            detail = f"{len(new)} new: {', '.join(new)}" if new else "nothing new"
            return Plan(
                "incremental",
                f"no representation changed since {previous}; {detail}",
                new,
                changed,
                removed,
            )
        parts = []
        if stale:
            parts.append(f"changed since the previous run: {', '.join(stale)}")
        if gone:
            parts.append(f"no longer selected: {', '.join(gone)}")
        reason = "; ".join(parts) + " (their saved second moments are stale)"
    return Plan("full", reason, new, changed, removed)


def change_report(plan, before, after, threshold, drift, previous=None):
    """The change report of a nightly run (``changes.json``).

    Keys: ``plan``, ``reason``, ``new``, ``changed``, ``removed`` (from the `Plan`),
    ``previous`` (the folder compared with, or None), ``threshold``, ``moved``, ``drift``.

    ``moved`` lists the pairs whose status is "ok" in both tables and whose value changed by
    more than ``threshold``: {rep_a, rep_b, measure, kernel, estimator, before, after, delta},
    delta = after − before, sorted by |delta|, largest first. Pairs are matched by measure,
    kernel, estimator and the unordered pair of names (the order of rep_a and rep_b follows
    the job's order of representations, which an incremental run changes); rep_a and rep_b
    are those of ``after``. ``drift`` maps each changed representation to its MMD² drift.
    """
    moved = []
    if before is not None:
        values = {_pair_key(row): row["value"] for row in _ok_rows(before)}
        for row in _ok_rows(after):
            old = values.get(_pair_key(row))
            if old is not None and abs(row["value"] - old) > threshold:
                moved.append(
                    {
                        **{k: row[k] for k in ("rep_a", "rep_b", "measure", "kernel")},
                        "estimator": row["estimator"],
                        "before": old,
                        "after": row["value"],
                        "delta": row["value"] - old,
                    }
                )
        moved.sort(key=lambda m: (-abs(m["delta"]), m["measure"], m["rep_a"], m["rep_b"]))
    return {
        "plan": plan.mode,
        "reason": plan.reason,
        "new": plan.new,
        "changed": plan.changed,
        "removed": plan.removed,
        "previous": None if previous is None else str(previous),
        "threshold": threshold,
        "moved": moved,
        "drift": drift,
    }


def describe(nightly):
    """A few lines for a person: the plan, the table, the changes, the drift."""
    plan, summary, changes = nightly.plan, nightly.alignment.summary, nightly.changes
    lines = [
        f"plan: {plan.mode} ({plan.reason})",
        f"table: {nightly.alignment.table.num_rows} rows, {summary['missing_values']} missing; "
        f"moment blocks computed: {summary['blocks_computed']}",
        f"representations: {len(plan.new)} new, {len(plan.changed)} changed, "
        f"{len(plan.removed)} removed",
    ]
    moved = changes["moved"]
    lines.append(f"pairs moved by more than {changes['threshold']}: {len(moved)}")
    for m in moved[:5]:
        label = ":".join(part for part in (m["measure"], m["kernel"], m["estimator"]) if part)
        lines.append(
            f"  {label} {m['rep_a']} / {m['rep_b']}: {m['before']:.4g} -> {m['after']:.4g} "
            f"({m['delta']:+.4g})"
        )
    if len(moved) > 5:
        lines.append(f"  ... and {len(moved) - 5} more in changes.json")
    for name, entry in changes["drift"].items():
        if entry["mmd2"] is None:
            lines.append(f"drift of {name}: not measured ({entry['reason']})")
        else:
            lines.append(f"drift of {name}: MMD² {entry['mmd2']:.4g} ± {entry['std_err']:.2g}")
    embedded = nightly.embeddings
    lines.append(
        f"mean embeddings: {len(embedded['computed'])} computed in {embedded['seconds']} s, "
        f"{len(embedded['reused'])} reused from the previous run"
    )
    return lines


# -- mean embeddings ----------------------------------------------------------------------------


def feature_map(entry):
    """The `RandomFourierFeatures` of a saved map entry (dim, features, sigma, seed, blocks)."""
    return RandomFourierFeatures(
        entry["dim"], entry["features"], entry["sigma"], seed=entry["seed"], blocks=entry["blocks"]
    )


def mean_embedding(representation, rff):
    """The `MeanEmbedding` of every row of a stored representation under the map ``rff``.

    Rows are read in blocks whose float64 rows and features take at most
    `EMBEDDING_BLOCK_BYTES` (at least 256 rows).
    """
    embedding = MeanEmbedding(rff.n_features, rff.blocks)
    rows = max(256, EMBEDDING_BLOCK_BYTES // (8 * (rff.n_features + rff.dim)))
    for _, values in representation.batches(rows):
        embedding.add(rff.transform(values))
    return embedding


def save_mean_embeddings(out, embeddings, maps):
    """Write OUT/drift/mean_embeddings.npz and OUT/drift/representations.json.

    ``embeddings`` maps names to `MeanEmbedding`; ``maps`` maps every selected name to its
    entry (digest, dim, rows, and either the map's sigma, seed, features, blocks or a reason).
    """
    folder = Path(out) / DRIFT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    names = list(embeddings)
    arrays = {
        "names": np.array(names, dtype=str),
        "dims": np.array([maps[n]["dim"] for n in names], dtype=np.int64),
        "sigma": np.array([maps[n]["sigma"] for n in names], dtype=np.float64),
        "seed": np.array([maps[n]["seed"] for n in names], dtype=np.int64),
        "features": np.array([maps[n]["features"] for n in names], dtype=np.int64),
        "blocks": np.array([maps[n]["blocks"] for n in names], dtype=np.int64),
        "rows": np.array([embeddings[n].n for n in names], dtype=np.int64),
    }
    for i, name in enumerate(names):
        arrays[f"sums_{i}"] = embeddings[name].sums
        arrays[f"squared_norms_{i}"] = embeddings[name].squared_norms
    with atomic_write(folder / EMBEDDINGS_FILE) as temporary:
        np.savez(temporary, **arrays)
    write_json_atomically(folder / MAPS_FILE, maps)


def load_mean_embeddings(out):
    """The saved mean embeddings of a run's folder: name -> (`MeanEmbedding`, map entry).

    Empty when the folder holds none (a run of ``repalign run``, or no previous run).
    """
    path = Path(out) / DRIFT_FOLDER / EMBEDDINGS_FILE
    if not path.exists():
        return {}
    saved = {}
    with np.load(path) as arrays:
        for i, name in enumerate(arrays["names"].tolist()):
            entry = {
                key: int(arrays[plural][i])
                for key, plural in (("dim", "dims"), ("seed", "seed"), ("features", "features"))
            }
            entry["blocks"] = int(arrays["blocks"][i])
            entry["sigma"] = float(arrays["sigma"][i])
            embedding = MeanEmbedding(entry["features"], entry["blocks"])
            embedding.n = int(arrays["rows"][i])
            embedding.sums = arrays[f"sums_{i}"]
            embedding.squared_norms = arrays[f"squared_norms_{i}"]
            saved[name] = (embedding, entry)
    return saved


def _mean_embeddings(store, names, plan, before):
    """Every usable selected representation's mean embedding, its map entry, and the names
    whose embedding was copied from the previous run."""
    embeddings, maps, reused = {}, {}, []
    for name in names:
        representation = store[name]
        entry = {
            "digest": representation_digest(representation),
            "dim": representation.dim,
            "rows": representation.rows,
        }
        maps[name] = entry
        old = before.get(name)
        if old is not None and old[1]["dim"] != representation.dim:
            old = None  # a new width: the old map cannot read it
        if old is not None and name not in plan.changed and name not in plan.new:
            embeddings[name] = old[0]
            entry.update(_map_fields(old[1]), reused=True)
            reused.append(name)
            continue
        if reason := representation.unusable():
            entry["reason"] = reason
            continue
        try:
            if old is not None:
                fields = _map_fields(old[1])
            else:
                sigma = resolve_sigma(_median_rows(representation), "median", name=name)
                fields = {
                    "sigma": sigma,
                    "seed": DRIFT_SEED,
                    "features": DRIFT_FEATURES,
                    "blocks": RFF_BLOCKS,
                }
            embeddings[name] = mean_embedding(representation, feature_map({**entry, **fields}))
        except RepalignError as exc:
            entry["reason"] = str(exc)
            continue
        entry.update(fields, reused=False)
    return embeddings, maps, reused


def _map_fields(entry):
    return {key: entry[key] for key in ("sigma", "seed", "features", "blocks")}


def _median_rows(representation):
    """The rows `repalign.median_sigma` would use: all, or its seeded subsample."""
    n = representation.rows
    if n <= MEDIAN_MAX_ROWS:
        return representation.read_values(0, n)
    chosen = np.sort(np.random.default_rng(MEDIAN_SEED).choice(n, MEDIAN_MAX_ROWS, replace=False))
    parts, start = [], 0
    for _, values in representation.batches():
        inside = chosen[(chosen >= start) & (chosen < start + len(values))]
        parts.append(values[inside - start])
        start += len(values)
    return np.concatenate(parts)


def _drift(name, before, after, maps):
    """The MMD² between a changed representation's previous rows and its current ones."""
    if name not in before:
        return {"mmd2": None, "reason": f"the previous run saved no mean embedding of {name}"}
    old, old_entry = before[name]
    if name not in after:
        return {"mmd2": None, "reason": maps[name]["reason"]}
    if old_entry["dim"] != maps[name]["dim"]:
        return {
            "mmd2": None,
            "reason": f"{name} changed width ({old_entry['dim']} -> {maps[name]['dim']}): "
            "MMD² compares samples of one space",
        }
    estimate = approximate_mmd2(old, after[name], estimator=DRIFT_ESTIMATOR)
    return {"mmd2": estimate.value, "std_err": estimate.std_err, "sigma": old_entry["sigma"]}


# -- previous run -------------------------------------------------------------------------------


def _previous_digests(previous):
    """name -> digest of every representation of the previous run, or None if it saved none."""
    path = Path(previous) / DRIFT_FOLDER / MAPS_FILE
    if path.exists():
        return {name: entry["digest"] for name, entry in json.loads(path.read_text()).items()}
    return _saved_moment_digests(previous)


def _saved_moment_digests(previous):
    """name -> digest of the representations in the previous run's saved second moments."""
    folder = Path(previous) / "state"
    if not (folder / "moments.npz").exists() or not (folder / "representations.json").exists():
        return None
    return json.loads((folder / "representations.json").read_text())


def _previous_table(previous):
    if previous is None or not (Path(previous) / ALIGNMENT_TABLE_FILE).exists():
        return None
    return pq.read_table(Path(previous) / ALIGNMENT_TABLE_FILE)


def _ok_rows(table):
    return (row for row in table.to_pylist() if row["status"] == "ok")


def _pair_key(row):
    a, b = sorted((row["rep_a"], row["rep_b"]))
    return row["measure"], row["kernel"], row["estimator"], a, b


def _check_threshold(threshold):
    if (
        not isinstance(threshold, numbers.Real)
        or isinstance(threshold, bool)
        or not math.isfinite(threshold)
        or threshold <= 0
    ):
        raise InvalidParameterError(
            f"threshold must be a positive, finite number (the change in value that counts as a "
            f"move); got threshold={threshold!r}."
        )
    return float(threshold)
