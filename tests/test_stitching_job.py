"""The stitching job (`jobs.stitching`) on a real digits zoo, a real Ray and a real MLflow store."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

import repalign
from jobs.stitching import _split, default_pairs, run_stitching, write_result
from repalign.errors import StoreError
from repalign.spec import SpecError, parse_spec
from repalign.stitching import rounded_theorem1_bound
from repalign.store import open_store
from repalign.tracking import log_stitching_run
from repalign.zoo import build_zoo
from repalign.zoo.models import MODELS_FOLDER, TARGETS_FILE, load_targets
from tests.test_nightly import store_digest_of

pytestmark = pytest.mark.slow  # trains a zoo and runs jobs on Ray

SETTINGS = {"validation_fraction": 0.2, "seed": 0}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo") / "store"
    build_zoo(path, "digits-small", progress=False)
    return path


@pytest.fixture(scope="module")
def full_job(zoo, ray_session, tmp_path_factory):
    """Every default pair of the digits-small zoo, 2 workers."""
    out = tmp_path_factory.mktemp("stitch") / "out"
    spec = parse_spec({"kind": "stitching", "store": str(zoo), "out": str(out), "workers": 2})
    return run_stitching(spec, quiet=True), out


def spec_for(zoo, out, pairs, workers, executor=None):
    return parse_spec(
        {
            "kind": "stitching",
            "store": str(zoo),
            "out": str(out),
            "workers": workers,
            "pairs": [{"source": s, "target": t} for s, t in pairs],
            "executor": executor,
        }
    )


def test_default_pairs_match_relative_depth_and_include_controls(zoo):
    pairs = {(p.source, p.target) for p in default_pairs(zoo)}
    assert ("mlp-w64-s1.fc3", "mlp-w64-s0.fc3") in pairs
    assert ("mlp-w64-init.fc2", "mlp-w64-s0.fc2") in pairs  # an untrained control
    assert ("mlp-w64-s0.fc1", "cnn-c8-s0.conv1") in pairs  # depth 1/3 → 1/2
    assert ("cnn-c8-s0.conv1", "mlp-w64-s1.fc2") in pairs  # 1/2: a tie, the deeper one
    assert ("cnn-c8-s0.conv2", "mlp-w64-s1.fc3") in pairs
    assert not any(t.split(".")[0].endswith("-init") for _, t in pairs)  # targets are trained
    assert not any(s.endswith(".logits") or t.endswith(".logits") for s, t in pairs)
    # 6 sources × their hidden layers (3 or 2), into each of the 4 trained models
    assert len(pairs) == 4 * (3 * 3 + 3 * 2)


def test_every_trained_pair_keeps_the_plugin_risk_under_the_bound(full_job, zoo):
    result, _ = full_job
    store = open_store(zoo)
    rows = result.table.to_pylist()
    assert len(rows) == 60 and all(r["status"] == "ok" for r in rows)
    eps = np.finfo(np.float64).eps
    widening = []
    for r in rows:
        # Ã₂ is good to δ (repalign.stitching.residual_rounding) absolutely, and a
        # risk that averages m = rows × 10 classes squared errors to m·ε relatively
        train_terms, test_terms = 10 * r["n_train"], 10 * r["n_test"]
        widened = rounded_theorem1_bound(
            r["target_risk_train"],
            r["residual"],
            r["kappa"],
            rounding=r["residual_rounding"],
            terms=train_terms,
        )
        assert r["plugin_risk_train"] <= widened and r["plugin_within_bound"], r
        widening.append(widened / r["bound_train"] - 1.0)
        # the test residual is a direct mean of n_test × d₂ squares
        test_rounding = r["n_test"] * store[r["target"]].dim * eps * r["residual_test"]
        assert r["plugin_risk_test"] <= rounded_theorem1_bound(
            r["target_risk_test"],
            r["residual_test"],
            r["kappa"],
            rounding=test_rounding,
            terms=test_terms,
        ), r
        # started at S*, L-BFGS only lowers the training risk
        assert r["stitched_risk_train"] <= r["plugin_risk_train"] * (1 + 2 * train_terms * eps), r
    assert result.summary["plugin_within_bound"] == 60
    # the allowance is a worst-case one, yet still small beside the bound: the check has teeth
    # (measured: a median of 1e-7; at most 2%, where Ŝ is large or R₂ small: √δ/√R₂ counts)
    assert np.median(widening) <= 1e-5 and max(widening) <= 0.05, sorted(widening)


def test_self_stitching_is_the_target_itself(full_job):
    result, _ = full_job
    selves = [r for r in result.table.to_pylist() if r["source"] == r["target"]]
    assert len(selves) == 3 + 3 + 2 + 2  # the hidden layers of the four trained models
    for r in selves:
        assert r["residual"] == pytest.approx(0.0, abs=1e-9)
        assert r["plugin_risk_train"] == pytest.approx(r["target_risk_train"], rel=1e-6)
        assert r["stitched_risk_test"] == pytest.approx(r["target_risk_test"], rel=1e-3)
        # (√R₂ + κ√Ã₂)²: a rounding-sized Ã₂ moves the bound by 2κ√(Ã₂R₂), far more than Ã₂
        assert r["bound_train"] == pytest.approx(r["target_risk_train"], rel=1e-3)
        assert r["cka"] == pytest.approx(1.0, abs=1e-9)


def test_untrained_controls_stitch_worse_than_trained_seeds(full_job):
    """Into a trained model's layer, from the same layer of the same architecture: its
    untrained initialisation against another trained seed."""
    rows = {(r["source"], r["target"]): r for r in full_job[0].table.to_pylist()}
    compared = 0
    for (source, target), trained in rows.items():
        family, layer = source.rsplit("-", 1)[0], source.split(".")[1]
        if source == target or not target.startswith(family) or not target.endswith(layer):
            continue
        if trained["control"]:
            continue
        control = rows[(f"{family}-init.{layer}", target)]
        compared += 1
        assert control["penalty"] > trained["penalty"], (source, target)
        assert control["stitched_accuracy_test"] <= trained["stitched_accuracy_test"] + 0.002
        # A first convolution is close to a linear map of the pixels, trained or not: there
        # both residuals are small and alike. Past it, the control's is much larger.
        if layer != "conv1":
            assert control["residual"] > 2 * trained["residual"], (source, target)
    assert compared == 10


def test_the_job_equals_the_maths_on_the_stored_arrays(full_job, zoo):
    """Ã₂, κ-free parts and the split recomputed here with numpy's least squares."""
    result, _ = full_job
    row = next(
        r
        for r in result.table.to_pylist()
        if (r["source"], r["target"]) == ("cnn-c8-s1.conv2", "mlp-w64-s0.fc3")
    )
    store = open_store(zoo)
    targets = load_targets(zoo)
    fit, validation, test = _split(targets, SETTINGS)
    assert (row["n_train"], row["n_validation"], row["n_test"]) == (
        len(fit),
        len(validation),
        len(test),
    )
    assert len(set(fit) | set(validation) | set(test)) == 1797
    Z1 = store["cnn-c8-s1.conv2"].read_rows(0, 1797)[1].astype(np.float64)
    Z2 = store["mlp-w64-s0.fc3"].read_rows(0, 1797)[1].astype(np.float64)
    coefficients = np.linalg.lstsq(Z1[fit], Z2[fit], rcond=None)[0]
    residual = np.mean(np.sum((Z1[fit] @ coefficients - Z2[fit]) ** 2, axis=1))
    assert row["residual"] == pytest.approx(residual, rel=1e-7)
    test_residual = np.mean(np.sum((Z1[test] @ coefficients - Z2[test]) ** 2, axis=1))
    assert row["residual_test"] == pytest.approx(test_residual, rel=1e-6)
    bound = (np.sqrt(row["target_risk_train"]) + row["kappa"] * np.sqrt(residual)) ** 2
    assert row["bound_train"] == pytest.approx(bound, rel=1e-7)
    assert row["penalty"] == pytest.approx(row["stitched_risk_test"] - row["target_risk_test"])


def test_two_ray_workers_give_the_rows_of_one_in_process(full_job, zoo, tmp_path):
    """The full job ran on 2 Ray workers; some of its pairs again, in process, one worker."""
    result, _ = full_job
    assert (result.summary["workers"], result.summary["executor"]) == (2, "ray")
    pairs = [(p.source, p.target) for p in default_pairs(zoo)][::7]
    one = run_stitching(spec_for(zoo, tmp_path / "one", pairs, 1, "local"), quiet=True)
    assert (one.summary["workers"], one.summary["executor"]) == (1, "local")
    rows = result.table.select(["source", "target"]).to_pylist()
    position = {(row["source"], row["target"]): i for i, row in enumerate(rows)}
    assert one.table.equals(result.table.take([position[pair] for pair in pairs]))


def test_mlflow_holds_a_parent_run_a_nested_run_per_pair_and_the_plots(full_job, tmp_path):
    result, out = full_job
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = log_stitching_run(
        result.table,
        params=result.params,
        summary=result.summary,
        experiment="stitching-test",
        tracking_uri=uri,
        artifact_location=str(tmp_path / "mlruns"),
    )
    client = MlflowClient(uri)
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["stitcher.optimizer"] == "lbfgs"
    assert parent.data.metrics["plugin_within_bound"] == 60
    artifacts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert artifacts == {"plots/bound.png", "plots/penalty.png"}
    table = pq.read_table(client.download_artifacts(run_id, "results/stitching.parquet", tmp_path))
    assert table.equals(result.table)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert len(children) == 60
    child = next(c for c in children if c.data.params["source"] == "mlp-w64-init.fc3")
    row = next(
        r
        for r in result.table.to_pylist()
        if r["source"] == "mlp-w64-init.fc3" and r["target"] == child.data.params["target"]
    )
    assert child.data.metrics["bound_train"] == pytest.approx(row["bound_train"])
    assert child.data.params["control"] == "True"
    write_result(result, out)
    summary = json.loads((out / "stitching-summary.json").read_text())
    assert summary["pairs"] == 60 and summary["params"]["kind"] == "stitching"


def test_bad_pairs_and_stores_are_named(zoo, ray_session, tmp_path):
    with pytest.raises(StoreError, match=r"no representation 'mlp-w64-s9\.fc1'"):
        run_stitching(spec_for(zoo, tmp_path, [("mlp-w64-s9.fc1", "mlp-w64-s0.fc1")], 1))
    with pytest.raises(SpecError, match=r"pairs\.0\.source"):
        spec_for(zoo, tmp_path, [("nolayer", "mlp-w64-s0.fc1")], 1)
    with pytest.raises(SpecError, match="this is a alignment spec"):
        parse_spec({"store": str(zoo), "out": "x", "measures": [{"name": "cka"}]}, kind="stitching")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / MODELS_FOLDER).mkdir()
    for item in (zoo / MODELS_FOLDER).iterdir():
        if item.name != TARGETS_FILE:
            (bare / MODELS_FOLDER / item.name).symlink_to(item)
    for item in zoo.iterdir():
        if item.name != MODELS_FOLDER:
            (bare / item.name).symlink_to(item)
    with pytest.raises(StoreError, match="holds no targets"):
        run_stitching(spec_for(bare, tmp_path, [("mlp-w64-s1.fc1", "mlp-w64-s0.fc1")], 1))
    synth = tmp_path / "synth"
    build_zoo(synth, "synth", models=2, dim=4, rows=50, seed=0)
    # a zoo, but one without networks: the message says which preset saves them
    with pytest.raises(StoreError, match=r"holds no saved networks .* --preset digits"):
        default_pairs(synth)
    # a description that is not a network (the minilm preset keeps its sentences there)
    (synth / MODELS_FOLDER).mkdir(exist_ok=True)
    (synth / MODELS_FOLDER / "minilm.json").write_text(json.dumps({"sentences": ["a", "b"]}))
    with pytest.raises(StoreError, match=r"holds no saved networks"):
        default_pairs(synth)
    with pytest.raises(StoreError, match=r"'minilm' .* is not a network"):
        repalign.zoo.load_model(synth, "minilm")


def test_the_command_line_runs_a_stitching_job(zoo, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [
            sys.executable, "-m", "repalign", "stitch", "--store", str(zoo), "--out", "out",
            "--pair", "mlp-w64-s1.fc3", "mlp-w64-s0.fc3",
            "--pair", "cnn-c8-init.conv2", "mlp-w64-s0.fc3",
            "--workers", "1", "--quiet",
        ],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "(2 pairs, 0 failed); executor local" in result.stdout
    rows = pq.read_table(tmp_path / "out" / "stitching.parquet").to_pylist()
    assert [r["control"] for r in rows] == [False, True]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # MLflow's default, in the cwd
    experiment = client.get_experiment_by_name("repalign")
    assert len(client.search_runs([experiment.experiment_id])) == 3  # parent + 2 pairs
    (parent,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`repalign.kind` = 'stitching'"
    )
    title, kind, folder, when = parent.info.run_name.split(" · ")
    assert (title, kind, folder) == ("repalign", "stitching", "store")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", when)
    assert parent.data.tags["repalign.store_digest"] == store_digest_of(zoo)
    assert parent.data.tags["repalign.version"] == repalign.__version__
