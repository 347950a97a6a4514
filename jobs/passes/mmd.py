"""The MMD pass: two-sample MMD² between representations of equal width, or between each
representation and its namesake in another store (``against``).

Exact estimators sum kernel tiles (`jobs.tasks.MmdTileTask`); the linear-time one sums over
row pairs (2i, 2i+1); ``approx="rff"`` takes the distance of random-feature mean embeddings
(a mergeable sum, `jobs.tasks.EmbeddingTask`). A constant representation (a point mass) has an
MMD² and is measured.
"""

from itertools import combinations_with_replacement

import numpy as np

from jobs.passes.rows import TILE_ROWS, UNIT_BYTES, gather, tile_ranges
from jobs.tasks import EmbeddingTask, MmdTileTask
from repalign.approx import RandomFourierFeatures, approximate_mmd2
from repalign.measures.kernels import MEDIAN_MAX_ROWS, MEDIAN_SEED, resolve_sigma
from repalign.store import open_store


def run(job, configs):
    """Record every pair's value of the MMD² ``configs``."""
    for config in configs:
        pairs, labels = _pairs(job, config)
        if not pairs:
            continue
        sigmas = [_pooled_sigma(config, x, y) if config.kernel == "rbf" else None for x, y in pairs]
        rows = [(_open(x).rows, _open(y).rows) for x, y in pairs]
        if config.approx == "rff":
            _embeddings(job, config, pairs, labels, sigmas, rows)
            continue
        shifts = [_open(x).pilot_mean() for x, _ in pairs]
        task = MmdTileTask(pairs, [config.kernel] * len(pairs), sigmas, shifts, rows)
        units = [unit for p, counts in enumerate(rows) for unit in _units(config, p, *counts)]
        state = job.run_units(task, units, "mmd tiles")
        for p, (a, b) in enumerate(labels):
            m, n = rows[p]
            job.values.record(config, a, b, mmd_value, config, state, p, m, n)


def _open(reference):
    """The representation of a (store, name) reference."""
    store, name = reference
    return open_store(store)[name]


def _pairs(job, config):
    """((store, name) of x, of y) and (rep_a, rep_b) labels of the pairs MMD² applies to;
    the others are recorded as missing with the reason."""
    here = str(job.store.path)
    names = [name for name in job.names if not job.values.unusable[name]]  # constants allowed
    if config.against is not None:
        other = open_store(config.against)
        common = [name for name in names if name in other.representations]
        for name in set(job.names) - set(common):
            job.values.missing(config, name, name, f"{name} is not in {config.against}")
        pairs = [((here, name), (str(other.path), name)) for name in common]
        return pairs, [(name, name) for name in common]
    pairs, labels = [], []
    for a, b in combinations_with_replacement(job.names, 2):
        if job.store[a].dim != job.store[b].dim:
            reason = (
                f"different widths ({job.store[a].dim} and {job.store[b].dim}): "
                "MMD² compares samples of one space"
            )
            job.values.missing(config, a, b, reason)
        elif a in names and b in names:
            pairs.append(((here, a), (here, b)))
            labels.append((a, b))
    return pairs, labels


def _pooled_sigma(config, x, y):
    """The bandwidth of the pair: given, or the median heuristic on the pooled sample (the
    rows the library's `repalign.measures.mmd2` would use)."""
    if config.sigma != "median":
        return config.sigma
    m, n = _open(x).rows, _open(y).rows
    chosen = np.arange(m + n)
    if m + n > MEDIAN_MAX_ROWS:
        chosen = np.sort(
            np.random.default_rng(MEDIAN_SEED).choice(m + n, MEDIAN_MAX_ROWS, replace=False)
        )
    rows = np.concatenate(
        [gather(_open(x), chosen[chosen < m]), gather(_open(y), chosen[chosen >= m] - m)]
    )
    return resolve_sigma(rows, "median", name=f"the pooled sample of {x[1]} and {y[1]}")


def _units(config, p, m, n):
    """The units of pair p, of m and n rows: row pairs for the linear-time estimator, else
    the upper triangles of the xx and yy tiles and every xy tile."""
    if config.estimator == "linear":
        step = 2 * (TILE_ROWS // 2)
        return [(p, "linear", (s, min(s + step, m)), None) for s in range(0, m, step)]
    bx, by = tile_ranges(m), tile_ranges(n)
    return (
        [(p, "xx", bx[i], bx[j]) for i in range(len(bx)) for j in range(i, len(bx))]
        + [(p, "yy", by[i], by[j]) for i in range(len(by)) for j in range(i, len(by))]
        + [(p, "xy", a, b) for a in bx for b in by]
    )


def _embeddings(job, config, pairs, labels, sigmas, rows):
    """MMD² as the distance of random-feature mean embeddings (a mergeable sum)."""
    maps = [
        RandomFourierFeatures(_open(x).dim, config.features, sigma, seed=config.seed)
        for (x, _), sigma in zip(pairs, sigmas, strict=True)
    ]
    step = max(256, UNIT_BYTES // (8 * config.features))
    units = [
        (p, (s, min(s + step, max(m, n))))
        for p, (m, n) in enumerate(rows)
        for s in range(0, max(m, n), step)
    ]
    state = job.run_units(EmbeddingTask(pairs, maps, rows), units, "mmd features")
    for p, (a, b) in enumerate(labels):
        x, y = state.embeddings[p]
        job.values.record(config, a, b, _approximate_mmd, x, y, config.estimator)


def _approximate_mmd(x, y, estimator):
    estimate = approximate_mmd2(x, y, estimator=estimator)
    return estimate.value, estimate.std_err


def mmd_value(config, state, p, m, n):
    """MMD² of pair p from its kernel sums (`jobs.tasks.MmdTileState`)."""
    if config.estimator == "linear":
        return state.linear[p] / (m // 2)
    xx, yy, xy, trace_x, trace_y = state.sums[p]
    if config.estimator == "biased":
        return xx / m**2 + yy / n**2 - 2 * xy / (m * n)
    within_x = (xx - trace_x) / (m * (m - 1))
    return within_x + (yy - trace_y) / (n * (n - 1)) - 2 * xy / (m * n)
