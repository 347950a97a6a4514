"""The Monte Carlo permutation null: the null of any measure of paired rows, from the measure
recomputed on B random re-pairings of the rows (docs/theory.md §2.12).

Under the null hypothesis that the pairing of rows carries no information, permuting the rows
of one representation against another leaves the distribution of every measure unchanged. Draw
b permutes the rows of each representation by its own permutation π_{b,name}. A pair (X, Y)
then sees its rows re-paired by π_X⁻¹π_Y, uniform and independent of the other draws, so one
run of all the measures on the permuted representations gives a draw for every pair at once.
The value of X against X is unchanged by it, and has no null.

The permutations act within aligned blocks of `BLOCK_ROWS` rows (rows [jP, (j + 1)P)), so a
reader of any row range reads only the blocks it overlaps: the null streams as the measure
does. They are still a group acting on the rows that leaves the null distribution unchanged,
and the p-value of B uniform draws from it,

    p = (1 + #{b : T_b ≥ T}) / (1 + B),

is valid for any B (Phipson & Smyth 2010): P(p ≤ α) ≤ α under the null. Every measure but MMD²
is a similarity, larger when more aligned; MMD² compares two samples, not paired rows, and has
no permutation null of this kind.

Each permutation comes from a seed of (draw, name, block), so that a job's actors, a resumed
job and `repalign.pairwise` draw the same ones.
"""

import zlib

import numpy as np

from repalign.measures.nulls import NullDistribution

BLOCK_ROWS = 4096
"""Rows of the aligned blocks within which the rows are permuted."""
SEED = 20250101
"""The root of every permutation's seed."""
UNPAIRED = {"mmd2"}
"""Measures of two samples rather than of paired rows: no permutation null."""


def source_rows(name, draw, start, stop, n):
    """The rows of the unpermuted representation ``name`` (of ``n`` rows) that rows
    ``start``..``stop`` of its ``draw``-th permutation hold: an int64 array of ``stop − start``
    indices, all within the aligned blocks that the range overlaps."""
    return sources_of(name, draw, np.arange(start, stop), n)


def sources_of(name, draw, rows, n):
    """`source_rows` of the given rows (any int indices) of the ``draw``-th permutation of
    ``name``: the unpermuted rows they hold, in their order. Each aligned block's order is
    seeded by (draw, name, block)."""
    rows = np.asarray(rows, dtype=np.int64)
    sources = np.empty_like(rows)
    blocks = rows // BLOCK_ROWS
    key = zlib.crc32(str(name).encode())
    for block in np.unique(blocks):
        inside = blocks == block
        first = int(block) * BLOCK_ROWS
        order = np.random.default_rng([SEED, draw, key, int(block)]).permutation(
            min(first + BLOCK_ROWS, n) - first
        )
        sources[inside] = first + order[rows[inside] - first]
    return sources


def read_permuted(read, name, draw, start, stop, n):
    """Rows ``start``..``stop`` of the ``draw``-th permutation of representation ``name``,
    where ``read(start, stop)`` reads rows of the unpermuted one: one read of the aligned
    blocks the range overlaps."""
    sources = source_rows(name, draw, start, stop, n)
    if len(sources) == 0:
        return read(start, stop)
    low, high = int(sources.min()), int(sources.max()) + 1
    return read(low, high)[sources - low]


def null_from_draws(value, draws):
    """The `NullDistribution` of ``value`` from the values of the same pair on permuted
    rows: their mean and standard deviation, and p = (1 + #{draws ≥ value}) / (1 + B).
    None without draws."""
    draws = np.asarray(draws, dtype=np.float64)
    if len(draws) == 0:
        return None
    std = float(draws.std(ddof=1)) if len(draws) > 1 else 0.0
    p_value = (1 + int(np.count_nonzero(draws >= value))) / (1 + len(draws))
    return NullDistribution(float(draws.mean()), std, p_value)


class PermutationDraws:
    """The values every (configuration label, rep_a, rep_b) took in the permuted runs."""

    def __init__(self):
        self.values = {}

    def add(self, found):
        """Take in one draw's values: ``found`` as `repalign.results.Values.found` holds them."""
        for key, (value, _, _) in found.items():
            if value is not None and key[1] != key[2]:
                self.values.setdefault(key, []).append(value)

    def record(self, values, configs):
        """Record, in the `repalign.results.Values` ``values`` of the unpermuted run, the null
        of each of its pairs under ``configs`` (not those of `UNPAIRED` measures)."""
        for config in configs:
            if config.name in UNPAIRED:
                continue
            for label, a, b in [key for key in values.found if key[0] == config.label]:
                draws = self.values.get((label, a, b), [])
                values.record_null(config, a, b, null_from_draws, draws)
