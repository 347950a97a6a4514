"""Logging an alignment job to MLflow (repalign.tracking) and drawing it (repalign.plots).

The MLflow tests use a real tracking store: a SQLite file in a temporary folder, with the
experiment's artifact location in that folder too. One store serves the whole module
(creating its tables takes seconds); each test that logs uses its own experiment.
"""

import datetime
import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from matplotlib.image import imread
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import repalign.heatmap_files
from repalign.alignment_tables import square_matrix
from repalign.errors import InvalidParameterError, RepalignError
from repalign.plots import alignment_heatmap
from repalign.provenance import (
    COMMIT_TAG,
    CONFIGURATIONS_TAG,
    STORE_DIGEST_TAG,
    VERSION_TAG,
    run_name,
    store_digest,
)
from repalign.tracking import (
    KIND_TAG,
    check_tracking_uri,
    default_store,
    latest_run,
    load_alignment_table,
    log_alignment_run,
    metric_key,
    open_default_store_ahead,
    open_run,
    schedule_trend,
    trend_step,
)

# Listed out of order on purpose: the heatmap must put fc2 before fc10, logits last in its
# model, and model s2 before model s10.
REPRESENTATIONS = ["mlp-s10.fc2", "mlp-s2.logits", "mlp-s2.fc10", "mlp-s2.fc2"]
ORDERED = ["mlp-s2.fc2", "mlp-s2.fc10", "mlp-s2.logits", "mlp-s10.fc2"]
MISSING_PAIR = ("mlp-s10.fc2", "mlp-s2.logits")  # as the job lists it: rep_a, rep_b
CONFIGURATIONS = [("cka", "linear", "biased"), ("mutual_knn", "linear", "")]
PARAMS = {
    "store": "/data/zoo",
    "representations": REPRESENTATIONS,
    "measures": {"cka": {"kernel": "linear", "estimator": "biased"}, "mutual_knn": {"k": 10}},
    "seeds": [0, 1],
    "n": 1797,
    "approx": None,
}
SUMMARY = {"pairs": 20, "missing": 1, "seconds": 1.25, "reasons": {"zero variance": 1}}


def alignment_table(representations=REPRESENTATIONS, configurations=CONFIGURATIONS, seed=0):
    """A result table as the all-pairs job writes it, with values that are not round."""
    rng = np.random.default_rng(seed)
    rows = []
    for measure, kernel, estimator in configurations:
        for rep_a, rep_b in itertools.combinations_with_replacement(representations, 2):
            missing = measure == "cka" and {rep_a, rep_b} == set(MISSING_PAIR)
            value = 1.0 if rep_a == rep_b else float(rng.uniform(0.1, 0.9))
            rows.append(
                {
                    "rep_a": rep_a,
                    "rep_b": rep_b,
                    "measure": measure,
                    "kernel": kernel,
                    "estimator": estimator,
                    "value": None if missing else value,
                    "n": 1797,
                    "std_err": None,
                    "status": "missing" if missing else "ok",
                    "reason": "zero variance in 'mlp-s10.fc2'" if missing else "",
                }
            )
    schema = pa.schema(
        [
            ("rep_a", pa.string()),
            ("rep_b", pa.string()),
            ("measure", pa.string()),
            ("kernel", pa.string()),
            ("estimator", pa.string()),
            ("value", pa.float64()),
            ("n", pa.int64()),
            ("std_err", pa.float64()),
            ("status", pa.string()),
            ("reason", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite tracking URI and a folder for artifacts, both under a temporary folder."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder}/mlflow.db", folder


def new_experiment(store, name):
    """Create the experiment ``name`` with its artifacts under the store's folder."""
    uri, folder = store
    MlflowClient(uri).create_experiment(name, artifact_location=str(folder / name))
    return name


@pytest.fixture(scope="module")
def table():
    return alignment_table()


@pytest.fixture(scope="module")
def logged(store, table):
    """One run logged by log_alignment_run, read back through a plain MlflowClient."""
    uri, _ = store
    experiment = new_experiment(store, "logged")
    run_id = log_alignment_run(
        table,
        params=PARAMS,
        summary=SUMMARY,
        experiment=experiment,
        tracking_uri=uri,
        run_name="nightly",
        tags={"zoo": "digits"},
    )
    client = MlflowClient(uri)
    return client, client.get_run(run_id)


def local_path(artifact_uri):
    """The path of a local artifact URI, which MLflow writes as a path or a file:// URI."""
    return artifact_uri.removeprefix("file://")


def read_artifact(client, run, path, tmp_path):
    return client.download_artifacts(run.info.run_id, path, str(tmp_path))


# --- the logged run ---------------------------------------------------------------------


def test_run_is_finished_named_tagged_and_stored_under_the_experiment(logged, store):
    _, run = logged
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "nightly"
    assert run.data.tags["zoo"] == "digits"
    assert run.data.tags[KIND_TAG] == "alignment"
    _, folder = store
    assert local_path(run.info.artifact_uri).startswith(f"{folder}/logged/")


def test_params_are_flat_strings(logged):
    _, run = logged
    assert run.data.params == {
        "store": "/data/zoo",
        "representations": json.dumps(REPRESENTATIONS),
        "measures.cka.kernel": "linear",
        "measures.cka.estimator": "biased",
        "measures.mutual_knn.k": "10",
        "seeds": "[0, 1]",
        "n": "1797",
        "approx": "None",
    }


def test_one_metric_per_computed_pair_with_its_exact_value(logged, table):
    _, run = logged
    expected = {
        metric_key(row["measure"], row["kernel"], row["estimator"], row["rep_a"], row["rep_b"]): (
            row["value"]
        )
        for row in table.to_pylist()
        if row["status"] == "ok"
    }
    assert len(expected) == 2 * 10 - 1  # two configurations of 10 pairs, one pair missing
    assert run.data.metrics == expected  # float64 values stored and read back exactly
    assert "cka.linear.biased/mlp-s10.fc2/mlp-s2.logits" not in run.data.metrics
    assert "mutual_knn.linear/mlp-s10.fc2/mlp-s2.logits" in run.data.metrics


def test_parquet_artifact_is_the_input_table(logged, table, store):
    _, run = logged
    uri, _ = store
    read_back = load_alignment_table(run.info.run_id, tracking_uri=uri)
    assert read_back.schema == table.schema
    assert read_back.equals(table)


def test_one_valid_png_heatmap_per_configuration(logged, tmp_path):
    """And one of its model-level matrix; this table, written before the null columns, has
    no calibrated heatmaps."""
    client, run = logged
    files = client.list_artifacts(run.info.run_id, "heatmaps")
    assert sorted(f.path for f in files) == [
        "heatmaps/cka-linear-biased-models.png",
        "heatmaps/cka-linear-biased.html",  # the interactive page, tests/test_heatmap_html.py
        "heatmaps/cka-linear-biased.png",
        "heatmaps/mutual_knn-linear-models.png",
        "heatmaps/mutual_knn-linear.html",
        "heatmaps/mutual_knn-linear.png",
    ]
    for info in (f for f in files if f.path.endswith(".png")):
        path = read_artifact(client, run, info.path, tmp_path)
        with open(path, "rb") as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n"
        assert info.file_size > 10_000  # a blank canvas with labels is smaller than a heatmap
        height, width, _ = imread(path).shape
        assert min(height, width) >= 300


def test_missing_pairs_are_logged_with_their_reasons(logged, tmp_path):
    client, run = logged
    with open(read_artifact(client, run, "results/missing.json", tmp_path)) as file:
        missing = json.load(file)  # pandas' "split" layout: columns, then rows
    rows = [dict(zip(missing["columns"], row, strict=True)) for row in missing["data"]]
    assert rows == [
        {
            "rep_a": "mlp-s10.fc2",
            "rep_b": "mlp-s2.logits",
            "measure": "cka",
            "kernel": "linear",
            "estimator": "biased",
            "status": "missing",
            "reason": "zero variance in 'mlp-s10.fc2'",
        }
    ]


def test_summary_json_is_the_summary(logged, tmp_path):
    client, run = logged
    with open(read_artifact(client, run, "summary.json", tmp_path)) as file:
        assert json.load(file) == SUMMARY


# --- options and failures ---------------------------------------------------------------


def test_a_missing_experiment_is_created_with_artifacts_under_the_working_directory(
    table, tmp_path, monkeypatch
):
    # With a SQLite store and no server, MLflow's default artifact root is ./mlruns, resolved
    # when the process first opens the store: so a store of its own, opened after chdir.
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = log_alignment_run(
        table, params={}, summary={}, experiment="created", tracking_uri=uri, heatmaps=False
    )
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "created"
    assert local_path(run.info.artifact_uri).startswith(f"{tmp_path}/mlruns/")
    assert client.list_artifacts(run_id, "heatmaps") == []
    assert load_alignment_table(run_id, tracking_uri=uri).equals(table)


def test_cluster_orders_the_logged_heatmaps(store, table, monkeypatch):
    drawn = []

    def recording_heatmap(*args, **kwargs):
        drawn.append(kwargs)
        return alignment_heatmap(*args, **kwargs)

    monkeypatch.setattr(repalign.heatmap_files, "alignment_heatmap", recording_heatmap)
    uri, _ = store
    experiment = new_experiment(store, "clustered")
    log_alignment_run(
        table, params={}, summary={}, experiment=experiment, tracking_uri=uri, cluster=True
    )
    assert [kwargs["cluster"] for kwargs in drawn] == [True, True]


def test_no_artifact_is_logged_after_the_metrics(store, table, monkeypatch):
    """MLflow reads the whole run, every metric in it, to place each artifact: 0.55 s each
    with the demo's 11,000 pair metrics. The metrics go last, so no read sees one."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    metrics_seen = []
    read = SqlAlchemyStore.get_run

    def recording_read(self, run_id):
        run = read(self, run_id)
        metrics_seen.append(len(run.data.metrics))
        return run

    monkeypatch.setattr(SqlAlchemyStore, "get_run", recording_read)
    uri, _ = store
    experiment = new_experiment(store, "metrics-last")
    run_id = log_alignment_run(
        table, params={}, summary={}, experiment=experiment, tracking_uri=uri
    )
    assert metrics_seen and set(metrics_seen) == {0}
    assert len(MlflowClient(uri).get_run(run_id).data.metrics) > 0


def test_a_long_param_is_truncated_with_a_note(store, table):
    uri, _ = store
    experiment = new_experiment(store, "long-param")
    names = [f"model-{i:04d}.layer{j}" for i in range(300) for j in range(4)]
    run_id = log_alignment_run(
        table,
        params={"representations": names},
        summary={},
        experiment=experiment,
        tracking_uri=uri,
        heatmaps=False,
    )
    value = MlflowClient(uri).get_run(run_id).data.params["representations"]
    full = json.dumps(names)
    assert len(value) == 6000  # MLflow's limit on a param value
    assert value.endswith(f"... [truncated from {len(full):,} characters]")
    assert full.startswith(value[:5000])


def test_a_failure_while_logging_marks_the_run_failed(store, table):
    uri, _ = store
    experiment = new_experiment(store, "failing")
    too_long = {"k" * 300: 1}  # MLflow refuses a param key over 250 characters
    with pytest.raises(MlflowException, match="Param key"):
        log_alignment_run(
            table, params=too_long, summary={}, experiment=experiment, tracking_uri=uri
        )
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FAILED"


def test_open_run_finishes_a_run_and_fails_a_nested_run_and_its_parent_on_any_error(store):
    uri, _ = store
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(new_experiment(store, "open")).experiment_id
    with open_run(client, experiment_id, run_name="done") as done:
        assert client.get_run(done).info.status == "RUNNING"
    # KeyboardInterrupt: a job stopped by the user while logging is not left RUNNING either
    with pytest.raises(KeyboardInterrupt), open_run(client, experiment_id) as parent:
        tags = {"mlflow.parentRunId": parent}
        with open_run(client, experiment_id, tags=tags) as child:
            raise KeyboardInterrupt
    status = {run_id: client.get_run(run_id).info.status for run_id in (done, parent, child)}
    assert status == {done: "FINISHED", parent: "FAILED", child: "FAILED"}
    assert client.get_run(done).info.run_name == "done"


@pytest.mark.parametrize(
    "uri",
    ["sqlite:////tmp/m.db", "postgresql+psycopg2://u@db/m", "http://mlflow:5000", "HTTPS://m"],
)
def test_database_and_server_tracking_uris_are_accepted(uri):
    check_tracking_uri(uri)


@pytest.mark.parametrize(
    ("uri", "instead"),
    [
        ("file:/data/mlruns", "sqlite:////data/mlruns/mlflow.db"),
        ("file:///data/mlruns/", "sqlite:////data/mlruns/mlflow.db"),
        ("mlruns", "sqlite:///mlruns/mlflow.db"),
    ],
)
def test_a_file_store_uri_is_refused_with_what_to_use_instead(uri, instead):
    with pytest.raises(InvalidParameterError, match=f"got '{uri}'.*use {instead} instead"):
        check_tracking_uri(uri)


def test_another_unsupported_scheme_is_refused():
    with pytest.raises(InvalidParameterError, match=r"tracking_uri must be .*got 'ftp://h/x'\.$"):
        check_tracking_uri("ftp://h/x")


def test_latest_run_is_the_last_finished_alignment_run(store, table):
    uri, _ = store
    experiment = new_experiment(store, "history")
    assert latest_run(experiment, tracking_uri=uri) is None
    assert latest_run("no such experiment", tracking_uri=uri) is None
    log = dict(summary={}, experiment=experiment, tracking_uri=uri, heatmaps=False)
    log_alignment_run(table, params={}, **log)
    second = log_alignment_run(table, params={}, **log)
    with pytest.raises(MlflowException):
        log_alignment_run(table, params={"k" * 300: 1}, **log)  # a run, marked FAILED
    client = MlflowClient(uri)
    other = client.create_run(client.get_experiment_by_name(experiment).experiment_id)
    client.set_terminated(other.info.run_id, "FINISHED")  # not an alignment run
    assert latest_run(experiment, tracking_uri=uri) == second


def test_representation_names_are_sanitized_in_metric_names(store):
    uri, _ = store
    experiment = new_experiment(store, "odd-names")
    table = alignment_table(["bert:base@step1.layer/3", "bert:base@step1.pooler"])
    run_id = log_alignment_run(
        table, params={}, summary={}, experiment=experiment, tracking_uri=uri, heatmaps=False
    )
    metrics = MlflowClient(uri).get_run(run_id).data.metrics
    assert "cka.linear.biased/bert_base_step1.layer_3/bert_base_step1.pooler" in metrics
    assert "mutual_knn.linear/bert_base_step1.pooler/bert_base_step1.pooler" in metrics


def test_metric_key_keeps_allowed_characters_and_drops_empty_parts():
    assert metric_key("cka", "rbf", "song", "mlp-w64-s0.fc2", "cnn c8.logits") == (
        "cka.rbf.song/mlp-w64-s0.fc2/cnn c8.logits"
    )
    assert metric_key("procrustes", "", "", "a", "b") == "procrustes/a/b"
    assert metric_key("cka", "linear", "biased", "é:1", "a/b") == "cka.linear.biased/__1/a_b"


def test_names_that_collide_once_sanitized_are_refused(store):
    uri, _ = store
    table = alignment_table(["m.a:b", "m.a_b"])
    with pytest.raises(RepalignError, match=r"metric name .* must be unique"):
        log_alignment_run(table, params={}, summary={}, experiment="x", tracking_uri=uri)
    with pytest.raises(
        RepalignError, match=r"param key .* must be unique; two entries map to 'a\.b'"
    ):
        log_alignment_run(
            alignment_table(), params={"a.b": 1, "a": {"b": 2}}, summary={}, experiment="x"
        )
    assert latest_run("x", tracking_uri=uri) is None  # refused before any run was opened


def test_a_metric_name_over_the_mlflow_limit_is_refused(store):
    uri, _ = store
    table = alignment_table(["m." + "x" * 130, "m." + "y" * 130])
    with pytest.raises(RepalignError, match="at most 250 characters"):
        log_alignment_run(table, params={}, summary={}, experiment="x", tracking_uri=uri)


# --- the square matrix and the heatmap --------------------------------------------------


def test_square_matrix_is_symmetric_in_model_then_layer_order(table):
    names, matrix = square_matrix(table, measure="cka", kernel="linear", estimator="biased")
    assert names == ORDERED
    i, j = names.index(MISSING_PAIR[0]), names.index(MISSING_PAIR[1])
    assert np.isnan(matrix[i, j]) and np.isnan(matrix[j, i])
    assert np.isnan(matrix).sum() == 2
    np.testing.assert_array_equal(matrix, matrix.T)  # NaN compares equal here
    np.testing.assert_array_equal(np.diag(matrix), 1.0)
    for row in table.filter(pc.field("measure") == "cka").to_pylist():
        if row["status"] == "ok":
            assert matrix[names.index(row["rep_a"]), names.index(row["rep_b"])] == row["value"]


def test_square_matrix_accepts_a_pandas_frame(table):
    names, matrix = square_matrix(table, measure="mutual_knn", kernel="linear", estimator="")
    names_pd, matrix_pd = square_matrix(
        table.to_pandas(), measure="mutual_knn", kernel="linear", estimator=""
    )
    assert names_pd == names
    np.testing.assert_array_equal(matrix_pd, matrix)


def test_natural_order_of_models_and_layers_with_logits_last():
    names = ["b.fc10", "a-s10.x", "b.logits", "b.pool", "b.fc2", "a-s2.x", "b.conv1", "a-s2.X1"]
    expected = ["a-s2.x", "a-s2.X1", "a-s10.x", "b.conv1", "b.fc2", "b.fc10", "b.pool", "b.logits"]
    table = alignment_table(names, configurations=[("ka", "linear", "")])
    ordered, _ = square_matrix(table, measure="ka", kernel="linear", estimator="")
    assert ordered == expected
    figure = alignment_heatmap(table, measure="ka", kernel="linear", estimator="")
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == expected


def test_heatmap_labels_title_and_missing_note(table):
    figure = alignment_heatmap(table, measure="cka", kernel="linear", estimator="biased")
    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == ORDERED
    assert [label.get_text() for label in axes.get_yticklabels()] == ORDERED
    assert axes.get_title() == "cka · kernel=linear · estimator=biased\nn = 1,797"
    assert len(figure.axes) == 2  # the heatmap and its colorbar
    [legend] = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [
        "missing: 1 pair (reasons in the table)"
    ]
    complete = alignment_heatmap(table, measure="mutual_knn", kernel="linear", estimator="")
    assert complete.axes[0].get_title() == "mutual_knn · kernel=linear\nn = 1,797"
    assert complete.legends == []


def test_clustered_heatmap_puts_similar_representations_together():
    names = ["m.l1", "m.l2", "m.l3", "m.l4"]
    table = alignment_table(names, configurations=[("cka", "linear", "biased")])
    # l1 and l3 are alike, l2 and l4 are alike, across groups nothing is: the natural order
    # interleaves the groups, the clustered one must not.
    alike = {frozenset(("m.l1", "m.l3")), frozenset(("m.l2", "m.l4"))}
    values = [
        1.0 if a == b else 0.9 if frozenset((a, b)) in alike else 0.1
        for a, b in zip(table["rep_a"].to_pylist(), table["rep_b"].to_pylist(), strict=True)
    ]
    table = table.set_column(table.schema.get_field_index("value"), "value", pa.array(values))
    figure = alignment_heatmap(
        table, measure="cka", kernel="linear", estimator="biased", cluster=True
    )
    labels = [label.get_text() for label in figure.axes[0].get_xticklabels()]
    assert {frozenset(labels[:2]), frozenset(labels[2:])} == alike


def test_a_configuration_that_is_not_in_the_table_is_refused(table):
    with pytest.raises(RepalignError, match=r"no rows for measure='cka', kernel='rbf'.*has \["):
        square_matrix(table, measure="cka", kernel="rbf", estimator="biased")


def test_a_pair_given_twice_is_refused(table):
    twice = pa.concat_tables([table, table.slice(0, 1)])
    with pytest.raises(RepalignError, match=r"each pair once.*appears 2 times"):
        square_matrix(twice, measure="cka", kernel="linear", estimator="biased")


def test_a_table_without_the_alignment_columns_is_refused(table):
    with pytest.raises(RepalignError, match=r"lacks \['status', 'reason'\]"):
        alignment_heatmap(
            table.drop_columns(["status", "reason"]), measure="cka", kernel="linear", estimator=""
        )
    with pytest.raises(TypeError, match=r"pyarrow\.Table or a pandas\.DataFrame; got str"):
        square_matrix("results.parquet", measure="cka", kernel="linear", estimator="biased")


def test_jobs_starting_together_in_a_new_folder_share_one_default_store(tmp_path):
    """Three processes open MLflow's default store of one new folder at once: the first makes
    its tables under the folder's lock, and each logs a run into it."""
    import subprocess
    import sys

    code = (
        "from mlflow import MlflowClient; from repalign.tracking import default_store; "
        "uri, _ = default_store(); client = MlflowClient(uri); "
        "client.create_run(client.get_experiment_by_name('Default').experiment_id); print(uri)"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    uris = {process.communicate(timeout=300)[0].decode().strip() for process in processes}
    assert [process.returncode for process in processes] == [0, 0, 0]
    assert uris == {f"sqlite:///{tmp_path}/mlflow.db"}
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert len(client.search_runs(["0"])) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no lock file left


def database_contents(path):
    """The schema of a SQLite database and {table: sorted rows} of each of its tables. Each
    statement of the schema is given as its sorted lines: MLflow's migrations list a table's
    constraints in an order that differs from one run to the next."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as database:
        schema = sorted(
            (kind, name, sorted(line.strip(" ,\t") for line in (sql or "").splitlines()))
            for kind, name, sql in database.execute("SELECT type, name, sql FROM sqlite_master")
        )
        tables = [name for kind, name, _ in schema if kind == "table"]
        rows = {t: sorted(map(repr, database.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    return schema, rows


def test_a_default_store_from_the_template_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    """A new folder's store is a copy of the cached empty tables (`store_template`), which
    MLflow then opens and gives its default experiment: schema and rows are those of a store
    MLflow makes itself, but for the experiment's times and the folder in its artifact path."""
    from repalign.tracking import prepare_store, store_template

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for folder in ("by-mlflow", "first", "second"):
        (tmp_path / folder).mkdir()
    prepare_store(f"sqlite:///{tmp_path / 'by-mlflow' / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path / "first")
    default_store()  # makes the template, then copies it
    assert store_template().parent == tmp_path / "cache" / "repalign"
    monkeypatch.chdir(tmp_path / "second")
    default_store()

    expected_schema, expected = database_contents(tmp_path / "by-mlflow" / "mlflow.db")
    for folder in ("first", "second"):
        schema, found = database_contents(tmp_path / folder / "mlflow.db")
        assert schema == expected_schema
        assert {t: r for t, r in found.items() if t != "experiments"} == {
            t: r for t, r in expected.items() if t != "experiments"
        }
        client = MlflowClient(f"sqlite:///{tmp_path / folder / 'mlflow.db'}")
        [experiment] = client.search_experiments()
        assert (experiment.experiment_id, experiment.name) == ("0", "Default")
        assert experiment.artifact_location == str(tmp_path / folder / "mlruns" / "0")
    assert sorted(p.name for p in (tmp_path / "second").iterdir()) == ["mlflow.db"]


def test_a_new_folder_copies_the_tables_and_runs_no_migration(tmp_path, monkeypatch):
    """Once the template is made, a new folder's store is made without MLflow's migrations
    (0.9 s), and a run logs into it."""
    import mlflow.store.db.utils

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "made").mkdir()
    monkeypatch.chdir(tmp_path / "made")
    default_store()

    def migrated(engine):
        raise AssertionError("MLflow made the tables")

    monkeypatch.setattr(mlflow.store.db.utils, "_initialize_tables", migrated)
    (tmp_path / "new").mkdir()
    monkeypatch.chdir(tmp_path / "new")
    client = MlflowClient(default_store()[0])
    client.create_run("0")
    assert len(client.search_runs(["0"])) == 1
    with pytest.raises(AssertionError, match="MLflow made the tables"):
        MlflowClient(f"sqlite:///{tmp_path / 'other.db'}").search_experiments()


@pytest.mark.parametrize("damage", ["junk", "truncated", "an experiment"])
def test_a_damaged_template_is_made_again(tmp_path, monkeypatch, damage):
    """A template that is not a database, is cut short or holds an experiment (one not made by
    `store_template`) is made again, not copied into a new folder."""
    import sqlite3
    from contextlib import closing

    from repalign.tracking import store_template

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template = store_template()
    content = template.read_bytes()
    if damage == "junk":
        template.write_bytes(b"not a database" * 100)
    elif damage == "truncated":
        template.write_bytes(content[: len(content) // 3])
    else:
        with closing(sqlite3.connect(template)) as database, database:
            database.execute(
                "INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace) "
                "VALUES (7, 'stray', 'active', 'default')"
            )
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    client = MlflowClient(default_store()[0])
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert database_contents(store_template()) == database_contents(template)
    with closing(sqlite3.connect(template)) as database:
        assert database.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)


def test_a_cache_folder_that_cannot_be_written_still_gives_a_store(tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    client = MlflowClient(default_store()[0])
    assert [e.name for e in client.search_experiments()] == ["Default"]


def test_the_default_store_opened_ahead_is_not_opened_again_to_log(tmp_path, monkeypatch):
    """`open_default_store_ahead` opens the default store once it exists (checking its schema
    against every migration script), so that logging to it does not; a store not made yet is
    left alone. The schema check is made to fail afterwards: logging must not run it again."""
    import subprocess
    import sys

    import mlflow.store.db.utils

    monkeypatch.chdir(tmp_path)
    open_default_store_ahead()
    assert list(tmp_path.iterdir()) == []  # no store made for a job that may yet fail
    code = "from repalign.tracking import default_store; default_store()"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)  # made elsewhere
    open_default_store_ahead()

    def opened_again(engine):
        raise AssertionError("the store was opened again")

    monkeypatch.setattr(mlflow.store.db.utils, "_verify_schema", opened_again)
    MlflowClient(default_store()[0]).create_experiment("logged")  # where a job logs
    with pytest.raises(AssertionError, match="opened again"):
        MlflowClient(f"sqlite:///{tmp_path / 'other.db'}")


def test_the_default_store_is_not_opened_ahead_while_a_job_makes_it(tmp_path, monkeypatch):
    """The job that makes the store holds the folder's lock until its tables are complete;
    opening the database before that would make them too, racing it. Opening ahead waits."""
    import fcntl
    import os
    import threading

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.db").touch()  # made, its tables not yet
    opened = []
    monkeypatch.setattr("repalign.tracking.MlflowClient", opened.append)
    lock = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as `default_store` holds it
    opening = threading.Thread(target=open_default_store_ahead)
    opening.start()
    opening.join(timeout=1.0)
    assert opening.is_alive() and opened == []
    os.close(lock)
    opening.join(timeout=60)
    assert opened == [f"sqlite:///{tmp_path / 'mlflow.db'}"]


# --- names and tags a person can find runs by -------------------------------------------------


def checked_out_commit():
    """The commit of this repository's checkout, as git itself gives it, or None when the tests
    do not run from a checkout."""
    import subprocess
    from pathlib import Path

    root = Path(repalign.__file__).resolve().parents[1]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return head.stdout.strip() if head.returncode == 0 and (root / ".git").exists() else None


def test_a_run_logged_without_a_name_says_what_ran_where_and_when(store, table):
    uri, _ = store
    experiment = new_experiment(store, "unnamed")
    before = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
    run_id = log_alignment_run(
        table, params=PARAMS, summary=SUMMARY, experiment=experiment, tracking_uri=uri
    )
    after = datetime.datetime.now(datetime.UTC)
    run = MlflowClient(uri).get_run(run_id)
    title, kind, folder, when = run.info.run_name.split(" · ")
    assert (title, kind, folder) == ("unnamed", "alignment", "zoo")  # PARAMS["store"] /data/zoo
    moment = datetime.datetime.strptime(when, "%Y-%m-%d %H:%M UTC").replace(tzinfo=datetime.UTC)
    assert before <= moment <= after


def test_a_run_is_tagged_with_its_configurations_and_the_code_that_logged_it(logged):
    _, run = logged
    tags = run.data.tags
    assert tags[CONFIGURATIONS_TAG] == "cka:linear:biased, mutual_knn:linear"
    assert tags[VERSION_TAG] == repalign.__version__
    commit = checked_out_commit()
    assert tags.get(COMMIT_TAG) == commit
    if commit is not None:
        assert len(commit) == 40


def test_the_tags_a_job_gives_win_over_those_of_the_code_at_upload(store, table):
    """A run uploaded later (`repalign sync`) keeps the version and commit of the job."""
    uri, _ = store
    experiment = new_experiment(store, "job-tags")
    job = {VERSION_TAG: "0.0.1", COMMIT_TAG: "f" * 40, STORE_DIGEST_TAG: "a" * 64}
    run_id = log_alignment_run(
        table, params=PARAMS, summary=SUMMARY, experiment=experiment, tracking_uri=uri, tags=job
    )
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert {name: tags[name] for name in job} == job
    assert tags[KIND_TAG] == "alignment"


def zone(hours):
    return datetime.timezone(datetime.timedelta(hours=hours))


def test_run_names_join_their_parts_in_utc():
    moment = datetime.datetime(2026, 1, 15, 3, 30, tzinfo=zone(hours=1))
    assert run_name("digits", "nightly", "/data/zoo-digits/", moment) == (
        "digits · nightly · zoo-digits · 2026-01-15 02:30 UTC"
    )
    assert run_name("digits", "schedule 3f2a") == "digits · schedule 3f2a"
    naive = datetime.datetime(2026, 1, 15, 2, 30)  # taken as UTC
    assert run_name("d", "alignment", "zoo", naive).endswith("2026-01-15 02:30 UTC")


def test_the_store_digest_depends_on_the_digests_not_their_order():
    first = {
        "a.x": {"ids_sha256": "1", "shards": ["2", "3"]},
        "b.x": {"ids_sha256": "4", "shards": []},
    }
    reordered = dict(reversed(first.items()))
    assert store_digest(first) == store_digest(reordered)
    assert len(store_digest(first)) == 64
    changed = {**first, "b.x": {"ids_sha256": "4", "shards": ["5"]}}
    assert store_digest(changed) != store_digest(first)


def test_a_trend_step_is_the_utc_date_as_yyyymmdd():
    late = datetime.datetime(2026, 1, 31, 23, 30, tzinfo=zone(hours=-2))
    assert trend_step(late) == 20260201  # 01:30 UTC on the next day
    assert trend_step(datetime.datetime(2025, 12, 31, tzinfo=datetime.UTC)) == 20251231


def test_a_schedule_id_that_a_search_filter_cannot_hold_is_refused(store):
    uri, _ = store
    refused = r"schedule must be a schedule's id.*\"x' or '1\""
    with pytest.raises(InvalidParameterError, match=refused):
        schedule_trend("x' or '1", "a", "b", tracking_uri=uri)


def test_a_schedule_with_no_run_logged_is_named(store):
    uri, _ = store
    with pytest.raises(RepalignError, match=r"no run is tagged repalign\.schedule = 'nothing-yet'"):
        schedule_trend("nothing-yet", "a", "b", tracking_uri=uri)
