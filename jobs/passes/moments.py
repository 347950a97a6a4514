"""The moments pass: one `GramState` of second moments over all the representations, from
which every linear-kernel measure (KA, CKA, HSIC, Procrustes, CCA, SVCCA) of every pair comes.

When the D×D statistic is too large for one actor it is cut into tiles of groups of
representations (`statistic_tiles`). With the saved state of an earlier run, only the blocks
that involve new representations are computed. The moments also say which representations
are constant; a job without this pass finds them with `find_constants`.
"""

from itertools import combinations_with_replacement, pairwise

import numpy as np

from jobs.tasks import MomentTask, RangeTask
from repalign.measures.jackknife import group_bounds, jackknife_std_errs, total_of
from repalign.measures.moments import record_pairs
from repalign.measures.spectra import principal_axes
from repalign.stats import moment_matrix_bytes


def run(job, configs):
    """Record every pair's value of the linear-kernel ``configs``."""
    names = job.values.usable()
    if not names:
        return
    tiles = [(names, names)]
    if job.previous is None or job.spec.jackknife:
        # with the jackknife, a state per group besides the total: the same memory in all
        states = 1 + (job.spec.jackknife or 0)
        tiles = statistic_tiles(job.store, names, job.state_bytes // states)
    axes = {}  # name -> its principal axes, from the first tile that holds it
    for group_a, group_b in tiles:
        members = group_a if group_a == group_b else group_a + group_b
        state, computed, groups = _moment_state(job, members)
        if group_a == group_b:
            pairs = list(combinations_with_replacement(group_a, 2))
            job.moments = (members, state) if len(tiles) == 1 else None
        else:
            pairs = [(a, b) for a in group_a for b in group_b]
        job.blocks_computed += computed if computed is not None else len(pairs)
        _record(job, configs, state, members, pairs, axes, groups)


def _record(job, configs, state, members, pairs, axes, groups):
    """Record the values of ``pairs`` from the tile's ``state``, with their standard errors
    from the jackknife's ``groups`` (their states; None without). ``axes`` holds each
    representation's principal axes (Procrustes, CCA, SVCCA) across the job's tiles: an
    eigendecomposition of its d×d block, made once per representation, not once per tile."""
    index = {name: i for i, name in enumerate(members)}
    for name in members:
        if _is_constant(state, index[name]):
            job.values.constant[name] = f"{name} is constant (zero variance)"

    def axes_of(k):
        name = members[k]
        if name not in axes:
            axes[name] = principal_axes(state, k)
        return axes[name]

    std_errs = None
    if groups is not None:
        std_errs = jackknife_std_errs(state, groups, configs, pairs, index)
    record_pairs(
        job.values, configs, state, pairs, index, axes_of, null=job.spec.null, std_errs=std_errs
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


def _moment_state(job, members):
    """The second moments of ``members``, how many pair blocks were computed for it (None: all
    of them), and the states of the jackknife's groups (None without). With a saved state, and
    no jackknife, only the blocks of new representations."""
    previous = job.previous
    if job.spec.jackknife or previous is None or not set(previous["names"]) <= set(members):
        shifts = job.pilot_shifts(members)
        description = f"moments ({len(members)} representations)"
        units = job.row_units(members)
        if not job.spec.jackknife:
            task = MomentTask(job.store.path, members, shifts, precision=job.spec.precision)
            return job.run_units(task, units, description), None, None
        bounds = group_bounds(job.n, job.spec.jackknife)
        task = MomentTask(
            job.store.path, members, shifts, precision=job.spec.precision, groups=bounds
        )
        groups = job.run_units(task, cut_at_groups(units, bounds), description)
        groups = groups.in_order(len(bounds))
        return total_of(groups), None, groups
    old = previous["names"]
    new = members[len(old) :]
    if not new:
        return previous["moments"], 0, None
    shifts = list(previous["moments"].shifts) + job.pilot_shifts(new)
    task = MomentTask(
        job.store.path, members, shifts, first_new=len(old), precision=job.spec.precision
    )
    description = f"moments of {len(new)} new representations"
    border = job.run_units(task, job.row_units(members), description)
    computed = len(new) * len(old) + len(new) * (len(new) + 1) // 2
    return previous["moments"].extended(border), computed, None


def cut_at_groups(units, bounds):
    """``units`` (row ranges) cut where a jackknife group starts, so that none straddles two."""
    starts = [low for low, _ in bounds[1:]]
    pieces = []
    for start, stop in units:
        edges = [start, *(s for s in starts if start < s < stop), stop]
        pieces.extend(pairwise(edges))
    return pieces


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
