"""The contract between a job and whoever runs it (the service, a script): the files a job
writes into its output folder, the variable through which it reports progress, its command
line, and the one way every file of the project is replaced atomically.

The jobs write through these names and the service reads through them, so that renaming a
file breaks at import, not in production (docs/design.md §10). A job's output folder OUT:

    alignment.parquet         alignment and nightly jobs: the long result table
    summary.json              alignment and nightly jobs: the summary, with the params
    stitching.parquet         stitching job: one row per pair
    stitching-summary.json    stitching job: the summary, with the params
    changes.json              nightly job: the change report
    pending-upload.json       the MLflow upload still to be done (``repalign sync``)
    run.json                  {"run_id", "tracking_uri"} once the run is logged
    nightly.json              nightly job: {"run_id", "tracking_uri", "plan"} once logged
    libraries.log             what Ray and MLflow log while the job runs (kept off the terminal)
    heatmaps/                 alignment job: the heatmaps its run logs, drawn by the command
                              (`repalign.heatmap_files`)
"""

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ALIGNMENT_TABLE_FILE = "alignment.parquet"
SUMMARY_FILE = "summary.json"
STITCHING_TABLE_FILE = "stitching.parquet"
STITCHING_SUMMARY_FILE = "stitching-summary.json"
CHANGES_FILE = "changes.json"
PENDING_UPLOAD_FILE = "pending-upload.json"
RUN_FILE = "run.json"
NIGHTLY_FILE = "nightly.json"
LIBRARY_LOG_FILE = "libraries.log"
HEATMAP_FOLDER = "heatmaps"
CALIBRATED_SUFFIX = "-calibrated"  # heatmaps/<configuration>-calibrated.png
MODELS_SUFFIX = "-models"  # heatmaps/<configuration>-models.png, the model-level matrix

PROGRESS_FILE_ENV = "REPALIGN_PROGRESS_FILE"
"""Environment variable naming the file where a job reports ``{"stage", "done", "total"}``."""


@dataclass(frozen=True)
class ResultFiles:
    """The two result files of one kind of job, in its output folder."""

    table: str
    summary: str


RESULT_FILES = {
    "alignment": ResultFiles(ALIGNMENT_TABLE_FILE, SUMMARY_FILE),
    "stitching": ResultFiles(STITCHING_TABLE_FILE, STITCHING_SUMMARY_FILE),
    "nightly": ResultFiles(ALIGNMENT_TABLE_FILE, SUMMARY_FILE),
}
JOB_COMMANDS = {"alignment": "run", "stitching": "stitch", "nightly": "nightly"}
"""The ``repalign`` subcommand of each kind of job."""


def job_arguments(
    kind,
    spec_path,
    *,
    tracking_uri,
    ray_address=None,
    out=None,
    threshold=None,
    previous=None,
    schedule=None,
    date=None,
):
    """The arguments of ``repalign`` that run one job, without the program itself:

        run|stitch|nightly SPEC --tracking-uri URI --quiet [--ray-address A]
            [--out OUT --threshold T [--previous PREVIOUS_OUT]
             [--schedule ID] [--date WHEN]]                          (nightly only)

    Parameters
    ----------
    kind : {"alignment", "stitching", "nightly"}
    spec_path : path-like
        The job's spec file (JSON).
    tracking_uri : str
    ray_address : str, default=None
        The Ray cluster to join; None starts a local one.
    out, threshold, previous : default=None
        A nightly job's output folder, change threshold and the previous night's output
        folder (None for the first night). Required for ``kind="nightly"`` only.
    schedule, date : default=None
        A nightly job's schedule id and the night it stands for (a `datetime.datetime`, or
        None: when it runs).

    Returns
    -------
    list of str
    """
    arguments = [JOB_COMMANDS[kind], str(spec_path), "--tracking-uri", tracking_uri, "--quiet"]
    if ray_address:
        arguments += ["--ray-address", ray_address]
    if kind == "nightly":
        arguments += ["--out", str(out), "--threshold", str(threshold)]
        if previous:
            arguments += ["--previous", str(previous)]
        if schedule:
            arguments += ["--schedule", schedule]
        if date is not None:
            arguments += ["--date", date.isoformat()]
    return arguments


def job_command(arguments, *, python):
    """The full command line ``python -m repalign ARGUMENTS`` (see `job_arguments`)."""
    return [str(python), "-m", "repalign", *arguments]


def recorded_run_id(out):
    """The MLflow run id a finished job wrote into OUT/run.json (or OUT/nightly.json), or None
    while the run is not logged."""
    for name in (RUN_FILE, NIGHTLY_FILE):
        path = Path(out) / name
        if path.exists():
            return json.loads(path.read_text()).get("run_id")
    return None


@contextmanager
def atomic_write(path):
    """Replace the file ``path`` atomically: yields a temporary path beside it to write to;
    on leaving the block without error, the temporary file is flushed to disk and renamed onto
    ``path``, else it is removed and ``path`` is left as it was.

    The temporary name keeps the suffix of ``path`` (``np.savez`` adds ``.npz`` to a name
    without it) and is unique to the writing thread, so two writers of one file never write
    into the same temporary file; the last rename wins.

    Yields
    ------
    pathlib.Path
    """
    path = Path(path)
    temporary = path.with_name(
        f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}"
    )
    try:
        yield temporary
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
