"""The model-level matrix (`repalign.models`): its values against the long table, its matched
depth, and its p-value for the maximum against the permutations themselves."""

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import repalign
from repalign.models import model_table

CKA = dict(measure="cka", kernel="linear", estimator="biased")


def zoo(rng, n, related):
    """Three models of 3, 3 and 5 layers; m0 and m1 read one latent when ``related``."""
    latent = rng.standard_normal((n, 2))
    arrays = {}
    for model, depth in (("m0", 3), ("m1", 3), ("m2", 5)):
        own = rng.standard_normal((n, 2))
        source = latent if related and model != "m2" else own
        for layer in range(depth):
            weights = rng.standard_normal((2, 4 + layer))
            noise = (1.0 + layer) * rng.standard_normal((n, 4 + layer))
            arrays[f"{model}.l{layer}"] = source @ weights + noise
    return arrays


def test_the_matrix_is_the_maximum_over_layer_pairs_of_the_long_table():
    arrays = zoo(np.random.default_rng(0), 400, related=True)
    table = repalign.pairwise(arrays, ["cka"])
    models = model_table(table, **CKA).to_pylist()
    assert [(r["model_a"], r["model_b"]) for r in models] == [
        ("m0", "m1"),
        ("m0", "m2"),
        ("m1", "m2"),
    ]
    rows = table.to_pylist()
    for model in models:
        candidates = [
            r
            for r in rows
            if {r["rep_a"].split(".")[0], r["rep_b"].split(".")[0]}
            == {model["model_a"], model["model_b"]}
        ]
        best = max(candidates, key=lambda r: r["value"])
        assert model["value"] == best["value"]
        assert {
            f"{model['model_a']}.{model['layer_a']}",
            f"{model['model_b']}.{model['layer_b']}",
        } == {
            best["rep_a"],
            best["rep_b"],
        }
        assert model["layer_pairs"] == len(candidates)


def test_matched_depth_pairs_layers_at_the_same_relative_depth():
    arrays = zoo(np.random.default_rng(1), 300, related=False)
    table = repalign.pairwise(arrays, ["cka"])
    value = {
        frozenset((r["rep_a"], r["rep_b"])): r["value"]
        for r in table.to_pylist()
        if r["rep_a"] != r["rep_b"]
    }
    models = {(r["model_a"], r["model_b"]): r for r in model_table(table, **CKA).to_pylist()}
    same = [value[frozenset((f"m0.l{i}", f"m1.l{i}"))] for i in range(3)]
    assert models["m0", "m1"]["matched_mean"] == pytest.approx(np.mean(same), rel=1e-15)
    # three layers against five: depths 0, ½, 1 are l0–l0, l1–l2, l2–l4
    deeper = [value[frozenset((f"m0.l{i}", f"m2.l{j}"))] for i, j in ((0, 0), (1, 2), (2, 4))]
    assert models["m0", "m2"]["matched_mean"] == pytest.approx(np.mean(deeper), rel=1e-15)


def test_the_p_value_of_the_maximum_bounds_that_of_the_permutations():
    """Unrelated models at n = 120: permuting the rows of one model (all its layers together)
    200 times, the share of maxima at least the observed one is at most the reported p-value,
    up to Monte Carlo error; related models have a tiny p-value."""
    rng = np.random.default_rng(2)
    arrays = zoo(rng, 120, related=False)
    pair = {k: v for k, v in arrays.items() if k.startswith(("m0.", "m1."))}
    (observed,) = model_table(repalign.pairwise(pair, ["cka"]), **CKA).to_pylist()
    maxima = []
    for _ in range(200):
        order = rng.permutation(120)
        shuffled = {k: (v[order] if k.startswith("m1.") else v) for k, v in pair.items()}
        table = repalign.pairwise(shuffled, ["cka"], null="none")
        maxima.append(model_table(table, **CKA).to_pylist()[0]["value"])
    share = np.mean(np.array(maxima) >= observed["value"])
    assert share <= observed["p_value"] + 3 * np.sqrt(0.25 / 200)
    assert observed["p_value"] > 0.01  # unrelated: no evidence
    related = zoo(np.random.default_rng(3), 400, related=True)
    models = model_table(repalign.pairwise(related, ["cka"]), **CKA).to_pylist()
    assert models[0]["p_value"] < 1e-6  # m0 ~ m1 share their latent
    assert models[1]["p_value"] > 1e-3  # m0 ~ m2 do not


def test_a_configuration_without_nulls_has_no_p_value():
    arrays = zoo(np.random.default_rng(4), 200, related=True)
    table = repalign.pairwise(arrays, ["procrustes"])
    models = model_table(table, measure="procrustes", kernel="linear", estimator="")
    assert models.num_rows == 3 and models["p_value"].null_count == 3


@pytest.mark.slow  # an MLflow store and the command line
def test_the_run_logs_the_model_table_and_query_prints_it(tmp_path):
    from mlflow import MlflowClient

    from repalign.tracking import MODELS_ARTIFACT, log_alignment_run
    from tests.commands import job_environment, run_repalign

    table = repalign.pairwise(zoo(np.random.default_rng(5), 300, related=True), ["cka", "ka"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_alignment_run(
        table,
        params={},
        summary={},
        experiment="models",
        tracking_uri=uri,
        artifact_location=str(tmp_path / "artifacts"),
    )
    client = MlflowClient(uri)
    logged = pq.read_table(client.download_artifacts(run_id, MODELS_ARTIFACT, str(tmp_path)))
    expected = model_table(table, **CKA)
    cka = logged.filter(pc.field("measure") == "cka").drop_columns(
        ["measure", "kernel", "estimator"]
    )
    assert cka.equals(expected) and logged.num_rows == 2 * expected.num_rows
    heatmaps = {f.path for f in client.list_artifacts(run_id, "heatmaps")}
    assert {"heatmaps/cka-linear-biased-models.png", "heatmaps/ka-linear-models.png"} <= heatmaps
    result = run_repalign(
        "query", "--experiment", "models", "--level", "model", "--tracking-uri", uri,
        env=job_environment(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"run {run_id}: cka linear biased, by model"
    assert lines[1].split()[:2] == ["model", "a"]
    for line, row in zip(lines[2:], expected.to_pylist(), strict=True):
        cells = line.split()
        assert cells[:3] == [row["model_a"], row["model_b"], f"{row['value']:.3f}"]
        assert cells[3] == f"{row['layer_a']}~{row['layer_b']}"
