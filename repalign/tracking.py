"""An all-pairs alignment job as one MLflow run, and the way back to its results.

The only module of repalign that imports mlflow. A run holds:

    params                        the job's parameters, nested dicts as dotted keys
    metrics                       one per computed pair and configuration, named by `metric_key`
    results/alignment.parquet     the long result table as given: the authoritative record
    results/missing.json          the missing pairs and their reasons (an MLflow table)
    heatmaps/<configuration>.png  one heatmap per measure configuration
    summary.json                  the job's summary

Runs are named and tagged as `repalign.provenance` says (what ran, on which store, when; the
code's version and commit, the store's digest).

A nightly run (`jobs.sync`) is an alignment run with its change report added
(`log_change_report`): changes.json, and its tables changes/moved.csv and changes/drift.csv,
which MLflow's artifact viewer shows as tables. A run of a schedule is the child of the
schedule's parent run (`schedule_run`), where `log_trend` logs each pair's value with the
night as its step (`trend_step`), so that MLflow's charts draw a pair over the nights;
`schedule_trend` reads one pair's series back (``repalign query --schedule``).

`latest_heatmaps` and `heatmap_png` read the heatmaps back (the service's status page).
`tracking_unreachable` tells a tracking server that could not be reached from other errors, and
`finished_upload` settles what an interrupted upload left on the server (``repalign sync``).
`check_tracking_uri` refuses, before a job starts, a tracking URI that no run can be logged to.
`mlflow_ui` serves MLflow's UI on a tracking store (``repalign ui``).

A stitching job (`log_stitching_run`) is one parent run with a nested run per pair:

    parent: params, summary metrics, results/stitching.parquet, plots/bound.png,
            plots/penalty.png, summary.json
    nested: params source, target, control; one metric per numeric column of its row

Runs are opened and closed explicitly (`open_run`) through an ``MlflowClient`` bound to the
tracking URI given; MLflow's fluent API and its process-wide state (active run, tracking URI)
are neither used nor changed.
"""

import csv
import datetime
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from contextlib import closing, contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests
from mlflow import MlflowClient
from mlflow import __version__ as mlflow_version
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

from repalign.alignment_tables import CONFIGURATION, as_alignment_table, configurations
from repalign.cache import cache_folder
from repalign.contract import CALIBRATED_SUFFIX, CHANGES_FILE, HEATMAP_FOLDER, atomic_write
from repalign.errors import InvalidParameterError, RepalignError
from repalign.models import model_table
from repalign.provenance import CONFIGURATIONS_TAG, code_tags, run_name, utc

TABLE_ARTIFACT = "results/alignment.parquet"
STITCHING_ARTIFACT = "results/stitching.parquet"
MISSING_ARTIFACT = "results/missing.json"
MODELS_ARTIFACT = "results/models.parquet"  # the model-level tables, `repalign.models`
SUMMARY_ARTIFACT = "summary.json"
KIND_TAG = "repalign.kind"  # marks alignment runs, so that `latest_run` skips any other run
UPLOAD_TAG = "repalign.upload"  # one id per job's upload, kept across retries (`finished_upload`)
SCHEDULE_TAG = "repalign.schedule"  # the schedule of a nightly run's parent (`schedule_run`)
PARENT_TAG = "mlflow.parentRunId"  # makes a run the child of the run it names
MOVED_ARTIFACT = "changes/moved.csv"
DRIFT_ARTIFACT = "changes/drift.csv"
# MLflow allows these in metric and param names, and "/" between the parts of a name.
_NOT_IN_NAME_PART = re.compile(r"[^A-Za-z0-9_\-. ]")
_SCHEDULE_ID = re.compile(r"[A-Za-z0-9_.\-]+")  # what a search filter can quote as it is


TRACKING_SCHEMES = ("http", "https", *DATABASE_ENGINES)
"""URI schemes of the tracking stores runs are logged to: an MLflow tracking server, or one of
the databases MLflow supports (``postgresql+psycopg2://`` names the database and its driver)."""


def public_uri(uri):
    """``uri`` without its password, if it holds one (``http://user:secret@host``,
    ``postgresql://user:secret@host/db``); the user name stays."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}@" if parts.username else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))


def without_password(text, uri):
    """``text`` with the password of the tracking URI ``uri`` nowhere in it: the URI as
    `public_uri` writes it, and the password alone (as given or URL-decoded) as ``***``."""
    password = urllib.parse.urlsplit(uri).password
    if password is None:
        return text
    text = text.replace(uri, public_uri(uri))
    for form in {password, urllib.parse.unquote(password)}:
        text = text.replace(form, "***")
    return text


def check_tracking_uri(tracking_uri):
    """Refuse a tracking URI whose store cannot take a run: MLflow's file store (``file:DIR``,
    or a plain folder) is in maintenance mode and refuses to open.

    Parameters
    ----------
    tracking_uri : str

    Raises
    ------
    InvalidParameterError
        If the URI's scheme (before any ``+driver``) is not one of `TRACKING_SCHEMES`; the
        message says what to use instead.
    """
    scheme = urllib.parse.urlsplit(tracking_uri).scheme.partition("+")[0]
    if scheme in TRACKING_SCHEMES:
        return
    message = (
        "tracking_uri must be a database (sqlite:///PATH/mlflow.db, postgresql://...) or an "
        f"MLflow tracking server (http://HOST:5000); got {tracking_uri!r}."
    )
    if scheme in ("", "file"):
        folder = tracking_uri.removeprefix("file://").removeprefix("file:").rstrip("/") or "DIR"
        message += (
            f" MLflow's file store is not supported: use sqlite:///{folder}/mlflow.db instead."
        )
    raise InvalidParameterError(message)


def log_alignment_run(
    table,
    *,
    params,
    summary,
    experiment,
    tracking_uri=None,
    run_name=None,
    heatmaps=True,
    cluster=False,
    tags=None,
    artifact_location=None,
):
    """Record an all-pairs alignment job as one finished MLflow run.

    Parameters
    ----------
    table : pyarrow.Table or pandas.DataFrame
        The job's long result table (columns in `repalign.alignment_tables.ALIGNMENT_COLUMNS`),
        logged as given to ``results/alignment.parquet``.
    params : dict
        The job's parameters (store, representations, measures and their settings, seeds,
        n, approximation settings). Nested dicts become dotted keys (``measures.cka.kernel``);
        lists and tuples become JSON strings; other values ``str(value)``. In keys, characters
        other than ASCII letters, digits, ``_``, ``-``, ``.`` and space become ``_``. A value
        longer than MLflow's limit (6,000 characters) is cut and ends with
        ``... [truncated from N characters]``.
    summary : dict
        Logged as ``summary.json``. MLflow writes a value that JSON cannot hold as
        ``str(value)`` (a numpy integer becomes a string): pass plain Python values.
    experiment : str
        Experiment name, created if it does not exist, with its artifacts under
        ``artifact_location`` if given, else the tracking store's default artifact root. For
        a SQLite store used without a server, that default is ``mlruns/<experiment id>`` in
        the directory that was current when this process first opened the store, not the
        folder of the database file.
    tracking_uri : str, default=None
        None means MLflow's own default (``MLFLOW_TRACKING_URI``, else its local default).
    run_name : str, default=None
        None names it ``experiment · alignment · store · now`` (`repalign.provenance.run_name`,
        the store from ``params["store"]`` when there is one).
    heatmaps : bool or path-like, default=True
        Log under ``heatmaps/`` the heatmaps of `repalign.heatmap_files` (per configuration a
        PNG and an interactive page, and where they apply its calibrated scores and its
        model-level matrix): True draws them here; a folder logs those `write_heatmaps` drew
        there (a job command draws them while its logging child imports MLflow); False logs
        none. The model-level matrix (`repalign.models.model_table`) is logged as
        ``results/models.parquet`` either way.
    cluster : bool, default=False
        Order the heatmaps by hierarchical clustering (see
        `repalign.plots.alignment_heatmap`).
    tags : dict, default=None
        Extra run tags, over the code's (`repalign.provenance.code_tags`: repalign's version
        and git commit), which a job gives as they were when it ran. The tags
        ``repalign.kind = "alignment"`` and ``repalign.configurations``, the table's measure
        configurations (``cka:linear:biased, procrustes:linear``), are always set.
    artifact_location : str, default=None
        Artifact root of the experiment when this call creates it (ignored otherwise).

    Returns
    -------
    str
        The run id. The run is FINISHED; if logging fails part way, it is marked FAILED and
        the error is raised.
    """
    table = as_alignment_table(table)
    metrics = _pair_metrics(table)
    run_params = _flat_params(params)
    client = MlflowClient(tracking_uri)
    labels = [":".join(part for part in c if part) for c in configurations(table)]
    run_tags = {
        **code_tags(),
        **(tags or {}),
        CONFIGURATIONS_TAG: ", ".join(labels),
        KIND_TAG: "alignment",
    }
    if run_name is None:
        run_name = _default_name(experiment, "alignment", params)
    experiment_id = _experiment_id(client, experiment, artifact_location)
    with open_run(client, experiment_id, run_name=run_name, tags=run_tags) as run_id:
        _log_parquet(client, run_id, table)
        client.log_table(run_id, _missing_pairs(table), MISSING_ARTIFACT)
        configs = [dict(zip(CONFIGURATION, c, strict=True)) for c in configurations(table)]
        models = [model_table(table, **config) for config in configs]
        found = [
            _with_configuration(m, **c) for m, c in zip(models, configs, strict=True) if m.num_rows
        ]
        if found:
            _log_parquet(client, run_id, pa.concat_tables(found), MODELS_ARTIFACT)
        if heatmaps is True:
            # imported here: a job's logging child logs the heatmaps its command drew
            from repalign.heatmap_files import write_heatmaps

            with tempfile.TemporaryDirectory() as folder:
                write_heatmaps(table, folder, cluster=cluster)
                client.log_artifacts(run_id, folder, HEATMAP_FOLDER)
        elif heatmaps:
            client.log_artifacts(run_id, str(heatmaps), HEATMAP_FOLDER)
        client.log_dict(run_id, summary, SUMMARY_ARTIFACT)
        # The metrics last: MLflow reads the whole run, every metric included, to find where
        # each artifact goes (0.55 s per artifact with the demo's 11,000 pair metrics).
        # MlflowClient.log_batch splits into requests within MLflow's limits (1,000 metrics,
        # 100 params).
        client.log_batch(run_id, metrics=metrics, params=run_params)
    return run_id


def log_stitching_run(
    table,
    *,
    params,
    summary,
    experiment,
    tracking_uri=None,
    run_name=None,
    tags=None,
    artifact_location=None,
):
    """Record a stitching job as a finished parent run with one nested run per pair.

    Parameters
    ----------
    table : pyarrow.Table
        The job's table (`jobs.stitching.COLUMNS`): one row per pair.
    params, summary, experiment, tracking_uri, artifact_location
        As in `log_alignment_run`. Numeric entries of ``summary`` are also the parent's
        metrics.
    run_name : str, default=None
        The parent's name; None names it ``experiment · stitching · store · now``. Each
        nested run is called ``source -> target``.
    tags : dict, default=None
        Extra tags of the parent run, over the code's, as in `log_alignment_run`. The tag
        ``repalign.kind = "stitching"`` is always set.

    Returns
    -------
    str
        The parent run's id. Runs are FINISHED; if logging fails part way, the runs opened
        are marked FAILED and the error is raised.
    """
    client = MlflowClient(tracking_uri)
    experiment_id = _experiment_id(client, experiment, artifact_location)
    timestamp = int(time.time() * 1000)
    parent_tags = {**code_tags(), **(tags or {}), KIND_TAG: "stitching"}
    if run_name is None:
        run_name = _default_name(experiment, "stitching", params)
    with open_run(client, experiment_id, run_name=run_name, tags=parent_tags) as parent:
        numbers = {k: v for k, v in summary.items() if isinstance(v, int | float)}
        metrics = [Metric(k, float(v), timestamp, 0) for k, v in numbers.items()]
        client.log_batch(parent, metrics=metrics, params=_flat_params(params))
        _log_parquet(client, parent, table, STITCHING_ARTIFACT)
        # imported here: logging an alignment run (the common case, in a job's logging child)
        # imports no matplotlib
        from repalign.stitching_plots import bound_plot, penalty_plot

        client.log_figure(parent, bound_plot(table), "plots/bound.png")
        client.log_figure(parent, penalty_plot(table), "plots/penalty.png")
        client.log_dict(parent, summary, SUMMARY_ARTIFACT)
        for row in table.to_pylist():
            _log_pair(client, experiment_id, parent, row, timestamp)
    return parent


def _log_pair(client, experiment_id, parent, row, timestamp):
    """One nested run: the pair's names as params, its numbers as metrics."""
    run_name = f"{row['source']} -> {row['target']}"
    tags = {PARENT_TAG: parent, KIND_TAG: "stitching-pair"}
    with open_run(client, experiment_id, run_name=run_name, tags=tags) as child:
        names = ("source", "target", "control", "status", "reason")
        params = [Param(k, _param_value(row[k])) for k in names]
        metrics = [
            Metric(k, float(v), timestamp, 0)
            for k, v in row.items()
            if k not in names and isinstance(v, int | float)
        ]
        client.log_batch(child, metrics=metrics, params=params)


@contextmanager
def open_run(client, experiment_id, *, run_name=None, tags=None):
    """Open a run, yield its id, and close it: FINISHED when the block ends normally, FAILED
    when it raises (the error is raised again). The one place where repalign opens runs.

    Parameters
    ----------
    client : mlflow.MlflowClient
    experiment_id : str
    run_name : str, default=None
        None lets MLflow choose one.
    tags : dict, default=None
        The run's tags (``mlflow.parentRunId`` makes it a nested run).

    Yields
    ------
    str
        The run id.
    """
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def log_change_report(run_id, changes, *, tracking_uri=None):
    """Add a nightly run's change report to its run (finished or not): as it is, and as tables.

    Parameters
    ----------
    run_id : str
    changes : dict
        The report (`jobs.nightly.change_report`), logged as ``changes.json``; its moved pairs
        also as ``changes/moved.csv`` (rep_a, rep_b, measure, kernel, estimator, before,
        after, delta) and its drift as ``changes/drift.csv`` (representation, mmd2, std_err,
        sigma, reason), with a header when they are empty.
    tracking_uri : str, default=None
        None means MLflow's own default.
    """
    client = MlflowClient(tracking_uri)
    client.log_dict(run_id, changes, CHANGES_FILE)
    moved = ("rep_a", "rep_b", "measure", "kernel", "estimator", "before", "after", "delta")
    drift = [{"representation": name, **entry} for name, entry in changes["drift"].items()]
    tables = (
        (MOVED_ARTIFACT, moved, changes["moved"]),
        (DRIFT_ARTIFACT, ("representation", "mmd2", "std_err", "sigma", "reason"), drift),
    )
    with tempfile.TemporaryDirectory() as folder:
        for artifact, columns, rows in tables:
            path = Path(folder) / Path(artifact).name
            with open(path, "w", newline="") as file:
                writer = csv.DictWriter(file, columns, restval="")
                writer.writeheader()
                writer.writerows(rows)
            client.log_artifact(run_id, str(path), artifact_path=str(Path(artifact).parent))


def trend_step(moment):
    """The step of a night's values in its schedule's trend: its UTC date as the integer
    YYYYMMDD (2026-01-15 -> 20260115), readable in MLflow's charts and tables."""
    day = utc(moment)
    return day.year * 10_000 + day.month * 100 + day.day


def schedule_run(schedule, *, experiment, store=None, tracking_uri=None, artifact_location=None):
    """The id of the parent run of the schedule ``schedule`` in ``experiment``, created if
    there is none: the run its nightly runs are children of, and that `log_trend` logs to.

    It is tagged ``repalign.kind = "schedule"`` and ``repalign.schedule = schedule``, called
    ``experiment · schedule <schedule> · store``, and FINISHED from the start (MLflow takes
    metrics of finished runs). Should two uploads create one at once, the first started is
    the one found from then on.

    Parameters
    ----------
    schedule : str
        The schedule's id.
    experiment : str
        Experiment name, created if needed (with ``artifact_location``, as in
        `log_alignment_run`).
    store : str, default=None
        The schedule's store, for the run's name.
    tracking_uri : str, default=None
        None means MLflow's own default.
    artifact_location : str, default=None

    Returns
    -------
    str
    """
    client = MlflowClient(tracking_uri)
    experiment_id = _experiment_id(client, experiment, artifact_location)
    found = _schedule_runs(client, [experiment_id], schedule)
    if found:
        return found[0].info.run_id
    tags = {KIND_TAG: "schedule", SCHEDULE_TAG: schedule}
    name = run_name(experiment, f"schedule {schedule}", store)
    with open_run(client, experiment_id, run_name=name, tags=tags):
        pass
    return _schedule_runs(client, [experiment_id], schedule)[0].info.run_id


def log_trend(parent, table, moment, *, tracking_uri=None):
    """Log a night's values to its schedule's parent run (`schedule_run`): one metric per pair
    whose status is "ok", named `metric_key` with the pair's names in sorted order (a night's
    table may list a pair either way), at step `trend_step` of ``moment`` and with
    ``moment`` as its timestamp.

    MLflow keeps every value logged under a name, so the parent's metric history is a pair's
    value night after night. Logging the same night again adds nothing (a database store
    drops a metric equal in name, value, step and timestamp), so an upload retried is safe. A
    schedule that runs more than once a day gives a day several values at one step, which
    their timestamps tell apart.

    Parameters
    ----------
    parent : str
        The parent run's id.
    table : pyarrow.Table
        The night's result table.
    moment : datetime.datetime
        The night (`repalign.provenance.utc`).
    tracking_uri : str, default=None
        None means MLflow's own default.
    """
    table = as_alignment_table(table)
    step = trend_step(moment)
    timestamp = int(utc(moment).timestamp() * 1000)
    computed = table.filter(pc.field("status") == "ok")
    columns = ("measure", "kernel", "estimator", "rep_a", "rep_b", "value")
    metrics = [
        Metric(metric_key(measure, kernel, estimator, *sorted((a, b))), value, timestamp, step)
        for measure, kernel, estimator, a, b, value in zip(
            *(computed[c].to_pylist() for c in columns), strict=True
        )
    ]
    MlflowClient(tracking_uri).log_batch(parent, metrics=metrics)


def schedule_trend(schedule, rep_a, rep_b, *, tracking_uri=None):
    """One pair's values over the nights of a schedule, read from its parent run's metrics.

    Parameters
    ----------
    schedule : str
        The schedule's id; its parent run is looked for in every experiment.
    rep_a, rep_b : str
        The pair, in either order.
    tracking_uri : str, default=None
        None means MLflow's own default.

    Returns
    -------
    dict
        ``run_id`` (the parent run), ``pair`` (the names, sorted), ``configurations`` (the
        configuration part of the metric names, ``cka.linear.biased``, sorted) and ``points``:
        one per night, by time, each ``{"time": ISO 8601 UTC, "step": YYYYMMDD, "values":
        {configuration: value}}``; a configuration missing that night is absent.

    Raises
    ------
    RepalignError
        If no run of the schedule was logged, or its runs have no value of the pair.
    """
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = _schedule_runs(client, experiments, schedule)
    if not found:
        raise RepalignError(
            f"schedule must name a schedule with a nightly run logged to the tracking store "
            f"at {public_uri(client.tracking_uri)}; no run is tagged {SCHEDULE_TAG} = "
            f"{schedule!r}."
        )
    parent = found[0]
    pair = sorted((rep_a, rep_b))
    names = [_NOT_IN_NAME_PART.sub("_", name) for name in pair]
    keys = sorted(key for key in parent.data.metrics if key.split("/")[1:] == names)
    if not keys:
        raise RepalignError(
            f"the pair {pair[0]} / {pair[1]} has no value in the runs of schedule {schedule} "
            f"(its parent run {parent.info.run_id} holds {len(parent.data.metrics)} series); "
            "check the representations' names."
        )
    points = {}
    for key in keys:
        configuration = key.split("/")[0]
        for metric in client.get_metric_history(parent.info.run_id, key):
            point = points.setdefault((metric.timestamp, metric.step), {})
            point[configuration] = metric.value
    return {
        "run_id": parent.info.run_id,
        "pair": pair,
        "configurations": [key.split("/")[0] for key in keys],
        "points": [
            {
                "time": datetime.datetime.fromtimestamp(timestamp / 1000, datetime.UTC).isoformat(),
                "step": step,
                "values": values,
            }
            for (timestamp, step), values in sorted(points.items())
        ],
    }


def _schedule_runs(client, experiment_ids, schedule):
    """The parent runs of ``schedule`` in those experiments, first started first."""
    if not _SCHEDULE_ID.fullmatch(schedule):
        raise InvalidParameterError(
            f"schedule must be a schedule's id (letters, digits, '_', '-', '.'); got {schedule!r}."
        )
    return client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{KIND_TAG}` = 'schedule' and tags.`{SCHEDULE_TAG}` = '{schedule}'",
        order_by=["attributes.start_time ASC"],
    )


def _default_name(experiment, kind, params):
    """``experiment · kind · store · now`` for a run logged without a name."""
    store = params.get("store") if isinstance(params, Mapping) else None
    return run_name(experiment, kind, store, datetime.datetime.now(datetime.UTC))


def tracking_unreachable(error):
    """Did ``error`` come from a tracking server that could not be reached?

    True when a connection error or timeout of ``requests`` (which MLflow's REST client uses),
    or Python's `ConnectionError` or `TimeoutError`, is ``error`` or in its chain of causes
    and contexts: MLflow turns a failed request into an `MlflowException` raised while
    handling it, after its retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``) are spent. An error
    that the server answered (an invalid parameter, a missing run) is not one.
    """
    unreachable = (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.RetryError,  # retries on 429/5xx answers spent: no usable server
        ConnectionError,
        TimeoutError,
    )
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, unreachable):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def finished_upload(upload, *, experiment, tracking_uri=None):
    """The finished run of an upload tagged ``repalign.upload = upload``, if one was logged;
    runs an interrupted attempt left unfinished are marked FAILED.

    An attempt to log a job that the tracking server stopped answering part way leaves a run
    RUNNING (its own FAILED mark could not reach the server either). Marking it FAILED keeps
    it from being taken for the job's record (`latest_run` takes FINISHED runs only); nested
    runs it left RUNNING are marked too. A FINISHED run is complete: `log_alignment_run` and
    `log_stitching_run` finish a run after everything else is logged.

    Parameters
    ----------
    upload : str
        The value of the tag `UPLOAD_TAG` given to the logging function.
    experiment : str
        Experiment name.
    tracking_uri : str, default=None
        None means MLflow's own default.

    Returns
    -------
    str or None
        The id of the FINISHED run (the latest started, if there are several), else None.
    """
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    ids = [found.experiment_id]
    runs = client.search_runs(ids, filter_string=f"tags.`{UPLOAD_TAG}` = '{upload}'")
    for run in runs:
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "FAILED")
        if run.info.status != "FINISHED":
            children = client.search_runs(
                ids,
                filter_string=f"tags.`{PARENT_TAG}` = '{run.info.run_id}' "
                "and attributes.status = 'RUNNING'",
            )
            for child in children:
                client.set_terminated(child.info.run_id, "FAILED")
    finished = [run for run in runs if run.info.status == "FINISHED"]
    return max(finished, key=lambda run: run.info.start_time).info.run_id if finished else None


def metric_key(measure, kernel, estimator, rep_a, rep_b):
    """The MLflow metric name of one pair: ``{measure}.{kernel}.{estimator}/{rep_a}/{rep_b}``.

    An empty kernel or estimator is left out with its dot (``mutual_knn.linear/a/b``). In
    each part, a character other than ASCII letters, digits, ``_``, ``-``, ``.`` and space
    becomes ``_`` (``/`` too: it separates the parts).
    """
    configuration = ".".join(part for part in (measure, kernel, estimator) if part)
    return "/".join(_NOT_IN_NAME_PART.sub("_", part) for part in (configuration, rep_a, rep_b))


def load_alignment_table(run_id, *, tracking_uri=None):
    """Read back the result table of an alignment run.

    Parameters
    ----------
    run_id : str
    tracking_uri : str, default=None
        None means MLflow's own default.

    Returns
    -------
    pyarrow.Table
        The table logged by `log_alignment_run`, read into memory.
    """
    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory() as folder:
        return pq.read_table(client.download_artifacts(run_id, TABLE_ARTIFACT, folder))


def latest_run(experiment, *, tracking_uri=None):
    """The id of the alignment run of ``experiment`` that started last and finished.

    Runs that failed, are still running, or were not logged by `log_alignment_run` are
    skipped.

    Parameters
    ----------
    experiment : str
        Experiment name.
    tracking_uri : str, default=None
        None means MLflow's own default.

    Returns
    -------
    str or None
        None when the experiment does not exist or holds no finished alignment run.
    """
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"attributes.status = 'FINISHED' and tags.`{KIND_TAG}` = 'alignment'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def latest_heatmaps(*, tracking_uri=None):
    """The latest finished alignment run (`latest_run`) of every experiment that has one, with
    the names of its heatmaps.

    Parameters
    ----------
    tracking_uri : str, default=None
        None means MLflow's own default.

    Returns
    -------
    list of (str, str, list of str)
        ``(experiment, run id, heatmap names)`` by experiment name; a name is the artifact's
        file name without ``.png`` (``cka-linear-biased``), in name order with each raw heatmap
        before its calibrated one (``cka-linear-biased-calibrated``). Only
        the first page of experiments MLflow returns (1,000) is looked at.
    """
    client = MlflowClient(tracking_uri)
    found = []
    for experiment in sorted(client.search_experiments(), key=lambda e: e.name):
        run_id = latest_run(experiment.name, tracking_uri=tracking_uri)
        if run_id is not None:
            found.append((experiment.name, run_id, _heatmap_names(client, run_id)))
    return found


def heatmap_png(run_id, name, *, tracking_uri=None):
    """The PNG bytes of the heatmap ``heatmaps/<name>.png`` of run ``run_id``.

    Parameters
    ----------
    run_id : str
    name : str
        One of the names `latest_heatmaps` lists for the run (the file name without ``.png``).
        It is checked against the run's listing, so no other artifact can be read.
    tracking_uri : str, default=None
        None means MLflow's own default.

    Returns
    -------
    bytes

    Raises
    ------
    RepalignError
        If the run does not exist or has no heatmap called ``name``.
    """
    client = MlflowClient(tracking_uri)
    try:
        names = _heatmap_names(client, run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise RepalignError(
            f"run_id must name a run of the tracking store; got {run_id!r}."
        ) from None
    if name not in names:
        raise RepalignError(
            f"name must be one of the heatmaps of run {run_id} ({', '.join(names) or 'none'}); "
            f"got {name!r}."
        )
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, f"{HEATMAP_FOLDER}/{name}.png", folder)
        return Path(path).read_bytes()


def _heatmap_names(client, run_id):
    """The run's heatmap names, each configuration's raw one before its calibrated one."""
    files = client.list_artifacts(run_id, HEATMAP_FOLDER)
    names = [Path(f.path).stem for f in files if not f.is_dir and f.path.endswith(".png")]
    return sorted(names, key=lambda name: (name.endswith(CALIBRATED_SUFFIX), name))


def _with_configuration(models, measure, kernel, estimator):
    """A `model_table` with the configuration's columns in front."""
    for position, (column, value) in enumerate(
        (("measure", measure), ("kernel", kernel), ("estimator", estimator))
    ):
        models = models.add_column(position, column, pa.array([value] * models.num_rows))
    return models


def _pair_metrics(table):
    """One MLflow metric per pair whose status is "ok", keyed by `metric_key`."""
    computed = table.filter(pc.field("status") == "ok")
    columns = ("measure", "kernel", "estimator", "rep_a", "rep_b", "value")
    timestamp = int(time.time() * 1000)
    metrics = {}
    for *names, value in zip(*(computed[c].to_pylist() for c in columns), strict=True):
        key = metric_key(*names)
        if len(key) > MAX_ENTITY_KEY_LENGTH:
            raise RepalignError(
                f"metric names must have at most {MAX_ENTITY_KEY_LENGTH} characters (an MLflow "
                f"limit); the name of {tuple(names)} has {len(key)}: {key!r}."
            )
        _add_once(metrics, key, Metric(key, value, timestamp, 0), kind="metric name")
    return list(metrics.values())


def _flat_params(params, prefix=""):
    """``params`` as MLflow params: dotted keys, string values within MLflow's length limit."""
    flat = {}
    for key, value in params.items():
        name = prefix + _NOT_IN_NAME_PART.sub("_", str(key))
        if isinstance(value, Mapping) and value:
            for param in _flat_params(value, prefix=f"{name}."):
                _add_once(flat, param.key, param, kind="param key")
        else:
            _add_once(flat, name, Param(name, _param_value(value)), kind="param key")
    return list(flat.values())


def _param_value(value):
    """``value`` as an MLflow param value: lists as JSON, long strings truncated with a note."""
    text = json.dumps(value, default=str) if isinstance(value, list | tuple) else str(value)
    if len(text) <= MAX_PARAM_VAL_LENGTH:
        return text
    note = f"... [truncated from {len(text):,} characters]"
    return text[: MAX_PARAM_VAL_LENGTH - len(note)] + note


def _add_once(entries, key, entry, *, kind):
    """Add ``entry`` under ``key``, refusing a key that two different inputs map to."""
    if key in entries:
        raise RepalignError(
            f"every {kind} logged to MLflow must be unique; two entries map to {key!r} "
            f"(characters MLflow refuses become '_')."
        )
    entries[key] = entry


def import_store_modules():
    """Import what logging to a database store needs beyond this module (MLflow's SQL store
    and its ORM, about a second), for a job to do on a thread while it computes."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def open_default_store_ahead():
    """Open `default_store`'s database, if it has been made, before a job logs to it: for its
    logging child to do while the job computes. MLflow keeps the store it opened for each URI,
    and opening a database store first reads every one of MLflow's schema migration scripts to
    check the database is current: 0.2 s of a small job's end.

    The folder's lock is held while it opens, shared: a job making the store holds it alone
    until the tables are complete, and opening a database whose tables are not all there would
    make them, racing it. A store not made yet is made when the job logs (a job that fails
    leaves none); a server or another database is not reached before the job has results. If
    opening fails, logging opens the store again and reports why.
    """
    try:
        folder = Path.cwd()
        if not (folder / "mlflow.db").is_file():
            return
        with _folder_locked(folder, fcntl.LOCK_SH):
            MlflowClient(_default_uri())
    except Exception:  # whatever it is, logging meets it again and reports it; nothing is lost
        return


def default_store():
    """Where MLflow itself logs when no tracking URI is set (MLflow 3): ``sqlite:///mlflow.db``
    in the working folder, with artifacts in ``./mlruns`` beside it; returned as absolute
    paths, ``(tracking_uri, artifact_location)``, so that a pending upload synced from another
    folder still lands there. `mlflow ui` run in that folder shows every run logged to it.

    The first job to use it makes the database (`_make_default_store`), holding a lock on the
    folder: jobs that start together in a new folder would otherwise race to make it.
    """
    folder = Path.cwd()
    database = folder / "mlflow.db"
    if not database.exists():
        with _folder_locked(folder, fcntl.LOCK_EX):
            if not database.exists():
                _make_default_store(database)
    return _default_uri(), str(folder / "mlruns")


def _make_default_store(database):
    """Make the SQLite store ``database`` as MLflow makes it, from a copy of `store_template`:
    MLflow makes a store's tables by running each of its schema migrations in turn (0.9 s, a
    third of a small job), where copying them takes milliseconds. Opening the copy then adds
    MLflow's default experiment, with this folder's artifact location. Where the cache folder
    cannot be written, MLflow makes the tables itself."""
    try:
        template = store_template()
    except OSError:
        template = None
    if template is not None:
        with atomic_write(database) as part:
            shutil.copyfile(template, part)
    prepare_store(f"sqlite:///{database}")


def store_template():
    """The path of a SQLite database holding the tables of an empty MLflow store of the
    installed MLflow version and no experiment, made once per version in the cache folder
    (`repalign.cache.cache_folder`): by MLflow itself, in a new database, from which its default
    experiment is then deleted (its artifact location names the folder it was made in)."""
    path = cache_folder() / f"mlflow-{mlflow_version}-tables.db"
    if path.exists() and not _holds_empty_tables(path):
        path.unlink(missing_ok=True)  # damaged: made again
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # a new folder each time: MLflow keeps the engine of every database it opened, which
        # would still point at an earlier template made under the same name
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".making-") as folder:
            part = Path(folder) / path.name
            prepare_store(f"sqlite:///{part}")
            with closing(sqlite3.connect(part)) as database, database:
                database.execute("DELETE FROM experiments WHERE experiment_id = 0")
            os.replace(part, path)
    return path


def _holds_empty_tables(path):
    """Whether the SQLite database ``path`` passes SQLite's own check and holds a schema version
    and no experiment, as `store_template` leaves it."""
    read_only = f"{Path(path).resolve().as_uri()}?mode=ro"
    try:
        with closing(sqlite3.connect(read_only, uri=True)) as database:
            return (
                database.execute("PRAGMA quick_check").fetchall() == [("ok",)]
                and database.execute("SELECT COUNT(*) FROM alembic_version").fetchone() == (1,)
                and database.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)
            )
    except sqlite3.Error:
        return False


def _default_uri():
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


@contextmanager
def _folder_locked(folder, kind):
    """The block, holding ``folder``'s lock: ``fcntl.LOCK_EX`` to make the default store in it,
    ``fcntl.LOCK_SH`` to open it once made (`default_store`, `open_default_store_ahead`)."""
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, kind)
        yield
    finally:
        os.close(lock)  # releases the lock


def prepare_store(tracking_uri):
    """Create the tables of a database tracking store now, once: jobs that start together
    would otherwise race to create them (MLflow makes them on first use)."""
    MlflowClient(tracking_uri).search_experiments(max_results=1)


UI_HOST = "127.0.0.1"
UI_START_SECONDS = 120
"""How long MLflow's UI may take to answer after it starts (its imports take seconds)."""


@contextmanager
def mlflow_ui(tracking_uri, *, port=None, timeout=UI_START_SECONDS):
    """MLflow's UI and REST API (``python -m mlflow server``) on a database tracking store,
    listening on 127.0.0.1 only: started, waited for until ``/health`` answers, and stopped
    (its whole process group) when the block ends.

    The server's own messages go to this process's standard error. Its background job runner
    is off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``, unless set): it runs MLflow's GenAI
    evaluations, which a viewer of runs does not need.

    Parameters
    ----------
    tracking_uri : str
        A database store (``sqlite:///PATH/mlflow.db``, ``postgresql://...``).
    port : int, default=None
        None takes one that is free now.
    timeout : float, default=120
        Seconds the server may take to answer.

    Yields
    ------
    (str, subprocess.Popen)
        The UI's address, ``http://127.0.0.1:PORT``, and the server's process.

    Raises
    ------
    InvalidParameterError
        If ``port`` is taken.
    RepalignError
        If the server exits or does not answer within ``timeout``.
    """
    port = _free_port() if port is None else _check_port(port)
    url = f"http://{UI_HOST}:{port}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
               "--host", UI_HOST, "--port", str(port), "--workers", "1"]  # fmt: skip
    server = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=2, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(f"{url}/health"):
            if server.poll() is not None:
                raise RepalignError(
                    f"MLflow's UI on {public_uri(tracking_uri)} exited as it started (exit "
                    f"status {server.returncode}); its messages are above."
                )
            if time.monotonic() > deadline:
                raise RepalignError(
                    f"MLflow's UI on {public_uri(tracking_uri)} did not answer at {url} within "
                    f"{timeout:g} s; its messages are above."
                )
            time.sleep(0.25)
        yield url, server
    finally:
        _stop_group(server)


def _free_port():
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((UI_HOST, 0))
        return probe.getsockname()[1]


def _check_port(port):
    """``port``, if it is a port of 127.0.0.1 that nothing listens on now."""
    if not 0 < port < 65536:
        raise InvalidParameterError(f"port must be between 1 and 65535; got {port}.")
    with socket.socket() as probe:
        try:
            probe.bind((UI_HOST, port))
        except OSError as exc:
            raise InvalidParameterError(
                f"port {port} of {UI_HOST} cannot be used ({exc.strerror}); give another port, "
                "or none to take a free one."
            ) from None
    return port


def _answers(url):
    """Does ``url`` answer 200 now?"""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _stop_group(process):
    """Stop a process started in a session of its own, and everything it started."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            process.wait()


def _experiment_id(client, name, artifact_location):
    """The id of the experiment called ``name``, created if needed (another job creating it at
    the same moment is fine)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as exc:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise exc from None
        return experiment.experiment_id


def _log_parquet(client, run_id, table, artifact=TABLE_ARTIFACT):
    """Log ``table`` as the Parquet artifact ``artifact``."""
    artifact = Path(artifact)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / artifact.name
        pq.write_table(table, path)
        client.log_artifact(run_id, str(path), artifact_path=str(artifact.parent))


def _missing_pairs(table):
    """The pairs whose status is not "ok", with their reasons, as columns."""
    missing = table.filter(pc.field("status") != "ok")
    columns = ("rep_a", "rep_b", "measure", "kernel", "estimator", "status", "reason")
    return {name: missing[name].to_pylist() for name in columns}
