"""A job's MLflow upload, kept on disk until the tracking server takes it (docs/design.md §6).

A job command writes its results into OUT first, then the record of what to log,
OUT/pending-upload.json, and only then logs (`upload`). Once the run is FINISHED, `upload`
writes OUT/run.json (and OUT/nightly.json for a nightly run) and removes the record. When the
tracking server cannot be reached (`repalign.tracking.tracking_unreachable`), the record stays,
with the error, and ``repalign sync OUT`` uploads it later (`sync`); a job killed while logging
leaves it too. The record:

    job                 "alignment", "stitching" or "nightly"
    tracking_uri        where to log
    artifact_location   the experiment's artifact root if the upload creates it (null: the
                        tracking server's default)
    experiment          the MLflow experiment
    upload              a random id, the run's tag ``repalign.upload``: an upload that was
                        interrupted is found by it (`repalign.tracking.finished_upload`), its
                        RUNNING runs are marked FAILED, and a FINISHED one is taken as the record
                        instead of logging the job twice
    table, summary      the files in OUT that `log_alignment_run` or `log_stitching_run` gets:
                        the result table, and the summary with the job's params under "params"
                        (as `jobs.alignment.write_result` and `jobs.stitching.write_result`
                        write them)
    moment              when the job ran (ISO 8601, UTC), for the run's name; for a nightly
                        run, the night it stands for, the step of its schedule's trend
    tags                the run's tags as the job found them: repalign's version and git
                        commit, the store's digest (`repalign.provenance`)
    changes, plan       nightly only: the change report in OUT, added to the run as the
                        artifact changes.json and as tables, and the plan's mode, for
                        nightly.json
    schedule            nightly only: the schedule whose parent run the run is a child of, and
                        whose trend its values join (`repalign.tracking.log_trend`); null for
                        a nightly run of no schedule
    error               why the last attempt failed; absent before the first

A record written before moment and tags existed is logged without them: a name without a
date, the code's tags as they are at upload.

File names are relative to OUT, so that a folder can be moved before it is synced.
"""

import datetime
import json
import os
import uuid
from pathlib import Path

import pyarrow.parquet as pq

from repalign.contract import (
    CHANGES_FILE,
    NIGHTLY_FILE,
    PENDING_UPLOAD_FILE,
    RESULT_FILES,
    RUN_FILE,
)
from repalign.errors import RepalignError
from repalign.provenance import run_name
from repalign.store.format import write_json_atomically
from repalign.tracking import (
    PARENT_TAG,
    UPLOAD_TAG,
    finished_upload,
    log_alignment_run,
    log_change_report,
    log_stitching_run,
    log_trend,
    public_uri,
    schedule_run,
    tracking_unreachable,
)

LOG_FUNCTIONS = {
    "alignment": log_alignment_run,
    "stitching": log_stitching_run,
    "nightly": log_alignment_run,
}
SHORT_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # MLflow's default, 7, waits minutes on a dead server
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",  # seconds per request, 120 by default
}
"""MLflow's HTTP settings for a job command and ``repalign sync``, where the environment does
not set them: a request to a server that is down fails after about 3 s, a hung one after about
90 s, and the job's upload stays pending instead of holding the job."""


class UploadPending(RepalignError):
    """The tracking server could not be reached: the upload stays in OUT/pending-upload.json."""


def use_short_retries():
    """Set `SHORT_RETRIES` in this process's environment, where they are not set."""
    for name, value in SHORT_RETRIES.items():
        os.environ.setdefault(name, value)


def record_pending(
    out,
    job,
    *,
    tracking_uri,
    experiment,
    artifact_location=None,
    plan=None,
    moment=None,
    tags=None,
    schedule=None,
    heatmaps=None,
):
    """Write OUT/pending-upload.json for a job whose results are in ``out``.

    Parameters
    ----------
    out : path-like
        The job's output folder, holding its table and summary (and changes.json for a
        nightly run).
    job : {"alignment", "stitching", "nightly"}
    tracking_uri, experiment, artifact_location : str
        Where to log (``artifact_location`` None: the tracking server's default).
    plan : str, default=None
        Nightly only: the plan's mode ("full" or "incremental").
    moment : str, default=None
        When the job ran, or the night it stands for (ISO 8601); None: now.
    tags : dict, default=None
        The run's tags as the job found them (`jobs.uploader.job_tags`).
    schedule : str, default=None
        Nightly only: the schedule the run belongs to.
    heatmaps : str, default=None
        Alignment only: the folder in ``out`` holding the drawn heatmaps
        (`repalign.heatmap_files.write_heatmaps`), logged as they are; None draws them when
        logging.
    """
    files = RESULT_FILES[job]
    record = {
        "job": job,
        "tracking_uri": tracking_uri,
        "artifact_location": artifact_location,
        "experiment": experiment,
        "upload": uuid.uuid4().hex,
        "table": files.table,
        "summary": files.summary,
        "moment": moment or datetime.datetime.now(datetime.UTC).isoformat(),
        "tags": tags or {},
    }
    if job == "nightly":
        record.update(changes=CHANGES_FILE, plan=plan, schedule=schedule)
    if heatmaps is not None:
        record["heatmaps"] = heatmaps
    write_json_atomically(Path(out) / PENDING_UPLOAD_FILE, record)


def upload(out, *, tracking_uri=None):
    """Log the pending upload of ``out``; write OUT/run.json; remove OUT/pending-upload.json.

    Parameters
    ----------
    out : path-like
        A job's output folder holding a pending-upload.json.
    tracking_uri : str, default=None
        Log there instead of the record's tracking URI (a server that moved); the record's
        artifact location is then not used.

    Returns
    -------
    (str, str)
        The run id and the tracking URI.

    Raises
    ------
    UploadPending
        If the tracking server could not be reached; the record stays, with the error.
    """
    out = Path(out)
    record = json.loads((out / PENDING_UPLOAD_FILE).read_text())
    artifact_location = record["artifact_location"] if tracking_uri is None else None
    tracking_uri = tracking_uri or record["tracking_uri"]
    job, experiment = record["job"], record["experiment"]
    moment = datetime.datetime.fromisoformat(record["moment"]) if "moment" in record else None
    tags = {**record.get("tags", {}), UPLOAD_TAG: record["upload"]}
    schedule = record.get("schedule")
    try:
        run_id = finished_upload(record["upload"], experiment=experiment, tracking_uri=tracking_uri)
        if run_id is None or schedule is not None:  # the results are read only when needed
            summary = json.loads((out / record["summary"]).read_text())
            params = summary.pop("params")
            table = pq.read_table(out / record["table"])
        if schedule is not None:
            parent = schedule_run(
                schedule,
                experiment=experiment,
                store=params.get("store"),
                tracking_uri=tracking_uri,
                artifact_location=artifact_location,
            )
            tags[PARENT_TAG] = parent
        if run_id is None:
            # the heatmaps the command drew; drawn again if their folder has gone since
            folder = out / record.get("heatmaps", "")
            drawn = {"heatmaps": folder} if "heatmaps" in record and folder.is_dir() else {}
            run_id = LOG_FUNCTIONS[job](
                table,
                params=params,
                summary=summary,
                experiment=experiment,
                tracking_uri=tracking_uri,
                run_name=run_name(experiment, job, params.get("store"), moment),
                tags=tags,
                artifact_location=artifact_location,
                **drawn,
            )
        if job == "nightly":
            changes = json.loads((out / record["changes"]).read_text())
            log_change_report(run_id, changes, tracking_uri=tracking_uri)
        if schedule is not None:
            log_trend(parent, table, moment, tracking_uri=tracking_uri)
    except Exception as exc:
        if not tracking_unreachable(exc):
            raise
        write_json_atomically(out / PENDING_UPLOAD_FILE, {**record, "error": str(exc)})
        raise UploadPending(
            f"the tracking server at {public_uri(tracking_uri)} could not be reached, so the "
            f"MLflow run of {out} is pending upload: its results stay in {out}, and "
            f"{out / PENDING_UPLOAD_FILE} says what to log; run `repalign sync {out}` when the "
            f"server is back ({exc})."
        ) from exc
    logged = {"run_id": run_id, "tracking_uri": tracking_uri}
    if job == "nightly":
        write_json_atomically(out / NIGHTLY_FILE, {**logged, "plan": record["plan"]})
    write_json_atomically(out / RUN_FILE, logged)
    (out / PENDING_UPLOAD_FILE).unlink()
    return run_id, tracking_uri


def sync(out, *, tracking_uri=None):
    """Upload the pending MLflow run of the job output folder ``out``, if it has one.

    Parameters
    ----------
    out : path-like
    tracking_uri : str, default=None
        As in `upload`.

    Returns
    -------
    str
        What was done: the run logged, or that ``out`` was logged already (nothing to do).

    Raises
    ------
    RepalignError
        If ``out`` is not a folder, or holds neither pending-upload.json nor run.json.
    UploadPending
        If the tracking server could not be reached.
    """
    out = Path(out)
    if not out.is_dir():
        raise RepalignError(f"OUT must be a job's output folder; {out} is not a folder.")
    if (out / PENDING_UPLOAD_FILE).exists():
        run_id, tracking_uri = upload(out, tracking_uri=tracking_uri)
        return f"{out}: logged as MLflow run {run_id} at {public_uri(tracking_uri)}"
    if (out / RUN_FILE).exists():
        logged = json.loads((out / RUN_FILE).read_text())
        return (
            f"{out}: nothing to upload; logged already as MLflow run {logged['run_id']} at "
            f"{public_uri(logged['tracking_uri'])}"
        )
    raise RepalignError(
        f"OUT must be a job's output folder with an upload pending ({PENDING_UPLOAD_FILE}) or done "
        f"({RUN_FILE}); {out} holds neither."
    )
