"""The moments pass: one `GramState` of second moments over all the representations, from
which every linear-kernel measure (KA, CKA, HSIC, Procrustes, CCA, SVCCA) of every pair comes.

When the D×D statistic is too large for one state it is cut into tiles of groups of
representations (`statistic_tiles`), one pass over the rows each. Each tile's state is added up
and measured by its *owner* (`TileMeasure`, run by `jobs.engine.owned_units`): on Ray a task on
a node of the cluster, so that only values come back to the driver; the diagonal tiles first,
whose owners keep each representation's principal axes for the other tiles' owners. With the
saved state of an earlier run, only the blocks that involve new representations are computed.
The moments also say which representations are constant; a job without this pass finds them
with `find_constants`.
"""

import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations_with_replacement
from typing import NamedTuple

import numpy as np

from jobs.progress import Progress
from jobs.tasks import MomentTask, RangeTask
from repalign.contract import atomic_write
from repalign.measures.jackknife import group_bounds, jackknife_std_errs, total_of
from repalign.measures.moments import record_pairs
from repalign.measures.spectra import principal_axes
from repalign.results import Values
from repalign.stats import moment_matrix_bytes

SPECTRAL = ("procrustes", "cca", "svcca")
"""The measures that read each representation's principal axes."""
OWNERS_AHEAD = 1
"""Owners of earlier tiles that may still run while the next tile's pass computes: each holds
its tile's partial states in the object store until it has added them."""


def run(job, configs):
    """Record every pair's value of the linear-kernel ``configs``."""
    names = job.values.usable()
    if not names:
        return
    if job.previous is not None and not job.spec.jackknife:
        _run_incremental(job, configs, names)
        return
    # with the jackknife, a state per group besides the total: the same memory in all
    states = 1 + (job.spec.jackknife or 0)
    tiles = statistic_tiles(job.store, names, job.tile_bytes // states)
    axes = None
    if len(tiles) > 1 and any(config.name in SPECTRAL for config in configs):
        axes = str(job.checkpoints / "axes")
        os.makedirs(axes, exist_ok=True)
    save = str(job.saved_moments) if len(tiles) == 1 and job.saved_moments else None
    slots, side_by_side = tile_slots(job.executor, job.slots, len(tiles))
    passes = [_tile_pass(job, configs, a, b, axes, save, slots) for a, b in tiles]
    description = f"moments ({len(names)} representations, {len(tiles)} tiles)"
    total = len(tiles) * job.n
    with Progress(total=total, desc=description, unit="rows", unit_scale=True,
                  disable=job.quiet or None) as bar:  # fmt: skip
        # the diagonal tiles' owners keep the axes; every one of them is done before the other
        # tiles' owners start, which read them
        for diagonal in (True, False):
            chosen = [p for p in passes if (p.group_a == p.group_b) == diagonal]
            lanes = [chosen[lane::side_by_side] for lane in range(side_by_side)]
            with ThreadPoolExecutor(len(lanes), thread_name_prefix="tiles") as pool:
                for results in pool.map(lambda lane: _run_lane(job, lane, bar), lanes):
                    for result in results:
                        job.take_owned(result)
    if save is not None:
        job.moments = (names, save)


def tile_slots(executor, slots, tiles):
    """The slots of each tile's pass, and how many tiles' passes run side by side.

    On Ray, ``slots`` actors are shared out among the tiles: a tile's rows are cut among
    slots // tiles actors (at least one), and that many tiles run at once, so that with more
    tiles than actors each tile is one actor's whole, its owner on the same node, and no
    partial state moves. In process, one tile after another, with all the slots."""
    if executor == "local":
        return slots, 1
    per_tile = max(1, slots // tiles)
    return per_tile, max(1, min(tiles, slots // per_tile))


class TilePass(NamedTuple):
    """One tile's pass, planned by the driver: its groups, task, row units, owner's measure
    and the `jobs.alignment.Job.engine_options` it runs with."""

    group_a: list
    group_b: list
    task: MomentTask
    units: list
    measure: "TileMeasure"
    options: dict


def _tile_pass(job, configs, group_a, group_b, axes, save, slots):
    """Plan the pass of one tile, its owner measuring its pairs (`TileMeasure`)."""
    members = group_a if group_a == group_b else group_a + group_b
    if group_a == group_b:
        pairs = list(combinations_with_replacement(group_a, 2))
    else:
        pairs = [(a, b) for a in group_a for b in group_b]
    job.blocks_computed += len(pairs)
    jackknife = job.spec.jackknife
    units = job.row_units(members)
    bounds = group_bounds(job.n, jackknife) if jackknife else None
    shifts = job.pilot_shifts(members)
    task = MomentTask(job.store.path, members, shifts, precision=job.spec.precision, groups=bounds)
    measure = TileMeasure(configs, members, pairs, job.spec.null, jackknife, axes, save)
    description = f"moments ({len(members)} representations)"
    options = job.engine_options(task, units, description, slots)
    return TilePass(group_a, group_b, task, units, measure, options)


def _run_lane(job, passes, bar):
    """Run ``passes`` one after another (on Ray, a pass's owner measures while the next pass
    computes, `OWNERS_AHEAD`); their `jobs.engine.OwnedResult` in order."""
    running, results = [], []
    for tile in passes:
        running.append(job.owned_units(tile.task, tile.units, tile.measure, tile.options, bar))
        if len(running) > OWNERS_AHEAD:
            results.append(running.pop(0).result())
    results.extend(owned.result() for owned in running)
    return results


def _run_incremental(job, configs, names):
    """The statistic from an earlier run's saved state and the rows of the new
    representations (`BorderState`), added up and measured in this process."""
    previous = job.previous
    old = previous["names"]
    new = names[len(old) :]
    pairs = list(combinations_with_replacement(names, 2))
    if new:
        shifts = list(previous["moments"].shifts) + job.pilot_shifts(new)
        task = MomentTask(
            job.store.path, names, shifts, first_new=len(old), precision=job.spec.precision
        )
        description = f"moments of {len(new)} new representations"
        border = job.run_units(task, job.row_units(names), description)
        state = previous["moments"].extended(border)
    else:
        state = previous["moments"]
    job.blocks_computed += len(new) * len(old) + len(new) * (len(new) + 1) // 2
    save = str(job.saved_moments)
    job.values.merge(TileMeasure(configs, names, pairs, job.spec.null, None, None, save)(state))
    job.moments = (names, save)


class TileMeasure:
    """What the owner of one tile of the statistic does with the tile's state: the values of
    ``configs`` for ``pairs`` of its ``members`` (`repalign.measures.moments.record_pairs`),
    with their permutation nulls (``null``) and, with ``jackknife`` groups, standard errors,
    and which members are constant; returned as a `repalign.results.Values` of the tile.

    Parameters
    ----------
    axes : str, optional
        A folder each representation's principal axes are kept in once computed (Procrustes,
        CCA and SVCCA read them), so that an eigendecomposition of its d×d block is made once
        per job, not once per tile: the owners of the diagonal tiles write them, the others
        read them. None: computed here, for this tile only.
    save : str, optional
        Where to write the state for an incremental run (`save_moments`), for a statistic
        that is one tile.
    """

    def __init__(self, configs, members, pairs, null, jackknife, axes, save):
        self.configs, self.members, self.pairs = configs, members, pairs
        self.null, self.jackknife, self.axes, self.save = null, jackknife, axes, save

    def __call__(self, state):
        groups = None
        if self.jackknife:
            groups = state.in_order(self.jackknife)
            state = total_of(groups)
        if self.save is None:
            return self._measure(state, groups)
        with ThreadPoolExecutor(1, thread_name_prefix="save moments") as saver:
            # written while the pairs are measured, which only read the state: at 8 × 512 the
            # file is 134 MB, 0.2 s of writing and checksumming, which release the GIL
            saving = saver.submit(save_moments, self.save, self.members, state)
            values = self._measure(state, groups)
            saving.result()
        return values

    def _measure(self, state, groups):
        values = Values(self.members, dict.fromkeys(self.members, ""))
        index = {name: i for i, name in enumerate(self.members)}
        for name in self.members:
            if _is_constant(state, index[name]):
                values.constant[name] = f"{name} is constant (zero variance)"
        axes = self._axes_of(state)
        std_errs = None
        if groups is not None:
            std_errs = jackknife_std_errs(state, groups, self.configs, self.pairs, index, axes)
        record_pairs(
            values,
            self.configs,
            state,
            self.pairs,
            index,
            axes,
            null=self.null,
            std_errs=std_errs,
        )
        return values

    def _axes_of(self, state):
        """``axes(k)``: member k's principal axes, from the folder when an owner has kept them
        there, else computed (and kept there)."""
        found = {}

        def axes(k):
            if k not in found:
                path = None
                if self.axes is not None:
                    key = hashlib.sha256(self.members[k].encode()).hexdigest()[:24]
                    path = os.path.join(self.axes, f"{key}.pkl")
                if path is not None and os.path.exists(path):
                    with open(path, "rb") as f:
                        found[k] = pickle.load(f)
                else:
                    found[k] = principal_axes(state, k)
                    if path is not None:
                        with atomic_write(path) as temporary, open(temporary, "wb") as f:
                            pickle.dump(found[k], f, protocol=pickle.HIGHEST_PROTOCOL)
            return found[k]

        return axes


def save_moments(path, names, state):
    """Write the second moments of ``names`` (a `GramState`) for an incremental run, as
    `jobs.alignment.write_result` keeps them under ``OUT/state/``: ``moments`` holds the upper
    triangle of Σ zzᵀ (`GramState.stored_moments`), which `GramState.from_moments` reads."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as temporary:
        np.savez(
            temporary,
            names=np.array(names),
            dims=np.array(state.dims),
            shifts=np.concatenate(state.shifts),
            moments=state.stored_moments(),
        )


def statistic_tiles(store, names, state_bytes):
    """Groups of representations whose pairwise states each fit in ``state_bytes``."""
    if moment_matrix_bytes([store[name].dim for name in names]) <= state_bytes:
        return [(names, names)]
    widths = [store[name].dim + 1 for name in names]
    budget = int(np.sqrt(state_bytes / 8)) // 2
    groups, current, width = [], [], 0
    for name, w in zip(names, widths, strict=True):
        if current and width + w > budget:
            groups.append(current)
            current, width = [], 0
        current.append(name)
        width += w
    groups.append(current)
    return [(groups[g], groups[h]) for g in range(len(groups)) for h in range(g, len(groups))]


def find_constants(job):
    """Constant representations, from one cheap pass of column ranges (for a job without the
    moments pass)."""
    names = [n for n in job.names if not job.values.unusable[n]]
    task = RangeTask(job.store.path, names)
    ranges = job.run_units(task, job.row_units(names), "column ranges")
    for name, constant in zip(names, ranges.constant(), strict=True):
        if constant:
            job.values.constant[name] = f"{name} is constant (zero variance)"


def _is_constant(state, i):
    moments = state.pair(i, i, center=True)
    return not np.trace(moments.cross(0, 0)) > 0
