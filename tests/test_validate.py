"""`repalign validate` finds each kind of damage, with its own message naming the file."""

import json
import subprocess
import sys

import numpy as np
import pytest

from repalign.store import write_representation
from repalign.store.validate import validate_store


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("m0.fc1", "m1.fc1"):
        write_representation(
            tmp_path, name, np.arange(300), rng.standard_normal((300, 8)), shard_rows=100
        )
    return tmp_path


def messages(store):
    return [
        (p.severity, p.path.relative_to(store).as_posix(), p.message) for p in validate_store(store)
    ]


def only_error(store):
    found = messages(store)
    errors = [m for m in found if m[0] == "error"]
    assert errors, found
    return errors


def test_a_valid_store_has_no_problems(store):
    assert messages(store) == []


def test_flipped_byte(store):
    shard = store / "m0.fc1" / "part-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert (
        "error",
        "m0.fc1/part-00001.parquet",
        "sha256 differs from the manifest: the file was changed",
    ) in messages(store)


def test_truncated_shard(store):
    shard = store / "m1.fc1" / "part-00002.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    errors = only_error(store)
    assert any(
        path == "m1.fc1/part-00002.parquet" and "truncated or unreadable" in m
        for _, path, m in errors
    )


def test_missing_shard(store):
    (store / "m0.fc1" / "part-00000.parquet").unlink()
    assert only_error(store) == [
        ("error", "m0.fc1/part-00000.parquet", "missing shard listed in the manifest")
    ]


def test_nan_rows(store):
    values = np.ones((50, 8))
    values[[3, 17], 2] = np.nan
    values[20, 0] = np.inf
    write_representation(store, "bad.fc1", np.arange(50), values)
    errors = only_error(store)
    assert errors == [
        ("error", "bad.fc1/part-00000.parquet", "3 rows hold NaN or Inf (the first: sample_id 3)")
    ]


def test_duplicate_ids(store):
    ids = np.arange(300)
    ids[[10, 250]] = 5
    write_representation(store, "dup.fc1", ids, np.ones((300, 2)), shard_rows=100)
    errors = only_error(store)
    assert (
        "error",
        "dup.fc1",
        "1 sample_ids appear more than once (e.g. 5, 3 times): every sample may appear once",
    ) in errors


def test_dimension_disagrees_with_the_manifest(store):
    path = store / "m1.fc1" / "_manifest.json"
    manifest = json.loads(path.read_text())
    manifest["dim"] = 16
    path.write_text(json.dumps(manifest))
    errors = only_error(store)
    assert len(errors) == 3  # one per shard
    assert all(
        "the manifest says dim=16" in m and path.startswith("m1.fc1/part-") for _, path, m in errors
    )


def test_row_count_disagrees_with_the_manifest(store):
    path = store / "m0.fc1" / "_manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"][0]["rows"] = 99
    path.write_text(json.dumps(manifest))
    errors = only_error(store)
    assert ("error", "m0.fc1/part-00000.parquet", "has 100 rows, the manifest says 99") in errors


def test_empty_representation(store):
    folder = store / "empty.fc1"
    folder.mkdir()
    manifest = {"name": "empty.fc1", "dim": 8, "rows": 0, "id_type": "int64", "shards": []}
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    assert only_error(store) == [("error", "empty.fc1", "empty representation: it has no rows")]


def test_folder_without_manifest_and_unlisted_shard(store):
    (store / "stray").mkdir()
    (store / "m0.fc1" / "part-00009.parquet").write_bytes(b"x")
    errors = only_error(store)
    assert ("error", "m0.fc1/part-00009.parquet", "shard file not listed in the manifest") in errors
    assert any(path == "stray" and "no _manifest.json" in m for _, path, m in errors)


def test_missing_ids_are_a_warning(store):
    write_representation(store, "m2.fc1", np.arange(5, 300), np.ones((295, 3)))
    found = messages(store)
    assert found == [
        (
            "warning",
            "m2.fc1",
            "lacks 5 sample_ids present in other representations (e.g. 0); "
            "`repalign align` joins them",
        )
    ]


def test_cli_exit_codes_and_report(store):
    def validate():
        return subprocess.run(
            [sys.executable, "-m", "repalign", "validate", str(store)],
            capture_output=True,
            text=True,
        )

    clean = validate()
    assert clean.returncode == 0
    assert "2 representations checked: 0 errors, 0 warnings" in clean.stdout
    (store / "m0.fc1" / "part-00000.parquet").unlink()
    damaged = validate()
    assert damaged.returncode == 1
    assert f"ERROR   {store / 'm0.fc1' / 'part-00000.parquet'}: missing shard" in damaged.stdout


def test_a_changed_pilot_mean_is_an_error(store):
    path = store / "m0.fc1" / "_pilot_mean.npy"
    mean = np.load(path)
    mean[3] += 1e-12  # any change: a job would shift its sums by it
    np.save(path, mean)
    assert only_error(store) == [
        (
            "error",
            "m0.fc1/_pilot_mean.npy",
            "differs from the mean of the first rows: the file was changed",
        )
    ]


def test_a_pilot_mean_of_the_wrong_shape_is_an_error(store):
    np.save(store / "m1.fc1" / "_pilot_mean.npy", np.zeros(7))
    [(_, path, message)] = only_error(store)
    assert path == "m1.fc1/_pilot_mean.npy"
    assert "holds float64 values of shape (7,); expected float64 of shape (8,)" in message


def test_a_representation_written_before_pilot_means_were_saved_is_valid(store):
    (store / "m0.fc1" / "_pilot_mean.npy").unlink()
    assert messages(store) == []
