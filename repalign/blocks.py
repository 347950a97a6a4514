"""Row blocks: how repalign walks a large array without copying it whole."""

BLOCK_BYTES = 32 * 2**20
"""Working-set budget of one float64 row block (32 MiB)."""


def row_slices(n_rows, n_cols, *, block_bytes=BLOCK_BYTES):
    """Yield slices that cut ``n_rows`` rows into blocks of about ``block_bytes`` as float64.

    A block is never shorter than 64 rows, so that very wide rows still give BLAS calls with
    some depth.
    """
    rows = max(64, block_bytes // (8 * max(n_cols, 1)))
    for start in range(0, n_rows, rows):
        yield slice(start, min(start + rows, n_rows))
