"""Capacity model of the all-pairs moments pass (`jobs.alignment`, `jobs.passes.moments`,
docs/design.md §4), as the engine runs it since 5c60248.

Predicts the wall time, memory and traffic of the linear-kernel pass of an all-pairs job on Ray
from its shape (n rows, the representations' widths, the actors, their memory and their nodes)
and a few rates of the machine. The engine, as modelled:

- tiles: when the (D+1)×(D+1) float64 statistic exceeds the tile budget (the spec's
  ``tile_bytes``, by default `repalign.stats.default_tile_bytes` of Ray's memory per CPU: a
  `STATES_PER_WORKER`-th of it), the representations are cut into G groups and each pair of
  groups g ≤ h is a tile, one pass over all the rows (`tiles`, as
  `jobs.passes.moments.statistic_tiles` cuts them);
- lanes: the A actors are shared out among the T tiles, R = max(1, ⌊A/T⌋) slots to a tile's
  pass, and L = min(T, ⌊A/R⌋) passes run side by side (`tile_slots`, as
  `jobs.passes.moments.tile_slots`). Lane l takes the diagonal tiles l, l + L, l + 2L, …, then,
  once every lane's diagonal owners are done, the off-diagonal tiles dealt the same way
  (`lanes`). With more tiles than actors (R = 1) a tile is one actor's, over all n rows;
- a pass: its units of rows (`tile_unit_rows`) dealt in turn to S = min(R, units) slots, each
  an actor of c CPUs (`jobs.ray_slots.cpus_per_actor`) that reads its units, SYRKs them into a
  state, merges each unit's part in place, saves a checkpoint now and then (`checkpoint_saves`)
  and leaves its state in the object store of its node;
- an owner per pass: a task of no CPU on the node that would then have received the fewest
  bytes of partial states from other nodes, its receives counted to that node when it is
  placed (`owned_passes`, as `jobs.ray_slots.Owners.choose`). With R = 1 that is the actor's
  node and nothing moves. It fetches the states on other nodes over its node's link, adds them,
  computes the tile's principal axes (diagonal tiles) and pair measures on one core, and sends
  only the values to the driver. It shares its lane's cores with the lane's next pass
  (`lane_seconds`); the lane starts a pass only when the owner two passes back is done
  (`OWNERS_AHEAD`);
- the driver: before the first pass it plans every tile's pass (the pilot means, each
  representation's saved 8·d bytes read once per job; its units; the rows they read; the
  plan's bytes count each tile's own shifts, 8·Σd, which the engine now shares between tiles,
  so the driver's memory is an upper bound), and holds the plans until the
  pass ends and each lane's values until the lane ends; then it builds the result table one
  configuration at a time (`repalign.results.Values.table`).

The byte counts (`bytes_reduced`, `max_bytes_received_per_node`, with `state_bytes`) are those
a job's summary.json reports, computed as the engine counts them; `predict_summary` predicts a
measured job from its summary.json. The geometry mirrors `jobs.alignment` and
`jobs.passes.moments` (`tests/test_capacity.py` checks the tiles, the units, the slots and
lanes, the state bytes and the owners' choice against the code). The model needs only numpy;
the calibration measures the SYRK rate with scipy's `dsyrk` (as the engine calls it) under
threadpoolctl, a few seconds, what a value costs with the engine's own `TileMeasure` and
`Values` (`measure_value_costs`), and what a plan costs with its own `_tile_pass`
(`measure_plan_costs`). The other rates are the figures recorded in `benchmarks/RESULTS.md`
(see `RECORDED`). Markdown goes to stdout.

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
from collections import Counter
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
    value_bytes: tuple  # per value: pickled, held at the pass's end, held, its row, its Arrow
    table_seconds: float  # the driver's seconds per value to build the result table
    plan_bytes: tuple  # a plan: per unit, per member besides its shift, per counted row range
    plan_seconds: tuple  # a plan: per unit and member, per tile


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
    # measured on this machine at 5c60248, 2026-12-04, load average about 2.8 on 2 cores:
    # `measure_value_costs("all")`, bytes per value (pickled, held at the pass's end, held,
    # its row, its Arrow) and the table's seconds per value (6–9 µs in three runs)
    "value_bytes": (64, 433, 383, 820, 160),
    "table_seconds": 9.0e-6,
    # `measure_plan_costs()`, bytes per unit, per member and per counted row range (the
    # member's 270–430 in four runs), seconds per unit and member and per tile
    "plan_bytes": (73, 400, 124),
    "plan_seconds": (0.6e-6, 0.3e-3),
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


def measure_labels(measures):
    """The labels of ``measures``: a key of `MEASURE_SETS`, or a tuple of labels of `CONFIGS`."""
    return MEASURE_SETS[measures] if isinstance(measures, str) else tuple(measures)


def tile_budget(memory_per_cpu):
    """The largest state of a tile for workers of ``memory_per_cpu`` bytes each, when the spec
    sets no ``tile_bytes``: memory / STATES_PER_WORKER (`repalign.stats.default_tile_bytes`)."""
    return memory_per_cpu // STATES_PER_WORKER


@dataclass(frozen=True)
class Job:
    """An all-pairs job's shape, and the actors and nodes it runs on."""

    dims: tuple  # width of each representation
    n: int
    workers: int  # actors A: the job's slots, shared out among the tiles' passes
    cores: int = 1  # CPUs c (BLAS threads) per actor
    measures: str | tuple = "all"  # a key of MEASURE_SETS, or a tuple of labels of CONFIGS
    worker_memory: int = 8 * GiB  # memory per CPU (Ray's, on the node that has least)
    tile_bytes: int | None = None  # the spec's tile_bytes; None: `tile_budget`
    node_cores: int = 16  # CPUs C of each node
    physical_cores: int | None = None  # cores the nodes' CPUs share (one machine); None: C·N
    placement: tuple | None = None  # node of actor l·R + s (`owned_passes`); None: round robin

    @property
    def budget(self):
        """The tile budget the engine uses: the spec's ``tile_bytes``, else `tile_budget`."""
        return self.tile_bytes or tile_budget(self.worker_memory)

    @property
    def nodes(self):
        """N = ⌈A·c / C⌉: the actors are placed on them in turn."""
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
    """The tiles (g, h) of ``count`` groups in the order `jobs.passes.moments.run` deals them to
    lanes: the diagonal ones (g, g), then the others, each in the order of `tiles`."""
    diagonal = [(g, g) for g in range(count)]
    return diagonal + [(g, h) for g in range(count) for h in range(g + 1, count)]


def tile_slots(actors, tiles):
    """(R, L) for ``actors`` actors and ``tiles`` tiles, as `jobs.passes.moments.tile_slots` on
    Ray: R = max(1, ⌊A/T⌋) slots to each tile's pass, L = max(1, min(T, ⌊A/R⌋)) passes side
    by side."""
    per_tile = max(1, actors // tiles)
    return per_tile, max(1, min(tiles, actors // per_tile))


def lanes(phase, count):
    """The tiles of each of ``count`` lanes: lane l takes phase[l], phase[l + L], … (the
    diagonal tiles, then the off-diagonal ones, are each a phase)."""
    return [phase[lane::count] for lane in range(count)]


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


def pass_slots(member_dims, n, per_tile):
    """Sₜ = min(R, ⌈n / rows⌉): one slot per unit at most (`jobs.engine.deal`)."""
    return min(per_tile, -(-n // tile_unit_rows(member_dims)))


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


def counted_ranges(dims, tile_bytes, n):
    """The (representation, row range) pairs that `jobs.alignment.Job.reads` keeps for the
    pass: for each representation, ⌈n / rows⌉ ranges for each distinct unit size among the
    tiles that hold it, less the last ranges that two sizes share (the same start, ending at
    n)."""
    cut = groups(dims, tile_bytes)
    total = 0
    for g, group in enumerate(cut):
        sizes = set()
        for h in range(len(cut)):
            members = group if g == h else cut[min(g, h)] + cut[max(g, h)]
            sizes.add(tile_unit_rows(tuple(dims[i] for i in members)))
        last = Counter((-(-n // rows) - 1) * rows for rows in sizes)
        total += len(group) * (sum(-(-n // rows) for rows in sizes) - len(sizes) + len(last))
    return total


# -- the owners and the bytes they receive --------------------------------------------------


class OwnedPass(NamedTuple):
    """One tile's pass (g, h) as the engine runs it: its lane, its slots, the array bytes of
    each slot's state, the node of its owner and the bytes the owner received from slots on
    other nodes."""

    g: int
    h: int
    lane: int
    slots: int
    state_bytes: int
    owner: int
    received: int


def owned_passes(dims, n, actors, nodes, tile_bytes, placement=None):
    """Each tile's `OwnedPass`, in `engine_order`, and the bytes each node received in all.

    Nodes are numbered 0 … nodes − 1 in the order of their Ray node ids. ``placement[l·R + s]``
    is the node of slot s of lane l's passes (R = 1: the node of lane l's actor), the same for
    every pass of the lane; default (l·R + s) mod nodes, the actors placed in turn. For a
    measured run, the nodes its actors ran on. As `jobs.ray_slots.Owners.choose`, a pass's
    owner goes to the node that minimises what it has received so far plus the bytes of the
    pass's states on other nodes, ties to the lower node, and those bytes are counted to it at
    once. The passes are placed in `engine_order`: the order in which lanes that keep step
    finish them (with R = 1 the order does not matter: each owner is on its actor's node).
    """
    cut = groups(dims, tile_bytes)
    order = engine_order(len(cut))
    per_tile, count = tile_slots(actors, len(order))
    if placement is None:
        placement = [k % nodes for k in range(per_tile * count)]
    if len(placement) < per_tile * count:
        raise ValueError(
            f"placement names {len(placement)} actors' nodes, not R·L = {per_tile} × {count}"
        )
    group_dims = [tuple(dims[i] for i in group) for group in cut]
    received = [0] * nodes
    passes = []
    for phase in (order[: len(cut)], order[len(cut) :]):  # the diagonal tiles, the others
        for index, (g, h) in enumerate(phase):
            lane = index % count
            member_dims = group_dims[g] if g == h else group_dims[g] + group_dims[h]
            slots = pass_slots(member_dims, n, per_tile)
            size = state_bytes(member_dims)
            on_node = Counter(placement[lane * per_tile : lane * per_tile + slots])
            incoming = [(slots - on_node[node]) * size for node in range(nodes)]
            owner = min(range(nodes), key=lambda node: (received[node] + incoming[node], node))
            received[owner] += incoming[owner]
            passes.append(OwnedPass(g, h, lane, slots, size, owner, incoming[owner]))
    return passes, received


def bytes_reduced(dims, n, actors, tile_bytes):
    """summary.json's ``bytes_reduced`` of a job's moments pass: Σ over tiles of Sₜ states of
    `state_bytes` (every slot's state, on the owner's node or not; one per tile when R = 1)."""
    cut = groups(dims, tile_bytes)
    order = engine_order(len(cut))
    per_tile, _ = tile_slots(actors, len(order))
    total = 0
    for g, h in order:
        member_dims = tuple(dims[i] for i in (cut[g] if g == h else cut[g] + cut[h]))
        total += pass_slots(member_dims, n, per_tile) * state_bytes(member_dims)
    return total


def max_bytes_received_per_node(dims, n, actors, nodes, tile_bytes, placement=None):
    """summary.json's ``max_bytes_received_per_node``: the most bytes of partial states that
    the owners on one node received from slots on other nodes (`owned_passes`; 0 when R = 1)."""
    return max(owned_passes(dims, n, actors, nodes, tile_bytes, placement)[1])


# -- the model ------------------------------------------------------------------------------

PASS_TERMS = ("compute", "imbalance", "io", "storage", "merge", "checkpoints", "start")
OWNER_TERMS = ("reduction", "measures", "axes")
LANE_TERMS = (*PASS_TERMS, "contention", *OWNER_TERMS)
TERMS = ("plan", "pilot", *LANE_TERMS, "barrier", "lanes", "table")
TERM_NAMES = {
    "plan": "driver: every pass planned before the first (units, rows read counted)",
    "pilot": "driver: pilot means, each representation's saved 8·d bytes, read serially",
    "compute": "SYRK: Σₜ n·Wₜ(Wₜ+1) / (Sₜ · c · rate) over a lane's tiles",
    "imbalance": "whole units dealt to a pass's slots: its busiest slot's extra rows",
    "io": "reads: n·wₜ·4 B / (Sₜ · a slot's read rate), every tile all n rows of its members",
    "storage": "reads held back by the shared storage or a node's link",
    "merge": "each unit's state merged in place, and the sum copied to the object store",
    "checkpoints": "checkpoint saves: the first after 30 s, then ≤ 5% of a slot's time",
    "start": "actor start, one per pass",
    "contention": "the lane's owners sharing its cores with its next pass",
    "reduction": "waiting for owners: fetching states over a link and adding them",
    "measures": "waiting for owners: per-pair measures, pairs × cost(d)",
    "axes": "waiting for owners: principal axes, once per representation",
    "barrier": "diagonal tiles: waiting for the slowest lane's owners",
    "lanes": "off-diagonal tiles: the slowest lane beyond the mean",
    "table": "driver: the result table, one configuration at a time",
}
"""Every term but plan, pilot, barrier, lanes and table is the mean over the L lanes of its
seconds in each lane; barrier and lanes are each phase's slowest lane less the mean."""


def pair_seconds(dim_a, dim_b, measures, rates):
    """Seconds of one core for one pair: the recorded cost at d = 512, scaled by (d/512)³ for
    the measures that decompose d×d matrices (Procrustes, CCA, SVCCA) and (d/512)² for the
    rest."""
    d = math.sqrt(dim_a * dim_b)
    total = 0.0
    for label, seconds in rates.pair_seconds:
        if label in measure_labels(measures):
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
def _pass_terms(member_dims, n, per_tile, cores, readers, per_node, slow, rates):
    """Seconds of a pass's PASS_TERMS: its busiest slot's work and its actors' start, for
    members of widths ``member_dims``. The slot's CPU work (SYRK, decoding its reads, merges)
    takes ``slow`` times its time on a core of its own. A slot reads its next unit while it
    computes this one, so the storage and the links only bound the pass from below: the
    ``readers`` slots running at once move n/Sₜ·wₜ·4 bytes of rows each through the shared
    storage at B, ``per_node`` of them through a node's link ("storage": what the bound adds).
    Checkpoint saves are left out of the bound: the engine keeps them to a share of a slot's
    time whatever they take."""
    W = state_width(member_dims)
    width = sum(member_dims)
    state = 8 * W * W
    units, busy_rows = busiest_slot(n, tile_unit_rows(member_dims), per_tile)
    slots = pass_slots(member_dims, n, per_tile)
    row_syrk = slow * W * (W + 1) / (cores * rates.syrk_flops)
    row_read = slow * width * 4 / rates.read_bytes
    merge = slow * units * state / rates.merge_bytes  # units − 1 merges, the copy to the store
    save = state / rates.checkpoint_bytes
    saves = checkpoint_saves(busy_rows * (row_syrk + row_read) + merge, save)
    terms = {
        "compute": n / slots * row_syrk,
        "imbalance": (busy_rows - n / slots) * (row_syrk + row_read),
        "io": n / slots * row_read,
        "storage": 0.0,
        "merge": merge,
        "checkpoints": saves * save,
        "start": rates.actor_start,
    }
    moved = n / slots * width * 4
    bound = max(readers * moved / rates.storage_bytes, per_node * moved / rates.network_bytes)
    terms["storage"] = max(0.0, bound - sum(terms.values()))
    return terms


@functools.cache
def _owner_work(dims_a, dims_b, diagonal, slots, measures, slow, rates):
    """CPU seconds of a pass's owner (OWNER_TERMS), ``slow`` times those of a core of its own:
    adding its ``slots`` states, each sum a new state (a copy and an in-place add, 2·8W² bytes
    at the merge rate; none when Sₜ = 1); the tile's pairs × `pair_seconds`; and with CCA or
    SVCCA the principal axes, an eigendecomposition of each member's d×d block in a diagonal
    tile (eigh's d = 512 time × (d/512)³), a load of each member's kept axes (8·(d² + d) bytes)
    in the others."""
    member_dims = dims_a if diagonal else dims_a + dims_b
    W = state_width(member_dims)
    adds = (slots - 1) * 2 * 8 * W * W / rates.merge_bytes
    if diagonal:
        pairs = [(a, b) for i, a in enumerate(dims_a) for b in dims_a[i:]]
    else:
        pairs = [(a, b) for a in dims_a for b in dims_b]
    measured = sum(pair_seconds(a, b, measures, rates) for a, b in pairs)
    axes = 0.0
    if any(label in AXES for label in measure_labels(measures)):
        if diagonal:
            axes = sum(rates.eigh_seconds * (d / 512) ** 3 for d in member_dims)
        else:
            axes = sum(8 * (d * d + d) for d in member_dims) / rates.file_read_bytes
    return {"reduction": slow * adds, "measures": slow * measured, "axes": slow * axes}


class _Running:
    """An owner in `lane_seconds`: when its fetch ends, the CPU seconds it has left, its
    seconds by OWNER_TERMS (fetching counted as reduction), and when it ended (None: runs)."""

    def __init__(self, fetched, left, parts):
        self.fetched, self.left, self.parts, self.end = fetched, left, parts, None


def lane_seconds(steps, cores):
    """A lane's seconds, and their split by LANE_TERMS (which add up to them), as
    `jobs.passes.moments._run_lane` runs its passes.

    ``steps``: for each pass, its PASS_TERMS seconds (`_pass_terms`), its owner's seconds of
    fetching (no CPU) and its owner's CPU seconds by OWNER_TERMS (`_owner_work`). Owner t starts
    when pass t ends; pass t + 1 starts then too, once owner t − 1 is done (OWNERS_AHEAD), and
    the lane ends when its last owner is done. The pass and the running owners share the
    lane's ``cores`` (k = min(C, R·c)): a pass is k threads, an owner one, and each thread runs
    at min(1, k / threads) of a core. So an owner lengthens the pass it runs beside
    ("contention"), and is slowed by it: with one core, each runs at half speed while both run.
    A wait for an owner is split among its terms in proportion to its seconds in each.
    """
    spent = dict.fromkeys(LANE_TERMS, 0.0)
    running = []
    clock = 0.0

    def advance(work, until):
        """Run the pass's ``work`` seconds (None: no pass) beside the owners, until the pass
        ends or owner ``until`` is done."""
        nonlocal clock
        while (work is not None and work > 0) or (until is not None and until.end is None):
            active = [o for o in running if o.end is None and o.fetched <= clock]
            threads = len(active) + (cores if work is not None else 0)
            speed = min(1.0, cores / threads) if threads else 1.0
            step = min(
                [o.left / speed for o in active]
                + [o.fetched - clock for o in running if o.end is None and o.fetched > clock]
                + ([work / speed] if work is not None else [])
            )
            clock += step
            if work is not None:
                work = 0.0 if work / speed <= step else work - step * speed
            for o in active:
                if o.left / speed <= step:
                    o.left, o.end = 0.0, clock
                else:
                    o.left -= step * speed

    def wait_for(owner):
        started = clock
        advance(None, owner)
        total = sum(owner.parts.values())
        for key, seconds in owner.parts.items():
            spent[key] += (clock - started) * seconds / total if total else 0.0
        running.remove(owner)

    for work, fetch, owner in steps:
        length = sum(work.values())
        started = clock
        advance(length, None)
        for key, seconds in work.items():
            spent[key] += seconds
        spent["contention"] += clock - started - length
        parts = {**owner, "reduction": fetch + owner["reduction"]}
        running.append(_Running(clock + fetch, sum(owner.values()), parts))
        if len(running) > OWNERS_AHEAD:
            wait_for(running[0])
    while running:
        wait_for(running[0])
    return clock, spent


def plan_costs(member_dims, n, rates):
    """(bytes, seconds) of the driver's plan of one tile's pass besides its pilot means
    (`jobs.passes.moments._tile_pass`): 8·Σd of shifts, ``plan_bytes`` per unit and per member;
    ``plan_seconds`` per unit and member (its rows counted in `Job.reads`) and per tile."""
    units = -(-n // tile_unit_rows(member_dims))
    per_unit, per_member, _ = rates.plan_bytes
    per_read, per_tile = rates.plan_seconds
    members = len(member_dims)
    held = 8 * sum(member_dims) + per_member * members + per_unit * units
    return held, per_read * units * members + per_tile


def predict(job, rates):
    """Seconds of each term (TERM_NAMES) of the job's moments pass and its result table, and
    its geometry, traffic and memory, as the engine runs its tiles (`owned_passes`, with the
    job's placement).

    The driver plans every tile's pass, its pilot means read serially, then runs the diagonal
    tiles' lanes, then (every lane done) the off-diagonal tiles' lanes (`lane_seconds`), then
    builds the table. In a phase the R·L' slots of its L' non-empty lanes read at once; on a
    machine whose ``physical_cores`` are fewer than the CPUs in use, a lane's CPU work takes
    R·L'·c / physical_cores times as long.
    """
    passes, received = owned_passes(
        job.dims, job.n, job.workers, job.nodes, job.budget, job.placement
    )
    cut = groups(job.dims, job.budget)
    group_dims = [tuple(job.dims[i] for i in group) for group in cut]
    per_tile, count = tile_slots(job.workers, len(passes))
    cores = min(job.node_cores, per_tile * job.cores)
    terms = dict.fromkeys(TERMS, 0.0)
    owners = dict.fromkeys(("fetch", *OWNER_TERMS), 0.0)  # the owners' work, hidden or not
    flops = bytes_read = reduced = plan_bytes = 0
    widest = ()
    for owned in passes:
        member_dims = group_dims[owned.g] + (() if owned.g == owned.h else group_dims[owned.h])
        held, seconds = plan_costs(member_dims, job.n, rates)
        plan_bytes += held
        terms["plan"] += seconds
        W = state_width(member_dims)
        flops += job.n * W * (W + 1)
        bytes_read += job.n * sum(member_dims) * 4
        reduced += owned.slots * owned.state_bytes
        if W > state_width(widest):
            widest = member_dims
    # each representation's pilot mean is read once per job (`Job.pilot_shifts`), as its
    # writer saved it (`repalign.store.format.PILOT_FILE`)
    pilot = sum(8 * d for d in job.dims)
    terms["pilot"] = pilot / rates.file_read_bytes
    clock = terms["plan"] + terms["pilot"]
    for phase, tail in ((passes[: len(cut)], "barrier"), (passes[len(cut) :], "lanes")):
        dealt = [lane for lane in lanes(phase, count) if lane]
        if not dealt:
            continue
        readers = per_tile * len(dealt)
        per_node = -(-readers // job.nodes)
        slow = 1.0
        if job.physical_cores:
            slow = max(1.0, readers * job.cores / job.physical_cores)
        ends = []
        for lane in dealt:
            steps = []
            for owned in lane:
                diagonal = owned.g == owned.h
                a, b = group_dims[owned.g], group_dims[owned.h]
                member_dims = a if diagonal else a + b
                work = _pass_terms(
                    member_dims, job.n, per_tile, job.cores, readers, per_node, slow, rates
                )
                owner = _owner_work(a, b, diagonal, owned.slots, job.measures, slow, rates)
                fetch = owned.received / rates.network_bytes
                steps.append((work, fetch, owner))
                owners["fetch"] += fetch
                for key in OWNER_TERMS:
                    owners[key] += owner[key]
            end, spent = lane_seconds(steps, cores)
            ends.append(end)
            for key, seconds in spent.items():
                terms[key] += seconds / count
        terms[tail] += max(ends) - sum(ends) / count
        clock += max(ends)
    M = len(job.dims)
    pairs = M * (M + 1) // 2
    values = pairs * len(measure_labels(job.measures))
    terms["table"] = values * rates.table_seconds
    clock += terms["table"]
    pickled, in_pass, held, row, arrow = rates.value_bytes
    ranges = counted_ranges(job.dims, job.budget, job.n) * rates.plan_bytes[2]
    W = state_width(widest)
    worker = worker_bytes(widest, rates)
    node_owners = 0
    if per_tile > 1:  # owners adding states: their sum, the new sum, the state being added
        node_owners = -(-count * (OWNERS_AHEAD + 1) // job.nodes) * 3 * 8 * W * W
    actors_on_node = min(job.node_cores // job.cores, -(-per_tile * count // job.nodes))
    driver_pass = plan_bytes + ranges + values * in_pass
    driver_table = ranges + values * (held + arrow) + pairs * row
    return {
        "terms": terms,
        "total": clock,
        "moments_seconds": clock - terms["table"],
        "syrk": flops / (job.workers * job.cores * rates.syrk_flops),
        "owners": owners,
        "tiles": len(passes),
        "groups": len(cut),
        "per_tile": per_tile,
        "lanes": count,
        "D": state_width(job.dims),
        "tile_D": W,
        "flops": flops,
        "bytes_read": bytes_read,
        "reads_per_row": len(cut),
        "pairs": pairs,
        "values": values,
        "bytes_reduced": reduced,
        "max_bytes_received_per_node": max(received),
        "bytes_to_driver": values * pickled,
        "plan_bytes": plan_bytes,
        "ranges_bytes": ranges,
        "driver_pass_bytes": driver_pass,
        "driver_table_bytes": driver_table,
        "driver_peak_bytes": max(driver_pass, driver_table),
        "worker_bytes": worker,
        "node_bytes": actors_on_node * worker + node_owners,
        "object_store_bytes": actors_on_node * 2 * state_bytes(widest),
    }


def predict_summary(summary, dims, rates, *, cores=1, node_cores=1, **layout):
    """The prediction (`predict`) for a job that ran, from its summary.json (``n``, ``slots``,
    ``configurations``, ``params.tile_bytes``) and its representations' widths ``dims``, with
    ``cores`` CPUs per actor on nodes of ``node_cores``; ``layout``: `Job`'s
    ``physical_cores`` and ``placement``. Its ``moments_seconds`` compares with the summary's
    ``pass_seconds["moments"]``; its ``total`` adds the table, not Ray's start nor the writes."""
    job = Job(
        tuple(dims),
        summary["n"],
        summary["slots"],
        cores,
        measure_labels_of(summary["configurations"]),
        tile_bytes=summary["params"]["tile_bytes"],
        node_cores=node_cores,
        **layout,
    )
    return predict(job, rates)


def measure_labels_of(configurations):
    """The labels of `CONFIGS` of a summary's ``configurations`` (`repalign.spec.Measure`'s
    labels, such as ``cka:linear:biased``)."""
    from repalign.spec import Measure

    label_of = {Measure(**config).label: label for label, config in CONFIGS.items()}
    return tuple(label_of[configuration] for configuration in configurations)


def actor_bytes(D, width, representations, rows, rates):
    """Peak resident bytes of one actor: its running state and the unit's part state (8D² each),
    the unit's float32 rows, one float64 row block, and the process's base."""
    block = block_rows(width + representations + 1) * D * 8
    return 2 * 8 * D * D + rows * width * 4 + block + rates.actor_base_bytes


def worker_bytes(member_dims, rates):
    """Peak bytes of one worker in a pass over ``member_dims``: its actor (`actor_bytes`) and
    two copies of a state in its node's object store, this pass's and the previous pass's
    (kept until that pass's owner is done; with R = 1 the owner reads it there, without a
    copy): STATES_PER_WORKER states in all."""
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
        table_seconds=RECORDED["table_seconds"],
        plan_bytes=RECORDED["plan_bytes"],
        plan_seconds=RECORDED["plan_seconds"],
    )


def calibrated_rates(syrk_flops, storage_bytes, network_bytes, values=None, plans=None):
    """The rates: ``values`` (`measure_value_costs`) and ``plans`` (`measure_plan_costs`) as
    measured, else as RECORDED."""
    rates = _rates(syrk_flops, storage_bytes, network_bytes)
    if values is not None:
        rates = replace(rates, value_bytes=values[0], table_seconds=values[1])
    if plans is not None:
        rates = replace(rates, plan_bytes=plans[0], plan_seconds=plans[1])
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


def measure_value_costs(measures, count=6, size=7):
    """What a value of ``measures`` (a key of MEASURE_SETS) with analytic nulls costs the
    driver: bytes pickled as an owner sends a tile's `repalign.results.Values`; held at the
    end of the pass, when every tile's values are held by its lane's results besides the
    merged ones; held once merged; the Python objects of its row while `Values.table` builds
    its configuration (tracemalloc's peak, per value of one configuration); its row of the
    Arrow table; and the seconds per value of `Values.table`. Measured on the engine's
    `TileMeasure` of the tiles of ``count`` groups of ``size`` small representations named like
    a zoo's layers: what a value costs depends on neither d nor n."""
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
    pairs = len(names) * (len(names) + 1) // 2
    values = len(configs) * pairs
    Values(names[:2], dict.fromkeys(names[:2], "")).table(configs, 64)  # imports, not counted
    tracemalloc.start()
    driver = Values(names, dict.fromkeys(names, ""))
    results = [pickle.loads(blob) for blob in sent]
    for result in results:
        driver.merge(result)
    in_pass = tracemalloc.get_traced_memory()[0]
    del results
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    table = driver.table(configs, 64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    seconds = math.inf
    for _ in range(3):
        started = time.perf_counter()
        driver.table(configs, 64)
        seconds = min(seconds, time.perf_counter() - started)
    sizes = (
        round(sum(map(len, sent)) / values),
        round(in_pass / values),
        round(held / values),
        round((peak - held) / pairs),
        round(table.nbytes / values),
    )
    return sizes, seconds / values


class _WidthsStore(dict):
    """A store that knows only its representations' widths (`measure_plan_costs`)."""

    path = "store"


def measure_plan_costs(n=10**6, dims=(1024,) * 14, repeats=3):
    """What the driver's plan of one tile's pass costs, on the engine's
    `jobs.passes.moments._tile_pass` for two groups of ``dims`` at n and n / 10 rows (a job
    that knows only widths; its pilot means are zeros, their reads priced apart): bytes held
    per unit and per member besides its shift's 8·d, and per (representation, row range)
    counted in `Job.reads`; seconds per unit and member and per tile, the best of
    ``repeats``."""
    from pathlib import Path
    from types import SimpleNamespace

    import jobs.alignment
    from jobs.passes import moments
    from repalign.spec import Measure

    names = [f"model-{i // 4:03d}/layer-{i % 4:02d}" for i in range(len(dims))]
    half = len(dims) // 2
    configs = [Measure(name="cka")]

    def stub(rows):
        widths = zip(names, dims, strict=True)
        store = _WidthsStore({name: SimpleNamespace(dim=d) for name, d in widths})
        job = SimpleNamespace(
            store=store,
            n=rows,
            executor="ray",
            spec=SimpleNamespace(actors=None, jackknife=None, precision="float64", null="none"),
            reads={},
            passing="moments",
            checkpoints=Path("out") / ".checkpoints",
            quiet=True,
            cpus=1,
            blocks_computed=0,
            permutation=None,
            pilot_shifts=lambda members: [np.zeros(store[name].dim) for name in members],
        )
        job.row_units = functools.partial(jobs.alignment.Job.row_units, job)
        job.engine_options = functools.partial(jobs.alignment.Job.engine_options, job)
        return job

    def plan(job):
        return moments._tile_pass(job, configs, names[:half], names[half:], None, None, 1)

    def held(job):
        """Bytes a plan adds (and its units)."""
        before = tracemalloc.get_traced_memory()[0]
        made = plan(job)
        return tracemalloc.get_traced_memory()[0] - before, len(made.units)

    def seconds(job):
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            plan(job)
            best = min(best, time.perf_counter() - started)
        return best

    large, small = stub(n), stub(n // 10)
    tracemalloc.start()
    first, units = held(large)  # its ranges counted anew
    again, _ = held(large)
    plan(small)
    fewer, few_units = held(small)
    tracemalloc.stop()
    members = len(dims)
    per_unit = (again - fewer) / (units - few_units)
    per_member = (again - per_unit * units - 8 * sum(dims)) / members
    per_range = (first - again) / (units * members)
    slow, fast = seconds(large), seconds(small)
    per_read = (slow - fast) / ((units - few_units) * members)
    per_tile = slow - per_read * units * members
    return (round(per_unit), round(per_member), round(per_range)), (per_read, per_tile)


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
BENCHMARK = Job(
    (256,) * 24,
    50_000,
    3,
    measures=("cka biased", "ka", "procrustes"),
    tile_bytes=8 * (2 * (8 * 257 + 128)) ** 2,  # groups of 8: 8·257 ≤ b < 9·257 columns
    node_cores=1,
    physical_cores=2,
)
"""benchmarks/cluster.py's job: 24 × 256 at n = 50,000, three tiles' groups of 8, 3 actors on
three nodes of one CPU that share this machine's 2 cores."""
TARGET_RATIO = 1.3  # the job at most this many times its SYRK time
TARGET_DRIVER_BYTES = 4e9


def dominant(terms):
    return max(terms, key=terms.get)


OUTCOME = (
    "tiles",
    "R × L",
    "SYRK",
    "total",
    "× SYRK",
    "largest besides SYRK",
    "node memory used",
    "driver: peak",
)


def outcome(job, p):
    """The cells of OUTCOME for a job and its prediction ``p``."""
    beyond = {key: value for key, value in p["terms"].items() if key != "compute"}
    largest = dominant(beyond)
    return [
        f"{p['tiles']:,}",
        f"{p['per_tile']} × {p['lanes']}",
        fmt_s(p["syrk"]),
        fmt_s(p["total"]),
        f"{p['total'] / p['syrk']:.2f}",
        f"{largest} ({fmt_s(beyond[largest])})",
        f"{p['node_bytes'] / (job.node_cores * job.worker_memory):.0%}",
        fmt_b(p["driver_peak_bytes"]),
    ]


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
        "and measured the pairs). Each is one tile on one node: the engine now gives that tile "
        "all the actors (R = A, one lane) and an owner task on that node adds their states and "
        "measures the pairs, so the model's terms are the same but for where they run. "
        "'actors' part' is the old `run_units` (actor start, the actors' reads, SYRK, merges "
        "and checkpoints, the adds of the slots' states); the whole job adds the plan with its "
        "pilot means, the per-pair measures and the table. The measured seconds are wall times "
        "of runs on this shared machine; the model's SYRK rate is a dedicated core's.\n"
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
                    "slots per tile R, lanes L (actors used R·L)",
                    f"{p['per_tile']}, {p['lanes']} ({p['per_tile'] * p['lanes']} of "
                    f"{job.workers})",
                ],
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
                [
                    "of which in a node's object store (2 states an actor)",
                    fmt_b(p["object_store_bytes"]),
                ],
                [
                    "driver at the pass's end: plans, row ranges, values",
                    f"{fmt_b(p['driver_pass_bytes'])} ({fmt_b(p['plan_bytes'])}, "
                    f"{fmt_b(p['ranges_bytes'])}, "
                    f"{fmt_b(p['driver_pass_bytes'] - p['plan_bytes'] - p['ranges_bytes'])})",
                ],
                ["driver building the table", fmt_b(p["driver_table_bytes"])],
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
        f"axes {fmt_s(o['axes'])}: {fmt_s(owned)}, {fmt_s(owned / p['lanes'])} a lane, of which "
        f"a lane waited {fmt_s(waited)} and lost {fmt_s(p['terms']['contention'])} to sharing "
        "its cores; the rest ran beside the lane's next pass.\n"
    )
    wider = predict(replace(job, workers=4 * job.workers), rates)
    ratio = p["total"] / p["syrk"]
    add(
        table(
            ["target", "prediction", ""],
            [
                [
                    f"≤ {TARGET_RATIO:g}× the SYRK time, flops / (workers · cores · rate) = "
                    f"{fmt_s(p['syrk'])}",
                    f"{fmt_s(p['total'])}, {ratio:.2f}×",
                    verdict(ratio <= TARGET_RATIO),
                ],
                [
                    f"≤ {fmt_b(TARGET_DRIVER_BYTES)} at the driver",
                    f"{fmt_b(p['driver_peak_bytes'])} (pass's end "
                    f"{fmt_b(p['driver_pass_bytes'])}, table {fmt_b(p['driver_table_bytes'])})",
                    verdict(p["driver_peak_bytes"] <= TARGET_DRIVER_BYTES),
                ],
                [
                    f"no longer at {4 * job.workers} workers than at {job.workers}",
                    f"{fmt_s(wider['total'])} against {fmt_s(p['total'])} "
                    f"({wider['total'] / wider['syrk']:.2f}× its SYRK; largest besides SYRK: "
                    f"{outcome(replace(job, workers=4 * job.workers), wider)[5]})",
                    verdict(wider["total"] <= p["total"]),
                ],
            ],
        )
    )
    cka = predict(replace(job, measures="cka"), rates)
    add(
        f"With CKA (biased) alone as the measure, the job takes {fmt_s(cka['total'])}, "
        f"{cka['total'] / cka['syrk']:.2f}× its SYRK time (largest besides SYRK: "
        f"{outcome(job, cka)[5]}); the driver's peak is {fmt_b(cka['driver_peak_bytes'])}.\n"
    )

    add(
        f"## Over workers and n (same representations, nodes of {job.node_cores} CPUs, "
        f"measures '{args.measures}')\n"
    )
    rows = []
    for n in (10**5, 10**6, 10**7):
        for workers in (1, 2, 8, 64, 256, 1024):
            q = predict(replace(job, n=n, workers=workers), rates)
            t = q["terms"]
            rows.append(
                [
                    f"{n:,}",
                    workers,
                    f"{q['per_tile']} × {q['lanes']}",
                    fmt_s(t["compute"]),
                    fmt_s(t["io"] + t["storage"]),
                    fmt_s(t["contention"] + sum(t[k] for k in OWNER_TERMS)),
                    fmt_s(t["barrier"] + t["lanes"]),
                    fmt_s(t["plan"] + t["pilot"] + t["table"]),
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
                "R × L",
                "compute",
                "reads",
                "owners",
                "lanes",
                "driver",
                "total",
                "× SYRK",
                "dominant",
            ],
            rows,
        )
    )
    add(
        "'reads': io and storage; 'owners': contention and the waits for owners (reduction, "
        "measures, axes); 'lanes': the barrier and the last lanes; 'driver': plan, pilot means "
        "and table.\n"
    )

    add(f"## Zoos: M × d = {args.dim:,} at n = {args.rows:,} ({shape(job)})\n")
    rows = []
    for models in (100, 1000, 10000):
        zoo = replace(job, dims=(args.dim,) * models)
        rows.append([f"{models:,}", *outcome(zoo, predict(zoo, rates))])
    add(table(["M", *OUTCOME], rows))

    add(
        f"## Layouts for {args.models:,} × d = {args.dim:,} (n = {args.rows:,}, "
        f"nodes of {job.node_cores} CPUs)\n"
    )
    rows, best = [], None
    for cpus in (job.workers * job.cores, 4 * job.workers * job.cores):
        for cores in (1, 2, 4, 8, 16):
            layout = replace(job, workers=cpus // cores, cores=cores)
            q = predict(layout, rates)
            if cpus == job.workers * job.cores and (best is None or q["total"] < best[1]):
                best = layout, q["total"]
            rows.append([f"{layout.workers} × {cores}", f"{layout.worker_memory / GiB:g} GiB"])
            rows[-1] += outcome(layout, q)
    for memory in (job.worker_memory // 2, 2 * job.worker_memory):
        layout = replace(best[0], worker_memory=memory)
        rows.append([f"{layout.workers} × {layout.cores}", f"{memory / GiB:g} GiB"])
        rows[-1] += outcome(layout, predict(layout, rates))
    add(table(["workers × cores", "memory per CPU", *OUTCOME], rows))

    b = BENCHMARK
    q = predict(b, rates)
    add(
        f"## `benchmarks/cluster.py`'s job: {len(b.dims)} × {b.dims[0]}, n = {b.n:,}, on "
        f"{b.nodes} nodes of one CPU sharing {b.physical_cores} cores\n"
    )
    add(
        f"Measures {', '.join(measure_labels(b.measures))}; tile_bytes {b.tile_bytes:,} "
        f"({q['groups']} groups, {q['tiles']} tiles, R × L = {q['per_tile']} × {q['lanes']}); "
        f"the rates above, a lane's CPU work × {b.workers / b.physical_cores:g} "
        "(`Job.physical_cores`).\n"
    )
    add(
        table(
            ["quantity", "predicted"],
            [
                ["the moments pass (summary's pass_seconds.moments)", fmt_s(q["moments_seconds"])],
                ["with the table", fmt_s(q["total"])],
                *[[f"term: {key}", fmt_s(value)] for key, value in q["terms"].items() if value],
                ["bytes_reduced", f"{q['bytes_reduced']:,}"],
                ["max_bytes_received_per_node", f"{q['max_bytes_received_per_node']:,}"],
                ["bytes_to_driver (the values, pickled)", f"{q['bytes_to_driver']:,}"],
            ],
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
    values = measure_value_costs(args.measures)
    plans = measure_plan_costs()
    rates = calibrated_rates(
        rate, args.storage_gbyte * GB, args.network_gbit * 1e9 / 8, values, plans
    )
    src = "RESULTS.md engine part 1, second run"
    pickled, in_pass, held, row, arrow = rates.value_bytes
    per_unit, per_member, per_range = rates.plan_bytes
    per_read, per_tile = rates.plan_seconds
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
            f"{pickled} pickled, {in_pass} held at the pass's end, {held} once merged, "
            f"{row} for its row, {arrow} in Arrow",
            "measured now (`measure_value_costs`)",
        ],
        [
            "the table, per value",
            f"{rates.table_seconds * 1e6:.1f} µs",
            "measured now (`measure_value_costs`)",
        ],
        [
            "a tile's plan, bytes",
            f"8·Σd + {per_member} per member + {per_unit} per unit; {per_range} per counted "
            "row range",
            "measured now (`measure_plan_costs`)",
        ],
        [
            "a tile's plan, seconds",
            f"{per_read * 1e6:.2f} µs per unit and member + {per_tile * 1000:.2f} ms",
            "measured now (`measure_plan_costs`)",
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
