"""Capacity model of the all-pairs moments pass (`jobs.alignment`, `jobs.passes.moments`,
docs/design.md §4), as the engine runs it since f6ec19f.

Predicts the wall time, memory and traffic of the linear-kernel pass of an all-pairs job from
its shape (n rows, the representations' widths, the workers, their memory and their nodes) and
a few rates of the machine. The engine, as modelled:

- tiles: when the (D+1)×(D+1) float64 statistic exceeds the tile budget (the spec's
  ``tile_bytes``, by default `repalign.stats.default_tile_bytes` of Ray's memory per CPU: a
  `STATES_PER_WORKER`-th of it), the representations are cut into G groups and each pair of
  groups g ≤ h is a tile, one pass over all the rows (`tiles`, as
  `jobs.passes.moments.statistic_tiles` cuts them); the diagonal tiles run first, then the
  others (`engine_order`);
- a pass: its units of rows (`tile_unit_rows`) dealt in turn to S = min(workers, units) slots,
  each one actor that reads its units, SYRKs them into a state, merges each unit's part in
  place, saves a checkpoint now and then (`checkpoint_saves`) and leaves its state in the
  object store of its node;
- an owner per pass: a task on the node that would then have received the fewest bytes of
  partial states from other nodes (`owned_passes`, as `jobs.ray_slots.Owners.choose` does
  with the counts it has at that moment). It fetches the S states one at a time over its
  node's link, adds them, computes the tile's principal axes (diagonal tiles, once per
  representation) and pair measures on one core, and sends only the values to the driver;
- the pipeline (`jobs.passes.moments.run`): the driver computes each pass's pilot means and runs
  the passes one after another; the owner of a pass runs during the next pass, and the driver
  waits for it before the pass after that (`OWNERS_AHEAD`), and for every diagonal owner before
  the first off-diagonal pass (`predict`).

The byte counts (`bytes_reduced`, `max_bytes_received_per_node`, with `state_bytes`) are those
a job's summary.json reports, computed as the engine counts them. The geometry mirrors
`jobs.alignment` (`tests/test_capacity.py` checks the tiles, the units, the state bytes and the
owners' choice against the code). The model needs only numpy; the calibration measures the
SYRK rate with scipy's `dsyrk` (as the engine calls it) under threadpoolctl, a few seconds, and
the bytes of a value with the engine's own `TileMeasure` and `Values` (`measure_value_bytes`).
The other rates are the figures recorded in `benchmarks/RESULTS.md` (see `RECORDED`). Markdown
goes to stdout.

Run from the repository root (docs/scaling.md holds a run's output under "Generated output"):

    .venv/bin/python benchmarks/capacity.py
"""

import argparse
import datetime
import functools
import math
import os
import pickle
import platform
import sys
import time
import tracemalloc
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

# The engine's constants (jobs/passes/rows.py, repalign/blocks.py, repalign/store/format.py,
# jobs/alignment.py, jobs/engine.py, repalign/stats.py, jobs/passes/moments.py);
# tests/test_capacity.py fails if they drift.
UNIT_BYTES = 64 * 2**20
BLOCK_BYTES = 32 * 2**20
ROW_GROUP_BYTES = 8 * 2**20
CHECKPOINT_SECONDS = 30.0
CHECKPOINT_SHARE = 0.05
PILOT_ROWS = 1024
STATES_PER_WORKER = 4
OWNERS_AHEAD = 1

MiB, GiB, GB = 2**20, 2**30, 1e9
SPECTRAL = ("procrustes", "cca", "svcca")  # per pair: d×d decompositions
AXES = ("cca", "svcca")  # the measures that read each representation's principal axes


@dataclass(frozen=True)
class Rates:
    """What the model needs to know about the machine (bytes and flops per second)."""

    syrk_flops: float  # per core, float64 dsyrk, 1 BLAS thread
    read_bytes: float  # float32 bytes one worker reads from Parquet and converts to float64
    storage_bytes: float  # aggregate bandwidth of the shared storage (all workers together)
    file_read_bytes: float  # one process reading stored data: pilot means, kept axes
    merge_bytes: float  # state bytes per second of an in-place `state += part`
    checkpoint_bytes: float  # state bytes per second of a checkpoint save (pickle + fsync)
    network_bytes: float  # one node's link, each way
    actor_start: float  # seconds to start a pass's actors
    actor_base_bytes: float  # an actor's resident memory besides states, unit and row block
    eigh_seconds: float  # one d×d eigendecomposition at d = 512, 1 BLAS thread
    pair_seconds: tuple  # ((measure label, seconds per pair at d = 512), ...)
    value_bytes: (
        tuple  # bytes per value: (pickled by an owner, held by the driver, peak of the table)
    )


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
    "file_read_bytes": 1152e6,
    # part 1's note: `numpy.linalg.eigh` of one 512×512 matrix, 26 ms with 1 BLAS thread
    "eigh_seconds": 0.026,
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
    # `measure_value_bytes("all")` on this machine, 2026-12-04: pickled, held, table's peak
    "value_bytes": (64, 384, 1185),
}
# Part 3 (4 × 128, n = 10⁵, 2 actors): largest actor VmHWM 382 MiB; the actor's base is that
# less what the model counts for that job (see `actor_base_from_part3`).
PART3_VMHWM = 382 * MiB

MEASURE_SETS = {
    "all": tuple(label for label, _ in RECORDED["pair_seconds"]),
    "cka": ("cka biased",),
    "cka2": ("cka biased", "cka song"),
}
CONFIGS = {
    "ka": {"name": "ka"},
    "cka biased": {"name": "cka", "estimator": "biased"},
    "cka song": {"name": "cka", "estimator": "song"},
    "cka lange": {"name": "cka", "estimator": "lange"},
    "hsic biased": {"name": "hsic", "estimator": "biased"},
    "hsic unbiased": {"name": "hsic", "estimator": "unbiased"},
    "procrustes": {"name": "procrustes"},
    "cca": {"name": "cca"},
    "svcca": {"name": "svcca"},
}
"""The spec's measure (`repalign.spec.Measure`) of each label of `MEASURE_SETS`."""


def tile_budget(memory_per_cpu):
    """The largest state of a tile for workers of ``memory_per_cpu`` bytes each, when the spec
    sets no ``tile_bytes``: memory / STATES_PER_WORKER (`repalign.stats.default_tile_bytes`)."""
    return memory_per_cpu // STATES_PER_WORKER


@dataclass(frozen=True)
class Job:
    dims: tuple  # width of each representation
    n: int
    workers: int  # actors: the slots of a pass
    cores: int = 1  # CPUs (BLAS threads) per worker
    measures: str = "all"  # a key of MEASURE_SETS
    worker_memory: int = 8 * GiB  # memory per CPU (Ray's, on the node that has least)
    tile_bytes: int | None = None  # the spec's tile_bytes; None: `tile_budget`
    node_cores: int = 16  # CPUs of each node

    @property
    def budget(self):
        """The tile budget the engine uses: the spec's ``tile_bytes``, else `tile_budget`."""
        return self.tile_bytes or tile_budget(self.worker_memory)

    @property
    def nodes(self):
        """⌈workers · cores / node_cores⌉: the workers' slots are placed on them in turn."""
        return -(-self.workers * self.cores // self.node_cores)


# -- the engine's geometry ------------------------------------------------------------------


def state_width(dims):
    """W = Σₖ(dₖ + 1) + 1: each representation's features and squared norm, and a one."""
    return sum(d + 1 for d in dims) + 1


def state_bytes(dims):
    """Array bytes of the `GramState` of representations of widths ``dims``, as
    `jobs.engine.array_bytes` counts them: the W×W float64 matrix, the float64 shifts and the
    M + 1 int64 offsets, 8·W² + 8·Σd + 8·(M + 1)."""
    width = state_width(dims)
    return 8 * width * width + 8 * sum(dims) + 8 * (len(dims) + 1)


def groups(dims, tile_bytes):
    """Indices of the representations in each group, as `jobs.passes.moments.statistic_tiles`
    cuts them (one group when the whole W×W float64 state fits ``tile_bytes``)."""
    widths = [d + 1 for d in dims]
    if (sum(widths) + 1) ** 2 * 8 <= tile_bytes:
        return [list(range(len(dims)))]
    budget = int(np.sqrt(tile_bytes / 8)) // 2
    result, current, width = [], [], 0
    for i, w in enumerate(widths):
        if current and width + w > budget:
            result.append(current)
            current, width = [], 0
        current.append(i)
        width += w
    result.append(current)
    return result


def tiles(dims, tile_bytes):
    """The (group_a, group_b) pairs of `statistic_tiles`, g ≤ h: G(G+1)/2 passes over the rows."""
    cut = groups(dims, tile_bytes)
    return [(cut[g], cut[h]) for g in range(len(cut)) for h in range(g, len(cut))]


def engine_order(count):
    """The tiles (g, h) of ``count`` groups in the order `jobs.passes.moments.run` starts their
    passes: the diagonal ones (g, g), then the others, each in the order of `tiles`."""
    diagonal = [(g, g) for g in range(count)]
    return diagonal + [(g, h) for g in range(count) for h in range(g + 1, count)]


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


def whole_row_groups(rows, group_rows):
    """``rows`` rounded to a whole number of the largest of ``group_rows`` that is at most
    2·rows (`jobs.passes.rows.whole_row_groups`)."""
    fitting = [g for g in group_rows if g <= 2 * rows]
    if not fitting:
        return rows
    step = max(fitting)
    return max(1, round(rows / step)) * step


@functools.cache
def tile_unit_rows(member_dims):
    """Rows of each unit of a pass over representations of widths ``member_dims``
    (`jobs.alignment.Job.row_units`): `unit_rows` rounded to whole row groups."""
    rows = unit_rows(sum(member_dims) or 1, len(member_dims))
    return whole_row_groups(rows, [row_group_rows(d) for d in member_dims])


def tile_slots(member_dims, n, workers):
    """S = min(workers, ⌈n / rows⌉): one slot per unit at most (`jobs.engine.deal`)."""
    return min(workers, -(-n // tile_unit_rows(member_dims)))


def pilot_rows(dim, n):
    """Rows a pilot mean reads: the whole row groups that hold the first PILOT_ROWS rows."""
    group = row_group_rows(dim)
    return min(n, -(-PILOT_ROWS // group) * group)


def job_flops(dims, n, tile_bytes):
    """Σ over tiles of n·Wₜ(Wₜ+1), the SYRK flops (multiply and add counted) of the pass."""
    total = 0
    for tile in tiles(dims, tile_bytes):
        W = state_width([dims[i] for i in tile_members(tile)])
        total += n * W * (W + 1)
    return total


def busiest_slot(n, rows, workers):
    """(units, rows) of the slot with the most rows when ⌈n/rows⌉ units of ``rows`` rows (the
    last one shorter) are dealt to ``workers`` slots in turn, as `jobs.engine.deal` does."""
    units = -(-n // rows)
    sizes = np.full(units, rows)
    sizes[-1] = n - (units - 1) * rows
    slots = np.arange(units) % min(workers, units)
    per_slot = np.bincount(slots, weights=sizes)
    busiest = int(np.argmax(per_slot))
    return int(np.sum(slots == busiest)), int(per_slot[busiest])


# -- the owners and the bytes they receive --------------------------------------------------


class OwnedPass(NamedTuple):
    """One tile's pass (g, h) as the engine runs it: its slots, the array bytes of each slot's
    state, the node of its owner and the bytes the owner received from slots on other nodes."""

    g: int
    h: int
    slots: int
    state_bytes: int
    owner: int
    received: int


def owned_passes(dims, n, actors, nodes, tile_bytes, placement=None):
    """Each tile's `OwnedPass`, in `engine_order`, and the bytes each node received in all.

    Nodes are numbered 0 … nodes − 1 in the order of their Ray node ids; ``placement[s]`` is
    the node of slot s (default s mod nodes, the slots placed in turn). As
    `jobs.ray_slots.Owners.choose`, a pass's owner goes to the node that minimises what it has
    received so far plus the bytes of the pass's states on other nodes, ties to the lower node;
    what "so far" counts is what `Owners.took` has counted by then: an owner's bytes are
    counted when the driver takes its values, which for pass t is after pass t + OWNERS_AHEAD
    has chosen its owner, and for every diagonal pass before the first off-diagonal one.
    """
    placement = list(placement) if placement is not None else [s % nodes for s in range(actors)]
    cut = groups(dims, tile_bytes)
    group_dims = [tuple(dims[i] for i in group) for group in cut]
    received = [0] * nodes
    on_node = {}  # slots -> how many of them are on each node
    passes, running = [], deque()

    def take(owned):
        received[owned.owner] += owned.received

    order = engine_order(len(cut))
    for phase in (order[: len(cut)], order[len(cut) :]):  # the diagonal passes, the others
        for g, h in phase:
            member_dims = group_dims[g] if g == h else group_dims[g] + group_dims[h]
            slots = tile_slots(member_dims, n, actors)
            size = state_bytes(member_dims)
            if slots not in on_node:
                counts = Counter(placement[:slots])
                on_node[slots] = [counts[node] for node in range(nodes)]
            incoming = [(slots - local) * size for local in on_node[slots]]
            owner = min(range(nodes), key=lambda node: (received[node] + incoming[node], node))
            owned = OwnedPass(g, h, slots, size, owner, incoming[owner])
            passes.append(owned)
            running.append(owned)
            if len(running) > OWNERS_AHEAD:
                take(running.popleft())
        while running:
            take(running.popleft())
    return passes, received


def bytes_reduced(dims, n, actors, tile_bytes):
    """summary.json's ``bytes_reduced`` of a job's moments pass: Σ over tiles of Sₜ states of
    `state_bytes` (every slot's state, on the owner's node or not)."""
    cut = groups(dims, tile_bytes)
    total = 0
    for g, h in engine_order(len(cut)):
        member_dims = tuple(dims[i] for i in (cut[g] if g == h else cut[g] + cut[h]))
        total += tile_slots(member_dims, n, actors) * state_bytes(member_dims)
    return total


def max_bytes_received_per_node(dims, n, actors, nodes, tile_bytes, placement=None):
    """summary.json's ``max_bytes_received_per_node``: the most bytes of partial states that
    the owners on one node received from slots on other nodes (`owned_passes`)."""
    return max(owned_passes(dims, n, actors, nodes, tile_bytes, placement)[1])


# -- the model ------------------------------------------------------------------------------

PASS_TERMS = ("compute", "imbalance", "io", "merge", "checkpoints", "start")
OWNER_TERMS = ("reduction", "measures", "axes")
TERMS = (*PASS_TERMS, "contention", "pilot", *OWNER_TERMS)
TERM_NAMES = {
    "compute": "SYRK, evenly shared: n·Wₜ(Wₜ+1) / (Sₜ · cores · rate) per pass",
    "imbalance": "whole units dealt to slots: the busiest slot's extra rows",
    "io": "reads: n·widthₜ·4 B / (Sₜ · min(read rate, storage / Sₜ)) per pass",
    "merge": "each unit's state merged in place, and the sum copied to the object store",
    "checkpoints": "checkpoint saves: the first after 30 s, then ≤ 5% of a slot's time",
    "start": "actor start, one per pass",
    "contention": "owners' adds and measures taking cores from the next pass's slots",
    "pilot": "driver: pilot means (a row group of each member per pass)",
    "reduction": "waiting for owners: fetching Sₜ states over a link and adding them",
    "measures": "waiting for owners: per-pair measures, pairs × cost(d)",
    "axes": "waiting for owners: principal axes, once per representation",
}


def pair_seconds(dim_a, dim_b, measures, rates):
    """Seconds of one core for one pair: the recorded cost at d = 512, scaled by (d/512)³ for
    the measures that decompose d×d matrices (Procrustes, CCA, SVCCA) and (d/512)² for the
    rest."""
    d = math.sqrt(dim_a * dim_b)
    total = 0.0
    for label, seconds in rates.pair_seconds:
        if label in MEASURE_SETS[measures]:
            total += seconds * (d / 512) ** (3 if label in SPECTRAL else 2)
    return total


def checkpoint_saves(work, save):
    """Saves a slot makes in ``work`` seconds when one takes ``save`` seconds
    (`jobs.engine.SlotAccumulator`): the first after CHECKPOINT_SECONDS, then one every
    max(CHECKPOINT_SECONDS, save / CHECKPOINT_SHARE) (unit boundaries left out)."""
    if work < CHECKPOINT_SECONDS:
        return 0
    interval = max(CHECKPOINT_SECONDS, save / CHECKPOINT_SHARE)
    return 1 + math.floor((work - CHECKPOINT_SECONDS) / interval)


@functools.cache
def _pass_terms(member_dims, n, workers, cores, rates):
    """Seconds of a pass's PASS_TERMS (its busiest slot's work and its actors' start) and of
    the driver's pilot means before it, for members of widths ``member_dims``."""
    W = state_width(member_dims)
    width = sum(member_dims)
    state = 8 * W * W
    units, busy_rows = busiest_slot(n, tile_unit_rows(member_dims), workers)
    slots = tile_slots(member_dims, n, workers)
    row_syrk = W * (W + 1) / (cores * rates.syrk_flops)
    read = min(rates.read_bytes, rates.storage_bytes / slots)
    row_read = width * 4 / read
    merge = units * state / rates.merge_bytes  # units − 1 merges, and the copy to the store
    save = state / rates.checkpoint_bytes
    saves = checkpoint_saves(busy_rows * (row_syrk + row_read) + merge, save)
    pilot_bytes = sum(pilot_rows(d, n) * d * 4 for d in member_dims)
    return {
        "compute": n / slots * row_syrk,
        "imbalance": (busy_rows - n / slots) * (row_syrk + row_read),
        "io": n / slots * row_read,
        "merge": merge,
        "checkpoints": saves * save,
        "start": rates.actor_start,
        "pilot": pilot_bytes / rates.file_read_bytes,
    }


@functools.cache
def _owner_work(dims_a, dims_b, diagonal, slots, measures, rates):
    """Seconds of a pass's owner on one core besides fetching (OWNER_TERMS): adding its
    ``slots`` states, each sum a new state (a copy and an in-place add, 2·8W² bytes at the merge
    rate); the tile's pairs × `pair_seconds`; and with CCA or SVCCA the principal axes, an
    eigendecomposition of each member's d×d block in a diagonal tile (eigh's d = 512 time ×
    (d/512)³), a load of each member's kept axes (8·(d² + d) bytes) in the others."""
    member_dims = dims_a if diagonal else dims_a + dims_b
    W = state_width(member_dims)
    adds = (slots - 1) * 2 * 8 * W * W / rates.merge_bytes
    if diagonal:
        pairs = [(a, b) for i, a in enumerate(dims_a) for b in dims_a[i:]]
    else:
        pairs = [(a, b) for a in dims_a for b in dims_b]
    measured = sum(pair_seconds(a, b, measures, rates) for a, b in pairs)
    axes = 0.0
    if any(label in AXES for label in MEASURE_SETS[measures]):
        if diagonal:
            axes = sum(rates.eigh_seconds * (d / 512) ** 3 for d in member_dims)
        else:
            axes = sum(8 * (d * d + d) for d in member_dims) / rates.file_read_bytes
    return {"reduction": adds, "measures": measured, "axes": axes}


class _Owner(NamedTuple):
    start: float
    end: float
    cpu: float  # seconds of one core within [start, end]
    parts: dict  # OWNER_TERMS -> seconds of [start, end] spent on it


def predict(job, rates):
    """Seconds of each term (TERM_NAMES) of the job's moments pass, and its geometry, traffic
    and memory, as the engine runs its tiles (`owned_passes`, default placement).

    The driver runs the passes one after another, each after its pilot means. A pass lasts its
    busiest slot's work and its actors' start (`_pass_terms`), lengthened by the CPU seconds
    of a running owner that fall within it over the cores of a node (an owner is a task of 0
    CPUs: its core is taken from the slots of its node; its CPU time is taken as spread evenly
    over its run). The owner of a pass starts when the pass ends, fetches its states over its
    node's link once the earlier owners on that node have done so, adds them, then measures
    (`_owner_work`). The driver waits for it after the next pass (OWNERS_AHEAD), and for
    every diagonal owner before the first off-diagonal pass; a wait is shared among the
    reduction, measures and axes terms in proportion to the owner's time in each.
    """
    passes, received = owned_passes(job.dims, job.n, job.workers, job.nodes, job.budget)
    cut = groups(job.dims, job.budget)
    group_dims = [tuple(job.dims[i] for i in group) for group in cut]
    terms = dict.fromkeys(TERMS, 0.0)
    owners = dict.fromkeys(("fetch", *OWNER_TERMS), 0.0)  # the owners' work, hidden or not
    link_free = [0.0] * job.nodes
    running = deque()
    clock = 0.0
    flops = bytes_read = reduced = 0
    widest = ()

    def wait(owner):
        nonlocal clock
        if owner.end > clock:
            for key, seconds in owner.parts.items():
                terms[key] += (owner.end - clock) * seconds / (owner.end - owner.start)
            clock = owner.end

    for phase in (passes[: len(cut)], passes[len(cut) :]):  # the diagonal passes, the others
        for owned in phase:
            diagonal = owned.g == owned.h
            member_dims = group_dims[owned.g] + (() if diagonal else group_dims[owned.h])
            part = _pass_terms(member_dims, job.n, job.workers, job.cores, rates)
            clock += part["pilot"]
            terms["pilot"] += part["pilot"]
            length = sum(part[key] for key in PASS_TERMS)
            stolen = sum(
                max(0.0, min(o.end, clock + length) - max(o.start, clock))
                * o.cpu
                / (o.end - o.start)
                for o in running
                if o.end > o.start
            )
            for key in PASS_TERMS:
                terms[key] += part[key]
            terms["contention"] += stolen / job.node_cores
            clock += length + stolen / job.node_cores
            work = _owner_work(
                group_dims[owned.g], group_dims[owned.h], diagonal, owned.slots, job.measures, rates
            )
            fetch = owned.received / rates.network_bytes
            added = max(clock, link_free[owned.owner]) + fetch + work["reduction"]
            link_free[owned.owner] = added
            end = added + work["measures"] + work["axes"]
            parts = {"reduction": added - clock, "measures": work["measures"], "axes": work["axes"]}
            running.append(_Owner(clock, end, sum(work.values()), parts))
            if len(running) > OWNERS_AHEAD:
                wait(running.popleft())
            owners["fetch"] += fetch
            for key in OWNER_TERMS:
                owners[key] += work[key]
            W = state_width(member_dims)
            flops += job.n * W * (W + 1)
            bytes_read += job.n * sum(member_dims) * 4
            reduced += owned.slots * owned.state_bytes
            if W > state_width(widest):
                widest = member_dims
        while running:
            wait(running.popleft())
    M = len(job.dims)
    values = M * (M + 1) // 2 * len(MEASURE_SETS[job.measures])
    pickled, held, table = rates.value_bytes
    W = state_width(widest)
    worker = worker_bytes(widest, rates)
    owner_states = (OWNERS_AHEAD + 1) * 3 * 8 * W * W
    return {
        "terms": terms,
        "total": clock,
        "syrk": flops / (job.workers * job.cores * rates.syrk_flops),
        "owners": owners,
        "tiles": len(passes),
        "groups": len(cut),
        "D": state_width(job.dims),
        "tile_D": W,
        "flops": flops,
        "bytes_read": bytes_read,
        "reads_per_row": len(cut),
        "pairs": M * (M + 1) // 2,
        "values": values,
        "bytes_reduced": reduced,
        "max_bytes_received_per_node": max(received),
        "bytes_to_driver": values * pickled,
        "driver_bytes": values * held,
        "driver_peak_bytes": values * table,
        "worker_bytes": worker,
        "node_bytes": job.node_cores // job.cores * worker + owner_states,
    }


def actor_bytes(D, width, representations, rows, rates):
    """Peak resident bytes of one actor: its running state and the unit's part state (8D² each),
    the unit's float32 rows, one float64 row block, and the process's base."""
    block = block_rows(width + representations + 1) * D * 8
    return 2 * 8 * D * D + rows * width * 4 + block + rates.actor_base_bytes


def worker_bytes(member_dims, rates):
    """Peak bytes of one worker in a pass over ``member_dims``: its actor (`actor_bytes`) and
    two copies of a state in its node's object store, this pass's and the previous pass's
    (kept until that pass's owner has added it): STATES_PER_WORKER states in all. A node adds
    the owners it runs, OWNERS_AHEAD + 1 at most, 3 states each (their sum, the new sum, the
    state being added)."""
    W = state_width(member_dims)
    width = sum(member_dims)
    actor = actor_bytes(W, width, len(member_dims), tile_unit_rows(member_dims), rates)
    return actor + 2 * 8 * W * W


def actor_base_from_part3():
    """The base of `actor_bytes`: part 3's measured peak less what the model counts for it."""
    dims = (128,) * 4
    rows = tile_unit_rows(dims)
    zero = replace(_rates(syrk_flops=1.0), actor_base_bytes=0.0)
    return PART3_VMHWM - actor_bytes(state_width(dims), sum(dims), len(dims), rows, zero)


def _rates(syrk_flops, storage_bytes=math.inf, network_bytes=10e9 / 8):
    return Rates(
        syrk_flops=syrk_flops,
        read_bytes=RECORDED["read_bytes"],
        storage_bytes=storage_bytes,
        file_read_bytes=RECORDED["file_read_bytes"],
        merge_bytes=RECORDED["merge_bytes"],
        checkpoint_bytes=RECORDED["checkpoint_bytes"],
        network_bytes=network_bytes,
        actor_start=RECORDED["actor_start"],
        actor_base_bytes=0.0,
        eigh_seconds=RECORDED["eigh_seconds"],
        pair_seconds=RECORDED["pair_seconds"],
        value_bytes=RECORDED["value_bytes"],
    )


def calibrated_rates(syrk_flops, storage_bytes, network_bytes, value_bytes=None):
    rates = _rates(syrk_flops, storage_bytes, network_bytes)
    rates = replace(rates, value_bytes=value_bytes or rates.value_bytes)
    return replace(rates, actor_base_bytes=actor_base_from_part3())


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


def measure_value_bytes(measures, count=6, size=7):
    """Bytes per value of ``measures`` (a key of MEASURE_SETS) with analytic nulls: pickled as
    an owner sends a tile's `repalign.results.Values`, held by the driver once merged, and the
    driver's peak while it builds the result table (`Values.table`: Python objects by
    tracemalloc, plus the Arrow table's buffers). Measured on the engine's `TileMeasure` of the
    tiles of ``count`` groups of ``size`` small representations named like a zoo's layers: what
    a value costs depends on neither d nor n."""
    from itertools import combinations_with_replacement

    from jobs.passes.moments import TileMeasure
    from repalign.results import Values
    from repalign.spec import Measure
    from repalign.stats import GramState

    configs = [Measure(**CONFIGS[label]) for label in MEASURE_SETS[measures]]
    names = [f"model-{i // 4:03d}/layer-{i % 4:02d}" for i in range(count * size)]
    rng = np.random.default_rng(0)
    data = {name: rng.standard_normal((64, 4)) for name in names}
    cut = [names[g * size : (g + 1) * size] for g in range(count)]
    sent = []
    for g, h in engine_order(count):
        members = cut[g] if g == h else cut[g] + cut[h]
        if g == h:
            pairs = list(combinations_with_replacement(cut[g], 2))
        else:
            pairs = [(a, b) for a in cut[g] for b in cut[h]]
        state = GramState.from_arrays([data[name] for name in members])
        tile = TileMeasure(configs, members, pairs, "analytic", None, None, None)(state)
        sent.append(pickle.dumps(tile, protocol=pickle.HIGHEST_PROTOCOL))
    values = len(configs) * len(names) * (len(names) + 1) // 2
    Values(names[:2], dict.fromkeys(names[:2], "")).table(configs, 64)  # imports, not counted
    tracemalloc.start()
    driver = Values(names, dict.fromkeys(names, ""))
    for blob in sent:
        driver.merge(pickle.loads(blob))
    held = tracemalloc.get_traced_memory()[0]
    table = driver.table(configs, 64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (
        round(sum(map(len, sent)) / values),
        round(held / values),
        round((peak + table.nbytes) / values),
    )


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


# Recorded jobs (benchmarks/RESULTS.md, "engine.py (issue 5)"), each one tile on this 2-core
# machine: label, job, measured whole job and measured actors' part (`run_units`, wall) in
# seconds, None where not recorded.
VALIDATION = (
    ("part 1, recorded run (22:57)", Job((512,) * 16, 200_000, 2, node_cores=2), 165.7, 150.2),
    (
        "part 1, second run (23:23, loaded)",
        Job((512,) * 16, 200_000, 2, node_cores=2),
        202.4,
        171.6,
    ),
    ("part 2 (best of 3)", Job((512,) * 8, 8_000, 2, measures="cka2", node_cores=2), 2.78, 2.41),
    ("part 3, n = 10⁵", Job((128,) * 4, 100_000, 2, node_cores=2), 1.7, None),
    ("part 3, n = 10⁶", Job((128,) * 4, 1_000_000, 2, node_cores=2), 15.4, None),
    (
        "part 5, 1 actor × 2 CPUs (best)",
        Job((512,) * 8, 100_000, 1, 2, "cka", node_cores=2),
        29.4,
        29.0,
    ),
    (
        "part 5, 2 actors × 1 CPU (best)",
        Job((512,) * 8, 100_000, 2, 1, "cka", node_cores=2),
        27.1,
        26.8,
    ),
)
RUN_UNITS = (*PASS_TERMS, "reduction")  # the old engine's `run_units`: the passes, the merge
TARGET_RATIO = 1.3  # the job at most this many times its SYRK time
TARGET_DRIVER_BYTES = 4e9


def dominant(terms):
    return max(terms, key=terms.get)


def shape(job):
    return (
        f"{job.workers} × {job.cores} core{'s' if job.cores > 1 else ''} on {job.nodes} "
        f"node{'s' if job.nodes > 1 else ''} of {job.node_cores}, "
        f"{job.worker_memory / GiB:g} GiB per CPU"
        + (f", tile_bytes {fmt_b(job.tile_bytes)}" if job.tile_bytes else "")
    )


def verdict(met):
    return "**met**" if met else "**missed**"


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
        "The measured runs are of the engine before f6ec19f (the driver added the slots' states "
        "and measured the pairs). Each is one tile on one node, where the engine now does the "
        "same work in an owner task on that node (no state crosses a link), so the model's "
        "terms are the same but for where they run. 'actors' part' is the old `run_units` "
        "(actor start, the actors' reads, SYRK, merges and checkpoints, the adds of the slots' "
        "states); the whole job adds the pilot means and the per-pair measures. The measured "
        "seconds are wall times of runs on this shared machine; the model's SYRK rate is a "
        "dedicated core's.\n"
    )
    p3 = predict(VALIDATION[3][1], rates)
    p1 = predict(VALIDATION[0][1], rates)
    add(
        f"Memory: part 3's actor peak (382 MiB) is the calibration of the actor's base "
        f"({rates.actor_base_bytes / MiB:.0f} MiB besides states, unit and row block); the "
        f"model's workers (the actor and two states in the object store) of part 1 come to "
        f"{p1['worker_bytes'] / MiB:,.0f} MiB, of part 3 to {p3['worker_bytes'] / MiB:.0f} MiB "
        f"(not recorded).\n"
    )

    dims = (args.dim,) * args.models
    job = Job(
        dims,
        args.rows,
        args.workers,
        args.cores,
        args.measures,
        round(args.worker_memory_gib * GiB),
        round(args.tile_gib * GiB) if args.tile_gib else None,
        args.node_cores,
    )
    p = predict(job, rates)
    add(f"## Prediction: {args.models:,} × d = {args.dim:,}, n = {args.rows:,}\n")
    add(f"{shape(job)}; measures '{args.measures}'.\n")
    untiled = 8 * p["D"] ** 2
    group_sizes = sorted({len(g) for g in groups(dims, job.budget)})
    untiled_flops = args.rows * p["D"] * (p["D"] + 1)
    node_memory = job.node_cores * job.worker_memory
    add(
        table(
            ["quantity", "value"],
            [
                ["W = Σ(d+1)+1", f"{p['D']:,}"],
                ["untiled state 8·W²", fmt_b(untiled)],
                ["tile budget (tile_bytes)", fmt_b(job.budget)],
                ["groups G (representations per group)", f"{p['groups']} ({group_sizes})"],
                ["tiles G(G+1)/2 (passes over the rows)", f"{p['tiles']:,}"],
                [
                    "widest tile Wₜ, its state 8·Wₜ²",
                    f"{p['tile_D']:,}, {fmt_b(8 * p['tile_D'] ** 2)}",
                ],
                ["SYRK flops, tiled (Σₜ n·Wₜ(Wₜ+1))", f"{p['flops']:.3g}"],
                ["SYRK flops, untiled (n·W(W+1))", f"{untiled_flops:.3g}"],
                ["tiling overhead (tiled / untiled)", f"{p['flops'] / untiled_flops:.3f}"],
                ["reads_per_row", f"{p['reads_per_row']} (once per tile holding its group)"],
                [
                    "bytes read",
                    f"{fmt_b(p['bytes_read'])} (one pass: {fmt_b(args.rows * sum(dims) * 4)})",
                ],
                ["pairs M(M+1)/2, values (× configurations)", f"{p['pairs']:,}, {p['values']:,}"],
                ["bytes_reduced (Σₜ Sₜ states)", fmt_b(p["bytes_reduced"])],
                ["max_bytes_received_per_node", fmt_b(p["max_bytes_received_per_node"])],
                ["bytes_to_driver (the values, pickled)", fmt_b(p["bytes_to_driver"])],
                [
                    "memory per worker, peak",
                    f"{fmt_b(p['worker_bytes'])} of {fmt_b(job.worker_memory * job.cores)}",
                ],
                [
                    "memory per node, peak (workers and owners)",
                    f"{fmt_b(p['node_bytes'])} of {fmt_b(node_memory)}",
                ],
                ["driver: the values held", fmt_b(p["driver_bytes"])],
                ["driver: peak, building the table", fmt_b(p["driver_peak_bytes"])],
            ],
        )
    )
    rows = [
        [key, TERM_NAMES[key], fmt_s(value), f"{value / p['total']:.1%}"]
        for key, value in p["terms"].items()
    ]
    rows.append(["total", "", f"**{fmt_s(p['total'])}**", "100%"])
    add(table(["term", "what", "time", "share"], rows))
    o = p["owners"]
    owned = sum(o.values())
    waited = sum(p["terms"][k] for k in OWNER_TERMS)
    add(
        f"Dominant term: **{dominant(p['terms'])}**. The owners' work in all: fetching "
        f"{fmt_s(o['fetch'])}, adding {fmt_s(o['reduction'])}, measures {fmt_s(o['measures'])}, "
        f"axes {fmt_s(o['axes'])}; {fmt_s(owned)} in all, of which the driver waited "
        f"{fmt_s(waited)} ({waited / owned:.0%}); the rest ran during the next pass.\n"
    )
    wider = predict(replace(job, workers=4 * job.workers), rates)
    ratio = p["total"] / p["syrk"]
    add(
        table(
            ["target", "prediction", ""],
            [
                [
                    f"≤ {TARGET_RATIO:g}× the SYRK time ({fmt_s(p['syrk'])} = flops / (W · cores · rate))",
                    f"{fmt_s(p['total'])}, {ratio:.2f}×",
                    verdict(ratio <= TARGET_RATIO),
                ],
                [
                    f"≤ {fmt_b(TARGET_DRIVER_BYTES)} at the driver",
                    f"{fmt_b(p['driver_peak_bytes'])} (values held: {fmt_b(p['driver_bytes'])})",
                    verdict(p["driver_peak_bytes"] <= TARGET_DRIVER_BYTES),
                ],
                [
                    f"no longer at {4 * job.workers} workers than at {job.workers}",
                    f"{fmt_s(wider['total'])} against {fmt_s(p['total'])} "
                    f"(dominant: {dominant(wider['terms'])})",
                    verdict(wider["total"] <= p["total"]),
                ],
            ],
        )
    )
    cka = predict(replace(job, measures="cka"), rates)
    add(
        f"With CKA (biased) alone as the measure, the job takes {fmt_s(cka['total'])}, "
        f"{cka['total'] / cka['syrk']:.2f}× its SYRK time (dominant: "
        f"{dominant(cka['terms'])}); the driver's peak is {fmt_b(cka['driver_peak_bytes'])}.\n"
    )

    add(f"## Over workers and n (same representations and nodes, measures '{args.measures}')\n")
    rows = []
    for n in (10**5, 10**6, 10**7):
        for workers in (1, 2, 8, 64, 256):
            q = predict(replace(job, n=n, workers=workers), rates)
            t = q["terms"]
            passes = sum(t[k] for k in (*PASS_TERMS, "contention", "pilot"))
            rows.append(
                [
                    f"{n:,}",
                    workers,
                    fmt_s(t["compute"]),
                    fmt_s(t["io"]),
                    fmt_s(passes),
                    fmt_s(t["reduction"]),
                    fmt_s(t["measures"] + t["axes"]),
                    fmt_s(q["total"]),
                    f"{q['total'] / q['syrk']:.2f}",
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
                "passes (all)",
                "reduction wait",
                "measures wait",
                "total",
                "× SYRK",
                "dominant",
            ],
            rows,
        )
    )

    add(f"## Zoos: M × d = {args.dim:,} at n = {args.rows:,} ({shape(job)})\n")
    rows = []
    for models in (100, 1000, 10000):
        q = predict(replace(job, dims=(args.dim,) * models), rates)
        rows.append(
            [
                f"{models:,}",
                f"{q['tiles']:,}",
                fmt_s(q["syrk"]),
                fmt_s(q["total"]),
                f"{q['total'] / q['syrk']:.2f}",
                dominant(q["terms"]),
                fmt_b(q["max_bytes_received_per_node"]),
                fmt_b(q["driver_bytes"]),
                fmt_b(q["driver_peak_bytes"]),
            ]
        )
    add(
        table(
            [
                "M",
                "tiles",
                "SYRK",
                "total",
                "× SYRK",
                "dominant",
                "max received per node",
                "driver: values",
                "driver: peak",
            ],
            rows,
        )
    )

    add(f"## Layouts for {args.models:,} × d = {args.dim:,} (n = {args.rows:,})\n")
    rows = []
    for cores_total in (job.workers, 4 * job.workers):
        for cores in (1, 4, job.node_cores):
            for tile in (None, cores * job.worker_memory // STATES_PER_WORKER):
                if tile is not None and cores == 1:
                    continue
                layout = replace(job, workers=cores_total // cores, cores=cores, tile_bytes=tile)
                q = predict(layout, rates)
                node_memory = layout.node_cores * layout.worker_memory
                rows.append(
                    [
                        cores_total,
                        f"{layout.workers} × {cores}",
                        fmt_b(layout.budget),
                        f"{q['tiles']:,}",
                        fmt_s(q["total"]),
                        f"{q['total'] / q['syrk']:.2f}",
                        dominant(q["terms"]),
                        f"{q['node_bytes'] / node_memory:.0%}",
                    ]
                )
    add(
        table(
            [
                "CPUs",
                "workers × cores",
                "tile_bytes",
                "tiles",
                "total",
                "× SYRK",
                "dominant",
                "node memory used",
            ],
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
    parser.add_argument("--workers", type=int, default=64, help="actors")
    parser.add_argument("--cores", type=int, default=1, help="CPUs per actor")
    parser.add_argument("--node-cores", type=int, default=16, help="CPUs per node")
    parser.add_argument(
        "--worker-memory-gib",
        type=float,
        default=8.0,
        help="memory per CPU (a worker of one core); the tile budget is a quarter of it",
    )
    parser.add_argument("--tile-gib", type=float, help="the spec's tile_bytes, in GiB")
    parser.add_argument(
        "--measures", choices=sorted(MEASURE_SETS), default="all", help="measure set"
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
                f"float64 dsyrk, 1 thread, W = {w:,} ({block_rows(w):,}-row blocks)",
                f"{m['cpu'] / 1e9:.1f} GFLOP/s by CPU time, {m['wall'] / 1e9:.1f} by wall "
                f"(best of {m['calls']})",
                "measured now" + ("; **the model's rate: CPU time**" if w == 4105 else ""),
            ]
            for w, m in measured.items()
        ]
    value_bytes = measure_value_bytes(args.measures)
    rates = calibrated_rates(
        rate, args.storage_gbyte * GB, args.network_gbit * 1e9 / 8, value_bytes
    )
    src = "RESULTS.md engine part 1, second run"
    pickled, held, peak = value_bytes
    calibration = [
        *syrk,
        [
            "read + convert per worker",
            f"{rates.read_bytes / 1e6:.0f} MB/s",
            f"{src}: 0.249 s per 66.8 MB unit",
        ],
        ["shared storage cap", f"{args.storage_gbyte:g} GB/s", "--storage-gbyte (assumed)"],
        [
            "one process's read (pilot means, kept axes)",
            f"{rates.file_read_bytes / 1e6:,.0f} MB/s",
            "RESULTS.md store.py, `batches`",
        ],
        [
            "in-place merge (and a state's copy)",
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
        [
            "eigendecomposition at d = 512, 1 thread",
            f"{rates.eigh_seconds * 1000:.0f} ms",
            "RESULTS.md engine part 1's note; × (d/512)^3",
        ],
        *[
            [
                f"per pair at d = 512: {label}",
                f"{s * 1000:.0f} ms",
                f"{src}; × (d/512)^{3 if label in SPECTRAL else 2}",
            ]
            for label, s in rates.pair_seconds
        ],
        [
            f"bytes per value ('{args.measures}', analytic nulls)",
            f"{pickled} pickled, {held} held by the driver, {peak} at its peak",
            "measured now (`measure_value_bytes`)",
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
