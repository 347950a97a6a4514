"""Capacity model of the all-pairs moments job (`jobs.alignment`, docs/design.md §4).

Predicts the wall time, memory and communication of the linear-kernel pass of an all-pairs job
(one `repalign.stats.GramState` over every representation, or its tiles) from the job's shape
(n rows, the representations' widths, workers) and a few rates of the machine:

- compute: the float64 SYRK of every tile, Σₜ n·Dₜ(Dₜ+1) flops, at the per-core rate (measured
  here with one BLAS thread) times the cores of a worker;
- I/O: every row of a representation is read once per tile that holds it, at one worker's
  read-and-convert rate, capped by the shared storage's aggregate bandwidth;
- the actors' overheads: the in-place merge of each unit's state, checkpoint saves every
  CHECKPOINT_SECONDS, the uneven deal of whole units to slots, an actor start per pass;
- the driver: pilot means (one row group of each member per tile), the flat merge of the
  slots' states as `jobs.engine.run_units` does it (every state sent to the driver), and the
  per-pair measures, one after another;
- memory: two D×D float64 states per actor (the running sum and the unit's part) plus a unit
  of float32 rows and a float64 row block;
- a simulation of the reduction: bytes each worker and the driver receive for a flat merge,
  a binary tree, and a reduce-scatter (tiles, or chunks of one state, reduced by different
  workers), with and without tiling, at a stated network bandwidth.

The tiling mirrors `jobs.passes.moments.statistic_tiles` and the unit sizes
`jobs.passes.rows.unit_rows` (`tests/test_capacity.py` checks both against the code). The
model needs only numpy; the calibration measures the SYRK rate with scipy's `dsyrk` (as the
engine calls it) under threadpoolctl, a few seconds. The other rates are the figures recorded
in `benchmarks/RESULTS.md` (see `RECORDED`). Markdown goes to stdout.

Run from the repository root (docs/scaling.md holds a run's output under "Generated output"):

    .venv/bin/python benchmarks/capacity.py
"""

import argparse
import datetime
import functools
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

# The engine's constants (jobs/alignment.py, jobs/passes/rows.py, repalign/blocks.py,
# repalign/store/format.py); tests/test_capacity.py fails if they drift.
UNIT_BYTES = 64 * 2**20
STATE_BYTES = 2 * 2**30
BLOCK_BYTES = 32 * 2**20
ROW_GROUP_BYTES = 8 * 2**20
CHECKPOINT_SECONDS = 30.0
PILOT_ROWS = 1024

MiB, GB = 2**20, 1e9
SPECTRAL = ("procrustes", "cca", "svcca")


@dataclass(frozen=True)
class Rates:
    """What the model needs to know about the machine (bytes and flops per second)."""

    syrk_flops: float  # per core, float64 dsyrk, 1 BLAS thread
    read_bytes: float  # float32 bytes one worker reads from Parquet and converts to float64
    storage_bytes: float  # aggregate bandwidth of the shared storage (all workers together)
    driver_read_bytes: float  # the driver's read rate (pilot means)
    merge_bytes: float  # state bytes per second of an in-place `state += part`
    checkpoint_bytes: float  # state bytes per second of a checkpoint save (pickle + fsync)
    network_bytes: float  # one node's link, each way
    actor_start: float  # seconds to start a pass's actors
    actor_base_bytes: float  # an actor's resident memory besides states, unit and row block
    pair_seconds: tuple  # ((measure label, seconds per pair at d = 512), ...)


# Figures recorded on this machine in benchmarks/RESULTS.md, section "engine.py (issue 5)",
# part 1, second run (23:23 UTC, 2026-11-29, 16 × 512 at n = 200,000, 2 actors), unless noted.
RECORDED = {
    # actor: read 0.225 s + convert 0.024 s per unit of 2,040 rows × 8,192 float32 columns
    "read_bytes": 2040 * 8192 * 4 / (0.225 + 0.024),
    # merge (`state += part`, in place) 0.018 s per unit, state 8,209² float64
    "merge_bytes": 8 * 8209**2 / 0.018,
    # checkpoint saves: 1.42 s each for the 8,209² state
    "checkpoint_bytes": 8 * 8209**2 / 1.42,
    # actor start (alone): 0.40 s
    "actor_start": 0.40,
    # store.py section: `Representation.batches`, 1,152 MB/s (page cache, 2 threads)
    "driver_read_bytes": 1152e6,
    # driver's side, per pair at d = 512 with 2 BLAS threads, 136 pairs
    "pair_seconds": (
        ("ka", 0.024),
        ("cka biased", 0.003),
        ("cka song", 0.002),
        ("cka lange", 0.002),
        ("hsic biased", 0.001),
        ("hsic unbiased", 0.001),
        ("procrustes", 0.062),
        ("cca", 0.063),
        ("svcca", 0.048),
    ),
}
# Part 3 (4 × 128, n = 10⁵, 2 actors): largest actor VmHWM 382 MiB; the actor's base is that
# less what the model counts for that job (see `actor_base_from_part3`).
PART3_VMHWM = 382 * MiB

MEASURE_SETS = {
    "all": tuple(label for label, _ in RECORDED["pair_seconds"]),
    "cka": ("cka biased",),
    "cka2": ("cka biased", "cka song"),
}


@dataclass(frozen=True)
class Job:
    dims: tuple  # width of each representation
    n: int
    workers: int
    cores: int = 1  # CPUs (BLAS threads) per worker
    measures: str = "all"  # a key of MEASURE_SETS
    state_bytes: int = STATE_BYTES


# -- the engine's geometry ------------------------------------------------------------------


def state_width(dims):
    """D = Σₖ(dₖ + 1) + 1: each representation's features and squared norm, and a one."""
    return sum(d + 1 for d in dims) + 1


def groups(dims, state_bytes=STATE_BYTES):
    """Indices of the representations in each group, as `jobs.passes.moments.statistic_tiles`
    cuts them (one group when the whole D×D float64 state fits ``state_bytes``)."""
    widths = [d + 1 for d in dims]
    if (sum(widths) + 1) ** 2 * 8 <= state_bytes:
        return [list(range(len(dims)))]
    budget = int(np.sqrt(state_bytes / 8)) // 2
    result, current, width = [], [], 0
    for i, w in enumerate(widths):
        if current and width + w > budget:
            result.append(current)
            current, width = [], 0
        current.append(i)
        width += w
    result.append(current)
    return result


def tiles(dims, state_bytes=STATE_BYTES):
    """The (group_a, group_b) pairs of `statistic_tiles`, g ≤ h: G(G+1)/2 passes over the rows."""
    cut = groups(dims, state_bytes)
    return [(cut[g], cut[h]) for g in range(len(cut)) for h in range(g, len(cut))]


def tile_members(tile):
    group_a, group_b = tile
    return group_a if group_a == group_b else group_a + group_b


def block_rows(cols):
    return max(64, BLOCK_BYTES // (8 * max(cols, 1)))


def unit_rows(width, representations):
    """Rows of one unit (`jobs.passes.rows.unit_rows`): 64 MiB of float32, whole SYRK blocks."""
    rows = max(256, UNIT_BYTES // (4 * width))
    block = block_rows(width + representations + 1)
    return rows - rows % block if rows > block else rows


def row_group_rows(dim):
    """Rows of a store row group of width ``dim`` (`repalign.store.format.row_group_rows`)."""
    return max(256, ROW_GROUP_BYTES // (4 * dim))


def pilot_rows(dim, n):
    """Rows a pilot mean reads: the whole row groups that hold the first PILOT_ROWS rows."""
    group = row_group_rows(dim)
    return min(n, -(-PILOT_ROWS // group) * group)


def job_flops(dims, n, state_bytes=STATE_BYTES):
    """Σ over tiles of n·Dₜ(Dₜ+1), the SYRK flops (multiply and add counted) of the pass."""
    total = 0
    for tile in tiles(dims, state_bytes):
        D = state_width([dims[i] for i in tile_members(tile)])
        total += n * D * (D + 1)
    return total


def busiest_slot(n, rows, workers):
    """(units, rows) of the slot with the most rows when ⌈n/rows⌉ units of ``rows`` rows (the
    last one shorter) are dealt to ``workers`` slots in turn, as `jobs.engine.run_units` does."""
    units = -(-n // rows)
    sizes = np.full(units, rows)
    sizes[-1] = n - (units - 1) * rows
    slots = np.arange(units) % min(workers, units)
    per_slot = np.bincount(slots, weights=sizes)
    busiest = int(np.argmax(per_slot))
    return int(np.sum(slots == busiest)), int(per_slot[busiest])


# -- the model ------------------------------------------------------------------------------

TERMS = (
    "compute",
    "imbalance",
    "io",
    "merge",
    "checkpoints",
    "start",
    "pilot",
    "reduction",
    "measures",
)
TERM_NAMES = {
    "compute": "SYRK, evenly shared: Σₜ n·Dₜ(Dₜ+1) / (W · cores · rate)",
    "imbalance": "whole units dealt to slots: the busiest slot's extra rows",
    "io": "reads: Σₜ n·widthₜ·4 B / (W · min(read rate, storage / W))",
    "merge": "in-place merge of each unit's state (8Dₜ² per unit)",
    "checkpoints": "checkpoint saves, one per 30 s of an actor's work",
    "start": "actor start, one per pass (tile)",
    "pilot": "driver: pilot means (a row group of each member per tile)",
    "reduction": "driver: flat merge, W states of 8Dₜ² sent to it per tile",
    "measures": "driver: per-pair measures, pairs × cost(d)",
}


def pair_seconds(dim_a, dim_b, measures, rates):
    """Driver seconds for one pair: the recorded cost at d = 512, scaled by (d/512)³ for the
    measures that decompose d×d matrices (Procrustes, CCA, SVCCA) and (d/512)² for the rest."""
    d = math.sqrt(dim_a * dim_b)
    total = 0.0
    for label, seconds in rates.pair_seconds:
        if label in MEASURE_SETS[measures]:
            total += seconds * (d / 512) ** (3 if label in SPECTRAL else 2)
    return total


@functools.cache
def _tile_terms(member_dims, pairs_dims, n, workers, cores, measures, rates):
    D = state_width(member_dims)
    width = sum(member_dims)
    state = 8 * D * D
    rows = unit_rows(width, len(member_dims))
    units, busy_rows = busiest_slot(n, rows, workers)
    slots = min(workers, -(-n // rows))
    row_syrk = D * (D + 1) / (cores * rates.syrk_flops)
    read = min(rates.read_bytes, rates.storage_bytes / workers)
    row_read = width * 4 / read
    work = busy_rows * (row_syrk + row_read) + units * state / rates.merge_bytes
    pilot_bytes = sum(pilot_rows(d, n) * d * 4 for d in member_dims)
    return {
        "compute": n / workers * row_syrk,
        "imbalance": (busy_rows - n / workers) * (row_syrk + row_read),
        "io": n / workers * row_read,
        "merge": units * state / rates.merge_bytes,
        "checkpoints": math.floor(work / CHECKPOINT_SECONDS) * state / rates.checkpoint_bytes,
        "start": rates.actor_start,
        "pilot": pilot_bytes / rates.driver_read_bytes,
        "reduction": slots * state / rates.network_bytes + (slots - 1) * state / rates.merge_bytes,
        "measures": sum(pair_seconds(a, b, measures, rates) for a, b in pairs_dims),
    }


def predict(job, rates):
    """Seconds of each term (see TERM_NAMES), summed over the job's tiles, and its geometry."""
    terms = dict.fromkeys(TERMS, 0.0)
    shapes = tiles(job.dims, job.state_bytes)
    widest = 0
    bytes_read = 0
    for tile in shapes:
        member_dims = tuple(job.dims[i] for i in tile_members(tile))
        group_a, group_b = tile
        if group_a == group_b:
            pairs = [(a, b) for i, a in enumerate(group_a) for b in group_a[i:]]
        else:
            pairs = [(a, b) for a in group_a for b in group_b]
        pairs_dims = tuple(sorted((job.dims[a], job.dims[b]) for a, b in pairs))
        part = _tile_terms(
            member_dims, pairs_dims, job.n, job.workers, job.cores, job.measures, rates
        )
        for key in TERMS:
            terms[key] += part[key]
        widest = max(widest, state_width(member_dims))
        bytes_read += job.n * sum(member_dims) * 4
    widest_members = max(len(tile_members(t)) for t in shapes)
    width = max(sum(job.dims[i] for i in tile_members(t)) for t in shapes)
    rows = unit_rows(width, widest_members)
    return {
        "terms": terms,
        "total": sum(terms.values()),
        "tiles": len(shapes),
        "groups": len(groups(job.dims, job.state_bytes)),
        "D": state_width(job.dims),
        "tile_D": widest,
        "flops": job_flops(job.dims, job.n, job.state_bytes),
        "bytes_read": bytes_read,
        "actor_bytes": actor_bytes(widest, width, widest_members, rows, rates),
        "driver_bytes": (job.workers + 1) * 8 * widest**2,
        "pairs": len(job.dims) * (len(job.dims) + 1) // 2,
    }


def actor_bytes(D, width, representations, rows, rates):
    """Peak resident bytes of one actor: its running state and the unit's part state (8D² each),
    the unit's float32 rows, one float64 row block, and the process's base."""
    block = block_rows(width + representations + 1) * D * 8
    return 2 * 8 * D * D + rows * width * 4 + block + rates.actor_base_bytes


def actor_base_from_part3():
    """The base of `actor_bytes`: part 3's measured peak less what the model counts for it."""
    dims, D = (128,) * 4, state_width((128,) * 4)
    rows = unit_rows(sum(dims), len(dims))
    zero = replace(_rates(syrk_flops=1.0), actor_base_bytes=0.0)
    return PART3_VMHWM - actor_bytes(D, sum(dims), len(dims), rows, zero)


def _rates(syrk_flops, storage_bytes=math.inf, network_bytes=10e9 / 8):
    return Rates(
        syrk_flops=syrk_flops,
        read_bytes=RECORDED["read_bytes"],
        storage_bytes=storage_bytes,
        driver_read_bytes=RECORDED["driver_read_bytes"],
        merge_bytes=RECORDED["merge_bytes"],
        checkpoint_bytes=RECORDED["checkpoint_bytes"],
        network_bytes=network_bytes,
        actor_start=RECORDED["actor_start"],
        actor_base_bytes=0.0,
        pair_seconds=RECORDED["pair_seconds"],
    )


def calibrated_rates(syrk_flops, storage_bytes, network_bytes):
    rates = _rates(syrk_flops, storage_bytes, network_bytes)
    return replace(rates, actor_base_bytes=actor_base_from_part3())


# -- the reduction ----------------------------------------------------------------------------


def tree_receives(workers):
    """States each worker receives in one binary-tree reduction over ``workers`` workers: in
    round r, worker i (i a multiple of 2^(r+1)) receives the state of worker i + 2^r."""
    received = np.zeros(workers, dtype=np.int64)
    step = 1
    while step < workers:
        receivers = np.arange(0, workers - step, 2 * step)
        received[receivers] += 1
        step *= 2
    return received


def reduction(state_bytes, count, workers, scheme):
    """Simulated traffic of reducing ``count`` states of ``state_bytes`` each, every one the sum
    of one partial state per worker (the row-split engine: each worker holds a part of every
    state). Returns the bytes each worker receives (array), the bytes the driver receives, and
    the critical path in bytes over one link (divide by the bandwidth for seconds).

    - "flat": every worker sends each partial state to the driver (`jobs.engine.run_units`).
    - "tree": a binary tree over the workers per state (`tree_receives`), the root sending the
      sum to the driver; for many states the tree is rotated by one worker per state, so the
      roots take turns. A single state's rounds are serial: ⌈log₂W⌉ + 1 transfers.
    - "scatter": state s is reduced at worker s mod W, which receives the W − 1 other parts
      and sends the sum to the driver; a single state is first cut into W column chunks
      (a reduce-scatter; the sum is elementwise, so any cut works).

    Transfers of different states are taken to overlap, each link carrying one at a time: the
    critical path is the busiest link's bytes, or a single state's serial chain if longer.
    """
    if scheme == "flat":
        worker_in = np.zeros(workers)
        driver_in = workers * state_bytes * count
        chain = local = state_bytes  # the driver is the reducer
    elif scheme == "tree":
        one = tree_receives(workers) * state_bytes
        cycles, rest = divmod(count, workers)
        worker_in = cycles * one.sum() + sum(np.roll(one, t) for t in range(rest))
        worker_in = np.broadcast_to(worker_in, (workers,)).astype(float)
        driver_in = state_bytes * count
        local = int(one.max() // state_bytes) * state_bytes  # the root's serial rounds
        chain = local + state_bytes
    elif scheme == "scatter":
        chunk, chunks = (state_bytes / workers, workers) if count == 1 else (state_bytes, count)
        owned = np.bincount(np.arange(chunks) % workers, minlength=workers)
        worker_in = owned * (workers - 1) * chunk
        driver_in = chunk * chunks
        chain, local = chunk, 0.0
    else:
        raise ValueError(f"scheme must be 'flat', 'tree' or 'scatter'; got {scheme!r}.")
    most = float(np.max(worker_in))
    link = max(most, driver_in, chain)
    return {
        "worker_in": worker_in,
        "driver_in": driver_in,
        "link": link,
        "link_in_place": link if scheme == "flat" else max(most, local),
    }


# -- calibration ------------------------------------------------------------------------------


def measure_syrk_rate(width, seconds):
    """Float64 dsyrk rates (flops/s) with one BLAS thread, on blocks of `block_rows(width)`
    rows accumulated into a width×width state, over about ``seconds`` (first call not timed):
    the best by wall clock and the best by this thread's CPU time. On a shared machine the
    CPU-time rate is what one dedicated core delivers; the wall-clock rate is what was left."""
    from scipy.linalg.blas import dsyrk
    from threadpoolctl import threadpool_limits

    rows = block_rows(width)
    Z = np.random.default_rng(0).standard_normal((rows, width))
    C = np.zeros((width, width), order="F")
    wall = cpu = math.inf
    with threadpool_limits(1):
        C = dsyrk(1.0, Z.T, beta=1.0, c=C, trans=0, overwrite_c=True)
        started = time.perf_counter()
        calls = 0
        while calls < 3 or time.perf_counter() - started < seconds:
            t, c = time.perf_counter(), time.thread_time()
            C = dsyrk(1.0, Z.T, beta=1.0, c=C, trans=0, overwrite_c=True)
            cpu = min(cpu, time.thread_time() - c)
            wall = min(wall, time.perf_counter() - t)
            calls += 1
    flops = rows * width * (width + 1)
    return {"wall": flops / wall, "cpu": flops / cpu, "calls": calls}


# -- the report -------------------------------------------------------------------------------


def fmt_s(seconds):
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:,.1f} s"


def fmt_b(count):
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:,.0f} B"


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join("---:" if i else ":---" for i in range(len(head))) + "|")
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# Recorded jobs (benchmarks/RESULTS.md, "engine.py (issue 5)"): label, job, measured whole
# job and measured actors' part (`run_units`, wall) in seconds, None where not recorded.
VALIDATION = (
    ("part 1, recorded run (22:57)", Job((512,) * 16, 200_000, 2), 165.7, 150.2),
    ("part 1, second run (23:23, loaded)", Job((512,) * 16, 200_000, 2), 202.4, 171.6),
    ("part 2 (best of 3)", Job((512,) * 8, 8_000, 2, measures="cka2"), 2.78, 2.41),
    ("part 3, n = 10⁵", Job((128,) * 4, 100_000, 2), 1.7, None),
    ("part 3, n = 10⁶", Job((128,) * 4, 1_000_000, 2), 15.4, None),
    ("part 5, 1 actor × 2 CPUs (best)", Job((512,) * 8, 100_000, 1, 2, "cka"), 29.4, 29.0),
    ("part 5, 2 actors × 1 CPU (best)", Job((512,) * 8, 100_000, 2, 1, "cka"), 27.1, 26.8),
)
RUN_UNITS = ("compute", "imbalance", "io", "merge", "checkpoints", "start", "reduction")


def dominant(terms):
    return max(terms, key=terms.get)


def report(args, rates, calibration):
    out = []
    add = out.append
    add("## Calibration\n")
    add(table(["quantity", "value", "source"], calibration))
    add("## Validation: recorded jobs of `benchmarks/engine.py`\n")
    rows = []
    for label, job, measured, measured_actors in VALIDATION:
        p = predict(job, rates)
        actors = sum(p["terms"][k] for k in RUN_UNITS)
        rows.append(
            [
                label,
                f"{len(job.dims)} × {job.dims[0]}",
                f"{job.n:,}",
                f"{job.workers} × {job.cores}",
                f"{actors:.1f}",
                "—" if measured_actors is None else f"{measured_actors:.1f}",
                "—"
                if measured_actors is None
                else f"{(actors - measured_actors) / measured_actors:+.0%}",
                f"{p['total']:.1f}",
                f"{measured:.1f}",
                f"{(p['total'] - measured) / measured:+.0%}",
            ]
        )
    add(
        table(
            [
                "job",
                "shape",
                "n",
                "workers × cores",
                "actors' part: predicted (s)",
                "measured (s)",
                "error",
                "whole job: predicted (s)",
                "measured (s)",
                "error",
            ],
            rows,
        )
    )
    add(
        "'actors' part' is `run_units` (actor start, the actors' reads, SYRK, merges and "
        "checkpoints, the flat merge at the driver); the whole job adds the driver's pilot "
        "means and per-pair measures. The measured seconds are wall times of runs on this "
        "shared machine; the model's SYRK rate is a dedicated core's.\n"
    )
    p3 = predict(VALIDATION[3][1], rates)
    add(
        f"Memory: part 3's actor peak (382 MiB) is the calibration of the actor's base "
        f"({rates.actor_base_bytes / MiB:.0f} MiB besides states, unit and row block); part 1's "
        f"actors are predicted at {predict(VALIDATION[0][1], rates)['actor_bytes'] / MiB:,.0f} "
        f"MiB (not recorded), part 3's at {p3['actor_bytes'] / MiB:.0f} MiB at both n.\n"
    )

    dims = (args.dim,) * args.models
    job = Job(dims, args.rows, args.workers, measures=args.measures)
    p = predict(job, rates)
    G, T = p["groups"], p["tiles"]
    add(f"## Prediction: {args.models:,} × d = {args.dim:,}, n = {args.rows:,}, ")
    out[-1] += f"{args.workers} workers (1 core each), measures '{args.measures}'\n"
    untiled = 8 * p["D"] ** 2
    group_sizes = sorted({len(g) for g in groups(dims)})
    add(
        table(
            ["quantity", "value"],
            [
                ["D = Σ(d+1)+1", f"{p['D']:,}"],
                ["untiled state 8·D²", f"{fmt_b(untiled)} (STATE_BYTES = {fmt_b(STATE_BYTES)})"],
                ["groups G (representations per group)", f"{G} ({group_sizes})"],
                ["tiles G(G+1)/2 (passes over the rows)", f"{T:,}"],
                [
                    "widest tile Dₜ, its state 8·Dₜ²",
                    f"{p['tile_D']:,}, {fmt_b(8 * p['tile_D'] ** 2)}",
                ],
                ["SYRK flops, tiled (Σₜ n·Dₜ(Dₜ+1))", f"{p['flops']:.3g}"],
                ["SYRK flops, untiled (n·D(D+1))", f"{args.rows * p['D'] * (p['D'] + 1):.3g}"],
                [
                    "tiling overhead (tiled / untiled)",
                    f"{p['flops'] / (args.rows * p['D'] * (p['D'] + 1)):.3f}",
                ],
                ["reads of each row", f"{G} (once per tile holding its group)"],
                [
                    "bytes read",
                    f"{fmt_b(p['bytes_read'])} (one pass: {fmt_b(args.rows * sum(dims) * 4)})",
                ],
                ["pairs M(M+1)/2", f"{p['pairs']:,}"],
                ["memory per actor", fmt_b(p["actor_bytes"])],
                ["driver memory, flat merge (W+1 states)", fmt_b(p["driver_bytes"])],
            ],
        )
    )
    rows = [
        [key, TERM_NAMES[key], fmt_s(value), f"{value / p['total']:.1%}"]
        for key, value in p["terms"].items()
    ]
    rows.append(["total", "", f"**{fmt_s(p['total'])}**", "100%"])
    add(table(["term", "what", "time", "share"], rows))
    cka = predict(replace(job, measures="cka"), rates)
    add(
        f"Dominant term: **{dominant(p['terms'])}**. With CKA (biased) alone as the measure, "
        f"the driver's measures take {fmt_s(cka['terms']['measures'])} and the job "
        f"{fmt_s(cka['total'])} (dominant: {dominant(cka['terms'])}).\n"
    )

    t = p["terms"]
    scatter = reduction(8 * p["tile_D"] ** 2, T, args.workers, "scatter")
    link = scatter["link_in_place"]
    actors = sum(t[k] for k in ("compute", "imbalance", "io", "merge", "checkpoints"))
    shared = t["measures"] / args.workers
    alternative = actors + t["start"] + t["pilot"] + link / rates.network_bytes + shared
    add(
        "For comparison (not what the engine does): with each tile's partial states reduced "
        "at one worker (tile t at worker t mod W, the 'scatter' scheme below) and that worker "
        f"measuring the tile's pairs, the reduction's busiest link carries {fmt_b(link)} "
        f"({fmt_s(link / rates.network_bytes)}), the measures are shared by the workers "
        f"({fmt_s(shared)}), the driver holds no state, and the job takes about "
        f"{fmt_s(alternative)}, {p['total'] / alternative:.1f}× less.\n"
    )

    add("## Over workers and n (same representations, measures '" + args.measures + "')\n")
    rows = []
    for n in (10**5, 10**6, 10**7):
        for workers in (1, 2, 8, 64, 256):
            q = predict(Job(dims, n, workers, measures=args.measures), rates)
            t = q["terms"]
            actors = sum(t[k] for k in ("compute", "imbalance", "io", "merge", "checkpoints"))
            driver = sum(t[k] for k in ("start", "pilot", "reduction", "measures"))
            rows.append(
                [
                    f"{n:,}",
                    workers,
                    fmt_s(t["compute"]),
                    fmt_s(t["io"]),
                    fmt_s(actors),
                    fmt_s(t["reduction"]),
                    fmt_s(driver),
                    fmt_s(q["total"]),
                    dominant(t),
                ]
            )
    add(
        table(
            [
                "n",
                "workers",
                "compute",
                "I/O",
                "actors' part",
                "reduction",
                "driver (all)",
                "total",
                "dominant",
            ],
            rows,
        )
    )

    gbit = rates.network_bytes * 8 / 1e9
    add(f"## Reduction: bytes received and seconds at {gbit:g} Gbit/s per link\n")
    add(
        "Per worker: the most bytes one worker receives. 'to driver': the critical path when "
        "the driver receives the sums and measures the pairs (as now); 'in place': when the "
        "worker that completes a sum measures its pairs itself (nothing sent to the driver "
        "but the values).\n"
    )
    T_states, S_tile = T, 8 * p["tile_D"] ** 2
    rows = []
    for workers in (2, 8, 64, 256, 1024):
        for tiling, state, count in (
            ("untiled (one state)", untiled, 1),
            (f"tiled ({T_states:,} × {fmt_b(S_tile)})", S_tile, T_states),
        ):
            for scheme in ("flat", "tree", "scatter"):
                r = reduction(state, count, workers, scheme)
                rows.append(
                    [
                        workers,
                        tiling,
                        scheme,
                        fmt_b(float(np.max(r["worker_in"]))),
                        fmt_b(r["driver_in"]),
                        fmt_s(r["link"] / rates.network_bytes),
                        fmt_s(r["link_in_place"] / rates.network_bytes),
                    ]
                )
    add(
        table(
            ["W", "statistic", "scheme", "per worker in", "driver in", "to driver", "in place"],
            rows,
        )
    )
    return "\n".join(out)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", type=int, default=1000, help="representations M")
    parser.add_argument("--dim", type=int, default=1024, help="width d of each")
    parser.add_argument("--rows", type=int, default=10**6, help="n")
    parser.add_argument("--workers", type=int, default=64, help="actors (1 core each)")
    parser.add_argument(
        "--measures", choices=sorted(MEASURE_SETS), default="all", help="driver measure set"
    )
    parser.add_argument(
        "--syrk-gflops",
        type=float,
        help="per-core SYRK rate in GFLOP/s instead of measuring it here",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per width measured")
    parser.add_argument("--network-gbit", type=float, default=10.0, help="per link")
    parser.add_argument(
        "--storage-gbyte",
        type=float,
        default=10.0,
        help="aggregate shared-storage bandwidth, GB/s",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import cpu_model, total_memory_gib

    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()
    if args.syrk_gflops:
        rate = args.syrk_gflops * 1e9
        syrk = [["per-core SYRK rate", f"{args.syrk_gflops:.1f} GFLOP/s", "--syrk-gflops"]]
    else:
        measured = {w: measure_syrk_rate(w, args.seconds) for w in (2049, 4105)}
        rate = measured[4105]["cpu"]
        syrk = [
            [
                f"float64 dsyrk, 1 thread, D = {w:,} ({block_rows(w):,}-row blocks)",
                f"{m['cpu'] / 1e9:.1f} GFLOP/s by CPU time, {m['wall'] / 1e9:.1f} by wall "
                f"(best of {m['calls']})",
                "measured now" + ("; **the model's rate: CPU time**" if w == 4105 else ""),
            ]
            for w, m in measured.items()
        ]
    rates = calibrated_rates(rate, args.storage_gbyte * GB, args.network_gbit * 1e9 / 8)
    src = "RESULTS.md engine part 1, second run"
    calibration = [
        *syrk,
        [
            "read + convert per worker",
            f"{rates.read_bytes / 1e6:.0f} MB/s",
            f"{src}: 0.249 s per 66.8 MB unit",
        ],
        ["shared storage cap", f"{args.storage_gbyte:g} GB/s", "--storage-gbyte (assumed)"],
        [
            "driver read (pilot means)",
            f"{rates.driver_read_bytes / 1e6:,.0f} MB/s",
            "RESULTS.md store.py, `batches`",
        ],
        [
            "in-place merge",
            f"{rates.merge_bytes / 1e9:.1f} GB/s of state",
            f"{src}: 0.018 s per 539 MB",
        ],
        [
            "checkpoint save",
            f"{rates.checkpoint_bytes / 1e6:.0f} MB/s",
            f"{src}: 1.42 s per 539 MB",
        ],
        ["actor start per pass", f"{rates.actor_start:.2f} s", f"{src}"],
        [
            "actor base memory",
            f"{rates.actor_base_bytes / MiB:.0f} MiB",
            "RESULTS.md part 3: 382 MiB peak, less states, unit, block",
        ],
        ["network", f"{args.network_gbit:g} Gbit/s per link", "--network-gbit (assumed)"],
        *[
            [
                f"driver per pair at d = 512: {label}",
                f"{s * 1000:.0f} ms",
                f"{src}; × (d/512)^{3 if label in SPECTRAL else 2}",
            ]
            for label, s in rates.pair_seconds
        ],
    ]
    print(
        f"- Command: `.venv/bin/python benchmarks/capacity.py "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}".rstrip()
        + "`"
    )
    print(
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; load average "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (1, 5, 15 min) on {os.cpu_count()} cores"
    )
    print(
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, {total_memory_gib():.1f} GiB; "
        f"Python {platform.python_version()}, numpy {np.__version__}\n"
    )
    print(report(args, rates, calibration))


if __name__ == "__main__":
    main()
