"""A job's result files in its output folder: the table as Parquet and the summary as JSON,
each replaced atomically (`repalign.contract.atomic_write`), so that a crash leaves no
half-written file."""

import json
from pathlib import Path

import pyarrow.parquet as pq

from repalign.contract import atomic_write


def write_table_and_summary(out, files, table, summary):
    """Write ``out/files.table`` (Parquet) and ``out/files.summary`` (JSON); returns the
    table's path. ``files`` is a `repalign.contract.ResultFiles`; ``out`` is created if
    needed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / files.table) as temporary:
        pq.write_table(table, temporary)
    with atomic_write(out / files.summary) as temporary:
        temporary.write_text(json.dumps(summary, indent=2))
    return out / files.table
