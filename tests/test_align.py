"""Aligning representations on sample_id (jobs/align.py): an inner join written as a copy."""

import tracemalloc

import numpy as np
import pytest
from dask.callbacks import Callback

import repalign
from jobs.align import align_representations
from repalign.errors import InvalidParameterError, StoreError
from repalign.store import open_store, write_representation
from repalign.store.format import file_sha256

N = 400
DIMS = {"a.x": 8, "b.x": 5, "c.x": 3}
MISSING = {"a.x": [0, 17, 399], "b.x": [3, 4, 5, 250, 251], "c.x": [1, 2, 100, 101, 102, 398, 50]}


def related(seed, n, dims):
    """Float32 representations of n samples, each a noisy linear map of one latent."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6))
    return {
        name: (latent @ rng.standard_normal((6, d)) + 0.3 * rng.standard_normal((n, d))).astype(
            np.float32
        )
        for name, d in dims.items()
    }


def write_partial_shuffled(store, arrays, missing, ids, *, seed, shard_rows=37):
    """Write each array without the rows of its ``missing`` positions, in a random order
    (but the last representation, kept in sample order)."""
    rng = np.random.default_rng(seed)
    names = list(arrays)
    for name in names:
        rows = np.setdiff1d(np.arange(len(ids)), missing[name])
        if name != names[-1]:
            rows = rng.permutation(rows)
        write_representation(store, name, ids[rows], arrays[name][rows], shard_rows=shard_rows)


def read_all(store, names):
    blocks = list(open_store(store).blocks(names, block_rows=64))
    ids = np.concatenate([ids for ids, _ in blocks])
    return ids, [np.concatenate([b[k] for _, b in blocks]) for k in range(len(names))]


@pytest.fixture
def arrays():
    return related(0, N, DIMS)


@pytest.fixture
def shuffled_store(tmp_path, arrays):
    write_partial_shuffled(tmp_path / "src", arrays, MISSING, np.arange(N), seed=1)
    return tmp_path / "src"


def test_shuffled_partial_representations_are_aligned_on_common_ids(
    shuffled_store, tmp_path, arrays
):
    names = list(DIMS)
    assert not open_store(shuffled_store).aligned(names)
    align_representations(shuffled_store, names, tmp_path / "out", shard_rows=50)

    target = open_store(tmp_path / "out")
    assert target.aligned(names)
    common = np.setdiff1d(np.arange(N), np.concatenate(list(MISSING.values())))
    ids, values = read_all(tmp_path / "out", names)
    np.testing.assert_array_equal(ids, common)  # sorted by sample_id
    for name, got in zip(names, values, strict=True):
        np.testing.assert_array_equal(got, arrays[name][common])  # each row with its own id
        representation = target[name]
        assert representation.source == {"aligned_from": str(shuffled_store)}
        assert [s["rows"] for s in representation.shards] == [50] * 7 + [35]


def test_report_counts_the_rows_each_representation_loses(shuffled_store, tmp_path):
    report = align_representations(shuffled_store, list(DIMS), tmp_path / "out")

    # 15 distinct ids are missing somewhere: 385 kept. a.x lacks 3, so it holds 397 and
    # loses the 5 + 7 ids that b.x and c.x lack; likewise for the others.
    assert report.kept == 385
    assert not report.already_aligned
    assert [(c.name, c.rows, c.kept, c.lost) for c in report.counts] == [
        ("a.x", 397, 385, 12),
        ("b.x", 395, 385, 10),
        ("c.x", 393, 385, 8),
    ]
    assert report.to_dict()["representations"][1] == {
        "name": "b.x",
        "rows": 395,
        "kept": 385,
        "lost": 10,
    }
    table = str(report).splitlines()
    assert "385 samples kept" in table[0]
    assert table[1].split() == ["representation", "rows", "kept", "lost"]
    assert table[4].split() == ["c.x", "393", "385", "8"]


def linear_cka(X, Y):
    """Linear CKA from column-centred float64 data: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)."""
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    return np.sum((Y.T @ X) ** 2) / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def procrustes_score(X, Y):
    """Nuclear norm of X̂ᵀŶ, X̂ and Ŷ column-centred with unit Frobenius norm."""
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    X, Y = X / np.linalg.norm(X), Y / np.linalg.norm(Y)
    return np.linalg.svd(X.T @ Y, compute_uv=False).sum()


def test_aligned_copy_gives_the_measures_of_the_common_samples(shuffled_store, tmp_path, arrays):
    align_representations(shuffled_store, ["a.x", "b.x"], tmp_path / "out", shard_rows=64)
    _, (A, B) = read_all(tmp_path / "out", ["a.x", "b.x"])

    common = np.setdiff1d(np.arange(N), MISSING["a.x"] + MISSING["b.x"])
    X, Y = (arrays[name][common].astype(np.float64) for name in ("a.x", "b.x"))
    # Same float32 values, paired the same way: only the summation order differs.
    assert repalign.cka(A, B) == pytest.approx(linear_cka(X, Y), rel=1e-10)
    assert repalign.procrustes(A, B) == pytest.approx(procrustes_score(X, Y), rel=1e-10)
    # Pairing matters: the same rows paired one place off give another value.
    assert linear_cka(X, np.roll(Y, 1, axis=0)) < 0.5 * linear_cka(X, Y)


def test_string_ids_are_joined_and_sorted_as_text(tmp_path, arrays):
    ids = np.array([f"img-{i}" for i in range(N)], dtype=object)
    write_partial_shuffled(tmp_path / "src", arrays, MISSING, ids, seed=2)
    report = align_representations(tmp_path / "src", list(DIMS), tmp_path / "out", shard_rows=50)

    positions = np.setdiff1d(np.arange(N), np.concatenate(list(MISSING.values())))
    order = np.argsort(ids[positions].astype(str))  # "img-10" < "img-2"
    got_ids, values = read_all(tmp_path / "out", list(DIMS))
    assert report.kept == len(positions) == 385
    np.testing.assert_array_equal(got_ids, ids[positions][order])
    for name, got in zip(DIMS, values, strict=True):
        np.testing.assert_array_equal(got, arrays[name][positions][order])


def test_duplicate_ids_are_refused_and_nothing_is_written(tmp_path, arrays):
    ids = np.arange(N)
    write_representation(tmp_path / "src", "a.x", ids[::-1], arrays["a.x"])
    duplicated = ids.copy()
    duplicated[200] = 17
    write_representation(tmp_path / "src", "b.x", duplicated, arrays["b.x"])

    with pytest.raises(StoreError, match=r"'b.x' holds sample_id 17 2 times.*ambiguous"):
        align_representations(tmp_path / "src", ["a.x", "b.x"], tmp_path / "out", shard_rows=50)
    assert list((tmp_path / "out").iterdir()) == []  # no representation, no scratch


class TaskCounter(Callback):
    def __init__(self):
        super().__init__()
        self.tasks = 0

    def _pretask(self, key, dsk, state):
        self.tasks += 1


def test_aligned_representations_are_detected_without_a_shuffle(tmp_path, arrays):
    order = np.random.default_rng(3).permutation(N)  # any order, the same in both
    for name in ("a.x", "b.x"):
        write_representation(tmp_path / "src", name, order, arrays[name][order], shard_rows=90)
    files_before = sorted((tmp_path / "src").rglob("*"))

    with TaskCounter() as counter:
        in_place = align_representations(tmp_path / "src", ["a.x", "b.x"], tmp_path / "src")
        copied = align_representations(tmp_path / "src", ["a.x", "b.x"], tmp_path / "out")
    assert counter.tasks == 0
    assert sorted((tmp_path / "src").rglob("*")) == files_before
    for report in (in_place, copied):
        assert report.already_aligned
        assert [(c.rows, c.kept, c.lost) for c in report.counts] == [(N, N, 0)] * 2
    assert "already aligned" in str(in_place) and "nothing to do" in str(in_place)
    assert "copied as they are" in str(copied)

    target = open_store(tmp_path / "out")
    assert target.aligned(["a.x", "b.x"])
    for name in ("a.x", "b.x"):
        assert target[name].manifest == open_store(tmp_path / "src")[name].manifest
        for shard in target[name].shards:
            assert file_sha256(target[name].path / shard["file"]) == shard["sha256"]


def test_the_shuffle_does_run_dask_tasks(shuffled_store, tmp_path):
    # The counter of the previous test sees the tasks of a real alignment.
    with TaskCounter() as counter:
        align_representations(shuffled_store, ["a.x", "b.x"], tmp_path / "out")
    assert counter.tasks > 0


MEMORY_ROWS, MEMORY_DIM = 70_000, 128  # 34 MiB of float32 per representation
MEMORY_LIMIT = 17 * 2**20  # half of one representation


@pytest.mark.slow
def test_representations_larger_than_the_buckets_stream_in_bounded_memory(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((MEMORY_ROWS, MEMORY_DIM), dtype=np.float32)
    a_rows, b_rows = rng.permutation(MEMORY_ROWS)[:-9], np.arange(3, MEMORY_ROWS)
    for name, rows in (("a.x", a_rows), ("b.x", b_rows)):
        write_representation(tmp_path / "src", name, rows, X[rows], shard_rows=2_500)
    expected_ids = np.intersect1d(a_rows, b_rows)
    del X

    tracemalloc.start()
    try:
        report = align_representations(
            tmp_path / "src", ["a.x", "b.x"], tmp_path / "out", shard_rows=2_500
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # tracemalloc sees numpy arrays and Python objects (the spilled buckets as they are read
    # back), not Arrow's own buffers; 4 MiB of the peak is the writer's sha256 read buffer.
    assert peak < MEMORY_LIMIT, f"peak {peak / 2**20:.1f} MiB"
    assert report.kept == len(expected_ids)
    ids, (A, B) = next(open_store(tmp_path / "out").blocks(["a.x", "b.x"], block_rows=10**6))
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(A, B)  # both were written from the same rows of X


@pytest.mark.parametrize("names", [[], ["a.x", "a.x"]])
def test_names_must_be_distinct_and_not_empty(shuffled_store, tmp_path, names):
    with pytest.raises(StoreError, match="one or more distinct representations"):
        align_representations(shuffled_store, names, tmp_path / "out")


def test_shard_rows_must_be_positive(shuffled_store, tmp_path):
    with pytest.raises(InvalidParameterError, match="shard_rows must be between 1"):
        align_representations(shuffled_store, ["a.x", "b.x"], tmp_path / "out", shard_rows=0)


def test_unaligned_representations_are_not_replaced_in_place(shuffled_store):
    with pytest.raises(StoreError, match="cannot replace them in place"):
        align_representations(shuffled_store, ["a.x", "b.x"], shuffled_store)


def test_a_target_holding_the_names_is_refused(shuffled_store, tmp_path, arrays):
    write_representation(tmp_path / "out", "b.x", np.arange(N), arrays["b.x"])
    with pytest.raises(StoreError, match=r"already holds \['b.x'\]"):
        align_representations(shuffled_store, ["a.x", "b.x"], tmp_path / "out")


def test_int_and_string_ids_are_not_joined(tmp_path, arrays):
    write_representation(tmp_path / "src", "a.x", np.arange(N), arrays["a.x"])
    write_representation(tmp_path / "src", "b.x", np.arange(N).astype(str), arrays["b.x"])
    with pytest.raises(StoreError, match="int64 and string sample_ids cannot be joined"):
        align_representations(tmp_path / "src", ["a.x", "b.x"], tmp_path / "out")


def test_disjoint_representations_are_refused(tmp_path, arrays):
    write_representation(tmp_path / "src", "a.x", np.arange(N), arrays["a.x"])
    write_representation(tmp_path / "src", "b.x", np.arange(N, 2 * N), arrays["b.x"])
    with pytest.raises(StoreError, match="no sample_id is present in all of"):
        align_representations(tmp_path / "src", ["a.x", "b.x"], tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_progress_bars_go_to_stderr_only_when_asked(shuffled_store, tmp_path, capsys):
    align_representations(shuffled_store, ["a.x", "b.x"], tmp_path / "quiet")
    assert capsys.readouterr().err == ""
    align_representations(shuffled_store, ["a.x", "b.x"], tmp_path / "out", progress=True)
    err = capsys.readouterr().err
    assert "spill a.x" in err and "spill b.x" in err and "join" in err
