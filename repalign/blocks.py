"""Row blocks: how repalign walks a large array without copying it whole."""

import math
from collections import deque

import numpy as np

BLOCK_BYTES = 32 * 2**20
"""Working-set budget of one float64 row block (32 MiB)."""
BLOCK_SLACK = 1 / 64
"""How far `row_slices` lets a block exceed `block_rows` rather than cut a sliver block."""


def block_rows(n_cols, *, block_bytes=BLOCK_BYTES):
    """Rows of a block of ``n_cols`` float64 columns in about ``block_bytes``.

    Never fewer than 64, so that very wide rows still give BLAS calls with some depth.
    """
    return max(64, block_bytes // (8 * max(n_cols, 1)))


def row_slices(n_rows, n_cols, *, block_bytes=BLOCK_BYTES, max_rows=None):
    """Yield slices that cut ``n_rows`` rows into as few blocks as hold at most `block_rows`
    rows each (give or take `BLOCK_SLACK`), or ``max_rows`` if fewer (never more), all of
    about the same size; the first is the largest.

    Equal blocks, because a short last block costs a SYRK about what a full one does (it
    still streams the whole D×D state), and the slack, because a range a little over a whole
    number of blocks (a 4,096-row unit of 8 × 512 in blocks of 1,021 rows: four, and 12 rows
    left over) would otherwise end in a block of a few rows.
    """
    if n_rows <= 0:
        return
    limit = block_rows(n_cols, block_bytes=block_bytes) * (1 + BLOCK_SLACK)
    if max_rows is not None:
        limit = min(limit, max_rows)
    size = math.ceil(n_rows / math.ceil(n_rows / limit))
    for start in range(0, n_rows, size):
        yield slice(start, min(start + size, n_rows))


class RowQueue:
    """A first-in first-out queue of row blocks, from which exact numbers of rows are taken.

    Each entry is a tuple of arrays with the same number of rows (ids and values, say). Taking
    rows copies only when they span several entries; what stays queued is never copied.
    """

    def __init__(self):
        self._entries = deque()
        self.rows = 0

    def put(self, *arrays):
        if len(arrays[0]):
            self._entries.append(arrays)
            self.rows += len(arrays[0])

    def take(self, rows):
        """The first ``rows`` rows (at most what is queued), as a tuple of arrays."""
        rows = min(rows, self.rows)
        parts = []
        while sum(len(p[0]) for p in parts) < rows:
            head = self._entries.popleft()
            need = rows - sum(len(p[0]) for p in parts)
            if len(head[0]) > need:
                self._entries.appendleft(tuple(a[need:] for a in head))
                head = tuple(a[:need] for a in head)
            parts.append(head)
        self.rows -= rows
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(columns) for columns in zip(*parts, strict=True))
