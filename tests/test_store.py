"""The embedding store: round trips, shards, atomic writes, aligned streaming."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from repalign.errors import MisalignedError, RowMismatchError, ShapeError, StoreError
from repalign.store import RepresentationWriter, open_store, write_representation


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, bool])
def test_round_trip_of_every_value_dtype(tmp_path, dtype):
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((37, 5)) * 10).astype(dtype)
    write_representation(tmp_path, "m.layer", np.arange(37), values, shard_rows=10)
    ids, stored = open_store(tmp_path).read("m.layer")
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, values.astype(np.float32))
    np.testing.assert_array_equal(ids, np.arange(37))


@pytest.mark.parametrize(
    "ids",
    [
        np.arange(100, 120, dtype=np.int64),
        np.arange(20, dtype=np.int32)[::-1],
        np.array([f"img-{i:03d}" for i in range(20)]),
        np.array([f"ü{i}" for i in range(20)], dtype=object),
    ],
    ids=["int64", "int32", "str", "unicode-object"],
)
def test_round_trip_of_every_id_type(tmp_path, ids):
    values = np.ones((20, 3), dtype=np.float32) * np.arange(20)[:, None]
    manifest = write_representation(tmp_path, "m.layer", ids, values, shard_rows=6)
    read_ids, read_values = open_store(tmp_path).read("m.layer")
    assert list(read_ids) == list(ids)
    np.testing.assert_array_equal(read_values, values)
    assert manifest["id_type"] == ("int64" if ids.dtype.kind in "iu" else "string")


def test_stores_of_either_element_nullability_read_and_validate_the_same(tmp_path, monkeypatch):
    """The writer declares the embedding's elements non-null (Parquet then stores fewer
    levels, faster to decode); stores written before, with nullable elements, read the same."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from repalign.store import format as store_format
    from repalign.store import writer
    from repalign.store.validate import validate_store

    values = np.random.default_rng(2).standard_normal((300, 6)).astype(np.float32)
    write_representation(tmp_path / "new", "m.x", np.arange(300), values, shard_rows=128)
    with monkeypatch.context() as patched:
        for module in (store_format, writer):  # as the writer was before
            patched.setattr(module, "embedding_type", lambda dim: pa.list_(pa.float32(), dim))
        write_representation(tmp_path / "old", "m.x", np.arange(300), values, shard_rows=128)
    for store, nullable in [("new", False), ("old", True)]:
        shard = tmp_path / store / "m.x" / "part-00000.parquet"
        stored = pq.ParquetFile(shard).schema_arrow.field("embedding").type
        assert (stored.list_size, stored.value_field.nullable) == (6, nullable)
        representation = open_store(tmp_path / store)["m.x"]
        np.testing.assert_array_equal(representation.read_values(100, 290), values[100:290])
        assert validate_store(tmp_path / store) == []


def test_manifest_describes_the_shards(tmp_path):
    values = np.random.default_rng(1).standard_normal((50, 4))
    source = {"model": "mlp-w64-s0", "layer": "fc2", "seed": 0}
    write_representation(
        tmp_path, "mlp-w64-s0.fc2", np.arange(50), values, source=source, shard_rows=7
    )
    manifest = json.loads((tmp_path / "mlp-w64-s0.fc2" / "_manifest.json").read_text())
    assert manifest["name"] == "mlp-w64-s0.fc2"
    assert (manifest["dim"], manifest["rows"], manifest["dtype"]) == (4, 50, "float32")
    assert manifest["source"] == source
    assert [s["rows"] for s in manifest["shards"]] == [7] * 7 + [1]
    assert [s["file"] for s in manifest["shards"]][:2] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    info = open_store(tmp_path)["mlp-w64-s0.fc2"]
    assert (info.rows, info.dim, info.source) == (50, 4, source)


def test_streaming_writer_equals_one_call(tmp_path):
    values = np.random.default_rng(2).standard_normal((1000, 8)).astype(np.float32)
    with RepresentationWriter(tmp_path / "a", "x.y", shard_rows=128) as writer:
        for start in range(0, 1000, 77):  # batches that do not line up with shards
            writer.write(np.arange(start, min(start + 77, 1000)), values[start : start + 77])
    write_representation(tmp_path / "b", "x.y", np.arange(1000), values, shard_rows=128)
    shards = [open_store(tmp_path / s)["x.y"].manifest["shards"] for s in "ab"]
    assert [s["sha256"] for s in shards[0]] == [s["sha256"] for s in shards[1]]


def test_blocks_are_aligned_and_exact(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {
        f"m{i}.l": rng.standard_normal((1000, d)).astype(np.float32)
        for i, d in enumerate((3, 9, 5))
    }
    for (name, values), shard_rows in zip(arrays.items(), (100, 333, 1000), strict=True):
        write_representation(tmp_path, name, np.arange(1000), values, shard_rows=shard_rows)
    store = open_store(tmp_path)
    assert store.aligned(list(arrays))
    seen = 0
    for ids, blocks in store.blocks(list(arrays), block_rows=128):
        assert len(ids) == (128 if seen + 128 <= 1000 else 1000 - seen)
        for values, block in zip(arrays.values(), blocks, strict=True):
            np.testing.assert_array_equal(block, values[ids])
        seen += len(ids)
    assert seen == 1000


def test_row_ranges_across_shards_and_row_groups(tmp_path):
    """`read_rows` (ids and values) and `read_values` (values alone, what jobs read) give the
    stored rows of any range, whichever shards and row groups it spans."""
    values = np.random.default_rng(4).standard_normal((1000, 6)).astype(np.float32)
    ids = np.arange(1000) * 7
    write_representation(tmp_path, "m.l", ids, values, shard_rows=333)
    representation = open_store(tmp_path)["m.l"]
    for start, stop in [(0, 1000), (0, 1), (332, 334), (500, 999), (666, 667), (10, 900)]:
        got_ids, got = representation.read_rows(start, stop)
        np.testing.assert_array_equal(got_ids, ids[start:stop])
        np.testing.assert_array_equal(got, values[start:stop])
        np.testing.assert_array_equal(representation.read_values(start, stop), values[start:stop])
    with pytest.raises(StoreError, match=r"rows 1000:1001 are outside 'm\.l'"):
        representation.read_values(1000, 1001)


def test_misaligned_representations_are_refused_with_advice(tmp_path):
    values = np.zeros((10, 2)) + np.arange(10)[:, None]
    write_representation(tmp_path, "a.x", np.arange(10), values)
    write_representation(tmp_path, "b.x", np.arange(10)[::-1], values)
    store = open_store(tmp_path)
    assert not store.aligned(["a.x", "b.x"])
    with pytest.raises(MisalignedError, match="repalign align"):
        next(store.blocks(["a.x", "b.x"]))


def test_select_names_and_globs(tmp_path):
    for name in ("mlp-s0.fc1", "mlp-s0.fc2", "cnn-s0.conv1"):
        write_representation(tmp_path, name, np.arange(4), np.eye(4))
    store = open_store(tmp_path)
    assert store.select(["mlp-*"]) == ["mlp-s0.fc1", "mlp-s0.fc2"]
    assert store.select(None) == ["cnn-s0.conv1", "mlp-s0.fc1", "mlp-s0.fc2"]
    with pytest.raises(StoreError, match=r"no representation .* matches \['rnn-\*'\]"):
        store.select(["rnn-*"])
    with pytest.raises(StoreError, match=r"has no representation 'x\.y'"):
        store["x.y"]


def test_bad_writes_are_refused(tmp_path):
    write_representation(tmp_path, "a.x", np.arange(3), np.eye(3))
    with pytest.raises(StoreError, match=r"already exists .* overwrite=True"):
        write_representation(tmp_path, "a.x", np.arange(3), np.eye(3))
    with pytest.raises(StoreError, match=r"name '\.\./evil' is not valid"):
        write_representation(tmp_path, "../evil", np.arange(3), np.eye(3))
    with pytest.raises(RowMismatchError, match="one id per row"):
        write_representation(tmp_path, "b.x", np.arange(4), np.eye(3))
    with pytest.raises(StoreError, match="received no rows"):
        write_representation(tmp_path, "c.x", np.arange(0), np.zeros((0, 3)))
    with pytest.raises(ShapeError, match="must have 3 columns"):
        with RepresentationWriter(tmp_path, "d.x") as writer:
            writer.write(np.arange(3), np.eye(3))
            writer.write(np.arange(3, 5), np.ones((2, 4)))
    assert sorted(open_store(tmp_path).representations) == ["a.x"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.x"]  # failed writes left nothing


def test_overwrite_replaces_the_whole_representation(tmp_path):
    write_representation(tmp_path, "a.x", np.arange(30), np.ones((30, 2)), shard_rows=5)
    write_representation(tmp_path, "a.x", np.arange(4), np.zeros((4, 2)), overwrite=True)
    ids, values = open_store(tmp_path).read("a.x")
    assert len(ids) == 4 and not values.any()
    assert sorted(p.name for p in (tmp_path / "a.x").iterdir()) == [
        "_manifest.json",
        "_pilot_mean.npy",
        "part-00000.parquet",
    ]


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from repalign.store import RepresentationWriter
    store, overwrite = sys.argv[1], sys.argv[2] == "1"
    with RepresentationWriter(store, "victim.layer", shard_rows=100, overwrite=overwrite) as w:
        for batch in range(50):
            w.write(np.arange(batch * 100, batch * 100 + 100), np.full((100, 4), 7.0))
            if batch == 20:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs: a real crash
    """
)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_writer_killed_mid_write_leaves_the_store_valid(tmp_path, overwrite):
    from repalign.store.validate import validate_store

    if overwrite:
        write_representation(tmp_path, "victim.layer", np.arange(10), np.ones((10, 4)))
    result = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(int(overwrite))]
    )
    assert result.returncode == -signal.SIGKILL
    store = open_store(tmp_path)
    if overwrite:  # the old version is intact
        ids, values = store.read("victim.layer")
        assert len(ids) == 10 and (values == 1).all()
    else:  # the partial representation is absent
        assert "victim.layer" not in store.representations
    problems = validate_store(tmp_path)
    assert [p.severity for p in problems] == ["warning"]
    assert "interrupted write" in problems[0].message


STREAMING_READER = textwrap.dedent(
    """
    import sys, tracemalloc
    import pyarrow as pa
    from repalign.store import open_store

    store = open_store(sys.argv[1])
    tracemalloc.start()  # numpy's allocations
    total = 0.0
    for ids, (a, b) in store.blocks(["big.a", "big.b"], block_rows=16384):
        total += float(a.sum()) + float(b.sum())
    # Arrow's own buffers are not seen by tracemalloc: its pool keeps its peak (fresh process)
    print(tracemalloc.get_traced_memory()[1] + pa.default_memory_pool().max_memory(), total)
    """
)


def _streaming_peak(store, n, d, rng):
    for name in ("big.a", "big.b"):
        with RepresentationWriter(store, name, shard_rows=50_000) as writer:
            for start in range(0, n, 100_000):
                rows = min(100_000, n - start)
                writer.write(
                    np.arange(start, start + rows), rng.random((rows, d), dtype=np.float32)
                )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run(
        [sys.executable, "-c", STREAMING_READER, str(store)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    peak, total = float(out[0]), float(out[1])
    assert total == pytest.approx(n * d, rel=0.01)  # uniform [0, 1): mean 0.5, two arrays
    return peak


@pytest.mark.slow
def test_a_store_larger_than_the_reader_block_streams_in_bounded_memory(tmp_path):
    """Peak memory does not grow with the number of rows, and stays a fraction of the data.

    Peak = numpy's allocations (tracemalloc) + Arrow's (its pool's peak, in a fresh process);
    resident memory is not used, as it counts code pages and allocator caches, not data.
    """
    rng = np.random.default_rng(4)
    d = 64
    small = _streaming_peak(tmp_path / "small", 200_000, d, rng)
    large = _streaming_peak(tmp_path / "large", 1_000_000, d, rng)
    assert large < 1.2 * small, (small, large)
    assert large < (2 * 1_000_000 * d * 4) / 4, f"peak {large / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    ("rows", "batch"), [(1, 1), (700, 7), (1024, 1000), (3000, 1), (3000, 600), (5000, 5000)]
)
def test_the_saved_pilot_mean_is_that_of_the_first_stored_rows(tmp_path, rows, batch):
    """A writer saves the float64 mean of the first 1,024 rows as stored (float32), whatever
    the batches and shards; a job reads it instead of a row group, and computes the same mean
    from the rows in a store written before writers saved it: the same bits either way."""
    X = np.random.default_rng(rows).standard_normal((rows, 5)) * 1e3 + 7.0
    with RepresentationWriter(tmp_path, "m.l", shard_rows=300) as writer:
        for start in range(0, rows, batch):
            writer.write(np.arange(start, min(start + batch, rows)), X[start : start + batch])
    representation = open_store(tmp_path)["m.l"]
    expected = X[:1024].astype(np.float32).astype(np.float64).mean(axis=0)
    saved = representation.pilot_mean()
    assert saved.dtype == np.float64 and np.array_equal(saved, expected)
    (tmp_path / "m.l" / "_pilot_mean.npy").unlink()
    assert np.array_equal(open_store(tmp_path)["m.l"].pilot_mean(), expected)
