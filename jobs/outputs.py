"""A job's files in its output folder: the table as Parquet and the summary as JSON, each
replaced atomically (`repalign.contract.atomic_write`), so that a crash leaves no half-written
file; and the log of its libraries, kept off the terminal."""

import json
import logging
import sys
from pathlib import Path

import pyarrow.parquet as pq

from repalign.contract import LIBRARY_LOG_FILE, PENDING_UPLOAD_FILE, atomic_write, recorded_run_id


def earlier_run(out):
    """The MLflow run id of the earlier job whose results ``out`` holds, or None; but first a
    `JobCheckError` (field "out") if those results are not logged yet: ``out`` then holds
    `PENDING_UPLOAD_FILE` until ``repalign sync`` logs them, and a new job would write over the
    record and the files it names, leaving the earlier results nowhere."""
    # imported here: the logging child imports this module, and needs none of the checks
    from repalign.preflight import JobCheckError

    if (Path(out) / PENDING_UPLOAD_FILE).exists():
        raise JobCheckError(
            "out",
            f"{out} holds an earlier job's results not yet logged to MLflow "
            f"({PENDING_UPLOAD_FILE}), which this job would write over: `repalign sync {out}` "
            "logs them; or give another out",
        )
    return recorded_run_id(out)


def replaced(out, run_id):
    """The line that says a job replaced the results of an earlier one in ``out``, and the
    MLflow run (``run_id``, from `earlier_run`) that keeps them."""
    return f"replaced the results of an earlier job in {out}; its MLflow run {run_id} keeps them"


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


LIBRARY_LOGGERS = {"ray": ("ray",), "mlflow": ("mlflow", "alembic")}
"""The loggers of each library whose lines go to OUT/libraries.log, by the module that sets
them up when imported."""
_library_log = []  # the handler of `log_libraries_to`, once a job has called it


def log_libraries_to(out):
    """Send what Ray and MLflow log (Ray's token-authentication notice and start-up lines,
    MLflow's database migrations) to OUT/libraries.log instead of the terminal, so that a job's
    output is its own lines. Each library sets its loggers' handlers when imported, which would
    undo this: the loggers of a library not imported yet are redirected when it is
    (`redirect_library_logs`), so that neither is imported before the job needs it. OUT is
    created with the first line logged, so that a job refused before it starts leaves no
    folder."""
    handler = _FileInNewFolderHandler(Path(out) / LIBRARY_LOG_FILE, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _library_log[:] = [handler]
    redirect_library_logs()


def redirect_library_logs():
    """Point the loggers of the libraries imported so far at the job's library log; nothing
    when no job set one (`log_libraries_to`). Call it after importing Ray or MLflow."""
    if not _library_log:
        return
    for module, names in LIBRARY_LOGGERS.items():
        if module in sys.modules:
            for name in names:
                logger = logging.getLogger(name)
                logger.handlers = list(_library_log)
                logger.propagate = False


class _FileInNewFolderHandler(logging.FileHandler):
    """A `logging.FileHandler` that creates the file's folder when it opens the file."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()
