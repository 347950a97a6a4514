"""The rows a pass reads: the size of a unit of work, and the few rows the driver itself reads
(the median heuristic's sample, gathered rows)."""

import numpy as np

from repalign.blocks import block_rows
from repalign.measures.kernels import MEDIAN_MAX_ROWS, MEDIAN_SEED

UNIT_BYTES = 64 * 2**20
"""Float32 bytes of all representations that one unit of a row pass reads."""
TILE_ROWS = 1024
"""Rows on each side of an exact-kernel tile."""


def unit_rows(width, representations):
    """Rows of one unit of work: ``UNIT_BYTES`` of float32 rows of total ``width``, cut down to
    whole blocks of the moment statistic (``width`` + a norm per representation + 1 columns),
    so that no unit ends in a short SYRK that still streams the whole D×D state."""
    rows = max(256, UNIT_BYTES // (4 * width))
    block = block_rows(width + representations + 1)
    return rows - rows % block if rows > block else rows


def whole_row_groups(rows, groups):
    """``rows`` rounded to a whole number of the largest row group among ``groups`` (the rows
    per Parquet row group of each representation a pass reads) that is at most twice ``rows``:
    a unit that cuts a row group decodes it a second time, with the next unit. Row groups hold
    `repalign.store.format.ROW_GROUP_BYTES`, so those of representations whose widths are powers
    of two divide one another; larger groups (narrow representations) are still cut.
    """
    fitting = [g for g in groups if g <= 2 * rows]
    if not fitting:
        return rows
    step = max(fitting)
    return max(1, round(rows / step)) * step


def tile_ranges(n):
    """The row ranges (start, stop) of the tiles of n rows, `TILE_ROWS` each."""
    return [(start, min(start + TILE_ROWS, n)) for start in range(0, n, TILE_ROWS)]


def median_sample(representation, n):
    """The rows the library's median heuristic would use (seeded subsample if n is large)."""
    if n <= MEDIAN_MAX_ROWS:
        return representation.read_values(0, n)
    chosen = np.sort(np.random.default_rng(MEDIAN_SEED).choice(n, MEDIAN_MAX_ROWS, replace=False))
    return gather(representation, chosen)


def gather(representation, rows):
    """The given (sorted) rows of a representation, read block by block."""
    parts, step = [], 65536
    for start in range(0, representation.rows, step):
        inside = rows[(rows >= start) & (rows < start + step)]
        if len(inside):
            block = representation.read_values(start, min(start + step, representation.rows))
            parts.append(block[inside - start])
    return np.concatenate(parts) if parts else np.empty((0, representation.dim), np.float32)
