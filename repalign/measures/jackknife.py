"""Standard errors of the linear-kernel measures by the delete-one-group jackknife
(docs/theory.md §2.11).

The rows are cut into G contiguous groups (`group_bounds`) and a `repalign.stats.GramState` is
kept per group; their sum is the job's statistic. The statistic without group g is the total
minus group g's state, so every linear-kernel value θ can be recomputed without each group,
θ₍₋g₎, exactly as it is computed from the whole statistic (`moment_value`). Then

    std_err = sqrt((G − 1)/G · Σ_g (θ₍₋g₎ − θ̄)²),   θ̄ = (1/G) Σ_g θ₍₋g₎,

the delete-one-group jackknife estimate of the standard error (Efron & Stein 1981; Shao & Tu
1995, §2.1). It holds for any smooth function of the moments, so for KA, CKA and HSIC by every
estimator, and for Procrustes, CCA and SVCCA. A 95% interval is value ± t₀.₉₇₅,G−1 · std_err.
The cost: G + 1 moment matrices of memory, and G times the per-pair work; the rows are read and
multiplied once, as without it.
"""

from collections import defaultdict
from itertools import pairwise

import numpy as np

from repalign.errors import RepalignError
from repalign.measures.moments import moment_value
from repalign.measures.spectra import principal_axes

JACKKNIFE_GROUPS = 16
"""The groups of a job or `repalign.pairwise` that asks for the jackknife."""


def group_bounds(n, groups):
    """Row ranges [(start, stop)] of ``groups`` contiguous groups of n rows, sizes differing by
    at most one."""
    if not 2 <= groups <= n:
        raise ValueError(f"the jackknife needs 2 to n = {n} groups; got {groups}.")
    edges = [n * g // groups for g in range(groups + 1)]
    return list(pairwise(edges))


def add_rows_by_group(states, bounds, start, blocks):
    """Add the row block ``blocks`` (one array per representation, rows ``start`` on) to the
    `GramState` of each group of ``bounds`` it overlaps."""
    stop = start + len(blocks[0])
    for state, (low, high) in zip(states, bounds, strict=True):
        first, last = max(low, start), min(high, stop)
        if first < last:
            state.add_block([B[first - start : last - start] for B in blocks])


def total_of(groups):
    """The `GramState` of all the groups' rows: one new state, the others added in place."""
    total = groups[0] + groups[1]
    for group in groups[2:]:
        total += group
    return total


def jackknife_std_errs(total, groups, configs, pairs, index):
    """{(label, a, b): std_err} of the linear-kernel ``configs`` of ``pairs`` (`jackknife_std_err`
    of their delete-one values).

    ``total`` is the `GramState` of all rows, ``groups`` the states of its groups, ``index``
    maps a name to its position in the states. One delete-one statistic is held at a time. A
    value that cannot be computed without some group has no std_err (None).
    """
    estimates = defaultdict(list)
    for group in groups:
        rest = total - group
        axes = {}

        def axes_of(k, rest=rest, axes=axes):
            if k not in axes:
                axes[k] = principal_axes(rest, k)
            return axes[k]

        for a, b in pairs:
            for config in configs:
                try:
                    value = moment_value(config, rest, index[a], index[b], axes_of)
                except RepalignError:
                    value = np.nan
                estimates[config.label, a, b].append(value)
    return {key: jackknife_std_err(values) for key, values in estimates.items()}


def jackknife_std_err(estimates):
    """sqrt((G − 1)/G · Σ (θ₍₋g₎ − θ̄)²) of the G delete-one estimates; None if any is not
    finite."""
    values = np.asarray(estimates, dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    groups = len(values)
    return float(np.sqrt((groups - 1) / groups * np.sum((values - values.mean()) ** 2)))
