"""A job's files in its output folder: the table as Parquet and the summary as JSON, each
replaced atomically (`repalign.contract.atomic_write`), so that a crash leaves no half-written
file; and the log of its libraries, kept off the terminal."""

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq

from repalign.contract import LIBRARY_LOG_FILE, atomic_write


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


def log_libraries_to(out):
    """Send what Ray and MLflow log (Ray's token-authentication notice and start-up lines,
    MLflow's database migrations) to OUT/libraries.log instead of the terminal, so that a job's
    output is its own lines. Both are imported first: each sets its loggers' handlers when
    imported, which would undo this. OUT is created with the first line logged, so that a job
    refused before it starts leaves no folder."""
    import ray  # noqa: F401

    import repalign.tracking  # noqa: F401  (imports MLflow)

    handler = _FileInNewFolderHandler(Path(out) / LIBRARY_LOG_FILE, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("ray", "mlflow", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False


class _FileInNewFolderHandler(logging.FileHandler):
    """A `logging.FileHandler` that creates the file's folder when it opens the file."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()
