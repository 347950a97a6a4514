"""A job's result files in its output folder: the table as Parquet and the summary as JSON,
each written to a temporary name and renamed, so that a crash leaves no half-written file."""

import json
from pathlib import Path

import pyarrow.parquet as pq


def write_table_and_summary(out, table, table_name, summary, summary_name):
    """Write ``out/table_name`` (Parquet) and ``out/summary_name`` (JSON); returns the table's
    path. ``out`` is created if needed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / f".{table_name}.tmp"
    pq.write_table(table, temporary)
    temporary.replace(out / table_name)
    temporary = out / f".{summary_name}.tmp"
    temporary.write_text(json.dumps(summary, indent=2))
    temporary.replace(out / summary_name)
    return out / table_name
