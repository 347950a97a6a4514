"""An all-pairs alignment job as one MLflow run, and the way back to its results.

The only module of repalign that imports mlflow. A run holds:

    params                        the job's parameters, nested dicts as dotted keys
    metrics                       one per computed pair and configuration, named by `metric_key`
    results/alignment.parquet     the long result table as given: the authoritative record
    results/missing.json          the missing pairs and their reasons (an MLflow table)
    heatmaps/<configuration>.png  one heatmap per measure configuration
    summary.json                  the job's summary

`log_json_artifact` adds a JSON artifact to a run afterwards (the nightly job's changes.json).
`latest_heatmaps` and `heatmap_png` read the heatmaps back (the service's status page).
`tracking_unreachable` tells a tracking server that could not be reached from other errors, and
`finished_upload` settles what an interrupted upload left on the server (``repalign sync``).
`check_tracking_uri` refuses, before a job starts, a tracking URI that no run can be logged to.

A stitching job (`log_stitching_run`) is one parent run with a nested run per pair:

    parent: params, summary metrics, results/stitching.parquet, plots/bound.png,
            plots/penalty.png, summary.json
    nested: params source, target, control; one metric per numeric column of its row

Runs are opened and closed explicitly (`open_run`) through an ``MlflowClient`` bound to the
tracking URI given; MLflow's fluent API and its process-wide state (active run, tracking URI)
are neither used nor changed.
"""

import fcntl
import json
import os
import re
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

from repalign.errors import InvalidParameterError, RepalignError
from repalign.models import model_heatmap, model_table
from repalign.plots import (
    alignment_heatmap,
    as_alignment_table,
    configuration_rows,
    configurations,
)
from repalign.stitching_plots import bound_plot, penalty_plot

TABLE_ARTIFACT = "results/alignment.parquet"
STITCHING_ARTIFACT = "results/stitching.parquet"
MISSING_ARTIFACT = "results/missing.json"
MODELS_ARTIFACT = "results/models.parquet"  # the model-level tables, `repalign.models`
SUMMARY_ARTIFACT = "summary.json"
HEATMAP_FOLDER = "heatmaps"
CALIBRATED_SUFFIX = "-calibrated"  # heatmaps/<configuration>-calibrated.png
CONFIGURATION = ("measure", "kernel", "estimator")
MODELS_SUFFIX = "-models"  # heatmaps/<configuration>-models.png, the model-level matrix
KIND_TAG = "repalign.kind"  # marks alignment runs, so that `latest_run` skips any other run
UPLOAD_TAG = "repalign.upload"  # one id per job's upload, kept across retries (`finished_upload`)
# MLflow allows these in metric and param names, and "/" between the parts of a name.
_NOT_IN_NAME_PART = re.compile(r"[^A-Za-z0-9_\-. ]")


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
        The job's long result table (columns in `repalign.plots.ALIGNMENT_COLUMNS`), logged
        as given to ``results/alignment.parquet``.
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
        None lets MLflow choose one.
    heatmaps : bool, default=True
        Log ``heatmaps/<measure>-<kernel>[-<estimator>].png`` per configuration, and
        beside it ``…-calibrated.png`` for one with calibrated scores (q ≥ 0.05 grey) and
        ``…-models.png``, its model-level matrix, when the table holds several models. That
        matrix (`repalign.models.model_table`) is logged as ``results/models.parquet`` either
        way.
    cluster : bool, default=False
        Order the heatmaps by hierarchical clustering (see
        `repalign.plots.alignment_heatmap`).
    tags : dict, default=None
        Extra run tags. The tag ``repalign.kind = "alignment"`` is always set.
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
    run_tags = {**(tags or {}), KIND_TAG: "alignment"}
    experiment_id = _experiment_id(client, experiment, artifact_location)
    with open_run(client, experiment_id, run_name=run_name, tags=run_tags) as run_id:
        # MlflowClient.log_batch splits into requests within MLflow's limits
        # (1,000 metrics, 100 params).
        client.log_batch(run_id, metrics=metrics, params=run_params)
        _log_parquet(client, run_id, table)
        client.log_table(run_id, _missing_pairs(table), MISSING_ARTIFACT)
        configs = [dict(zip(CONFIGURATION, c, strict=True)) for c in configurations(table)]
        models = [model_table(table, **config) for config in configs]
        found = [
            _with_configuration(m, **c) for m, c in zip(models, configs, strict=True) if m.num_rows
        ]
        if found:
            _log_parquet(client, run_id, pa.concat_tables(found), MODELS_ARTIFACT)
        if heatmaps:
            for config, rows in zip(configs, models, strict=True):
                _log_heatmaps(
                    client, run_id, table, config, rows if rows.num_rows else None, cluster
                )
        client.log_dict(run_id, summary, SUMMARY_ARTIFACT)
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
    params, summary, experiment, tracking_uri, run_name, artifact_location
        As in `log_alignment_run`. Numeric entries of ``summary`` are also the parent's
        metrics.
    tags : dict, default=None
        Extra tags of the parent run. The tag ``repalign.kind = "stitching"`` is always set.

    Returns
    -------
    str
        The parent run's id. Runs are FINISHED; if logging fails part way, the runs opened
        are marked FAILED and the error is raised.
    """
    client = MlflowClient(tracking_uri)
    experiment_id = _experiment_id(client, experiment, artifact_location)
    timestamp = int(time.time() * 1000)
    parent_tags = {**(tags or {}), KIND_TAG: "stitching"}
    with open_run(client, experiment_id, run_name=run_name, tags=parent_tags) as parent:
        numbers = {k: v for k, v in summary.items() if isinstance(v, int | float)}
        metrics = [Metric(k, float(v), timestamp, 0) for k, v in numbers.items()]
        client.log_batch(parent, metrics=metrics, params=_flat_params(params))
        _log_parquet(client, parent, table, STITCHING_ARTIFACT)
        client.log_figure(parent, bound_plot(table), "plots/bound.png")
        client.log_figure(parent, penalty_plot(table), "plots/penalty.png")
        client.log_dict(parent, summary, SUMMARY_ARTIFACT)
        for row in table.to_pylist():
            _log_pair(client, experiment_id, parent, row, timestamp)
    return parent


def _log_pair(client, experiment_id, parent, row, timestamp):
    """One nested run: the pair's names as params, its numbers as metrics."""
    run_name = f"{row['source']} -> {row['target']}"
    tags = {"mlflow.parentRunId": parent, KIND_TAG: "stitching-pair"}
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


def log_json_artifact(run_id, content, path, *, tracking_uri=None):
    """Add a JSON artifact to an existing run (finished or not), e.g. a nightly change report.

    Parameters
    ----------
    run_id : str
    content : dict or list
        Plain Python values (MLflow writes others as ``str(value)``).
    path : str
        Artifact path inside the run, ending in ``.json`` (e.g. ``"changes.json"``).
    tracking_uri : str, default=None
        None means MLflow's own default.
    """
    MlflowClient(tracking_uri).log_dict(run_id, content, path)


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
                filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}' "
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


def _log_heatmaps(client, run_id, table, config, models, cluster):
    """The configuration's heatmap, its calibrated one where the table has calibrated scores,
    and that of its model-level ``models`` (a `model_table`, or None)."""
    name = "-".join(part for part in config.values() if part)
    figure = alignment_heatmap(table, **config, cluster=cluster)
    client.log_figure(run_id, figure, f"{HEATMAP_FOLDER}/{name}.png")
    if _has_calibrated(table, **config):
        figure = alignment_heatmap(table, **config, cluster=cluster, calibrated=True)
        client.log_figure(run_id, figure, f"{HEATMAP_FOLDER}/{name}{CALIBRATED_SUFFIX}.png")
    if models is not None:
        title = f"best layer pair of each pair of models\n{name}"
        figure = model_heatmap(models, title=title, label=config["measure"])
        client.log_figure(run_id, figure, f"{HEATMAP_FOLDER}/{name}{MODELS_SUFFIX}.png")


def _with_configuration(models, measure, kernel, estimator):
    """A `model_table` with the configuration's columns in front."""
    for position, (column, value) in enumerate(
        (("measure", measure), ("kernel", kernel), ("estimator", estimator))
    ):
        models = models.add_column(position, column, pa.array([value] * models.num_rows))
    return models


def _has_calibrated(table, measure, kernel, estimator):
    """Whether the table has calibrated scores of the configuration (tables written before
    them have no such column)."""
    if "calibrated" not in table.column_names:
        return False
    rows = configuration_rows(table, measure, kernel, estimator)
    return rows["calibrated"].null_count < rows.num_rows


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


def default_store():
    """Where MLflow itself logs when no tracking URI is set (MLflow 3): ``sqlite:///mlflow.db``
    in the working folder, with artifacts in ``./mlruns`` beside it; returned as absolute
    paths, ``(tracking_uri, artifact_location)``, so that a pending upload synced from another
    folder still lands there. `mlflow ui` run in that folder shows every run logged to it.

    The first job to use it creates its tables, holding a lock on the folder: jobs that start
    together in a new folder would otherwise race to create them.
    """
    folder = Path.cwd()
    database = folder / "mlflow.db"
    uri = f"sqlite:///{database}"
    if not database.exists():
        lock = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not database.exists():
                prepare_store(uri)
        finally:
            os.close(lock)  # releases the lock
    return uri, str(folder / "mlruns")


def prepare_store(tracking_uri):
    """Create the tables of a database tracking store now, once: jobs that start together
    would otherwise race to create them (MLflow makes them on first use)."""
    MlflowClient(tracking_uri).search_experiments(max_results=1)


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
