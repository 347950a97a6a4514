"""`repalign ingest` and `repalign ls`: arrays from other tools into a store."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from repalign.errors import RowMismatchError, StoreError
from repalign.store import open_store
from repalign.store.ingest import ingest

rng = np.random.default_rng(0)
A = rng.standard_normal((40, 6)).astype(np.float32)
B = rng.standard_normal((40, 3)).astype(np.float32)


def stored(store, name):
    return open_store(store).read(name)


def test_npy_with_row_order_ids(tmp_path):
    np.save(tmp_path / "layer.npy", A)
    assert ingest(tmp_path / "store", tmp_path / "layer.npy", name="m.fc1") == ["m.fc1"]
    ids, values = stored(tmp_path / "store", "m.fc1")
    np.testing.assert_array_equal(ids, np.arange(40))
    np.testing.assert_array_equal(values, A)


def test_npz_gives_one_representation_per_key(tmp_path):
    np.savez(tmp_path / "model.npz", fc1=A, fc2=B)
    assert ingest(tmp_path / "s", tmp_path / "model.npz") == ["model.fc1", "model.fc2"]
    np.testing.assert_array_equal(stored(tmp_path / "s", "model.fc2")[1], B)


def test_torch_tensor_and_dict(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(torch.from_numpy(A), tmp_path / "one.pt")
    torch.save({"fc1": torch.from_numpy(A), "fc2": torch.from_numpy(B)}, tmp_path / "many.pt")
    assert ingest(tmp_path / "s", tmp_path / "one.pt") == ["one"]
    assert ingest(tmp_path / "s", tmp_path / "many.pt") == ["many.fc1", "many.fc2"]
    np.testing.assert_array_equal(stored(tmp_path / "s", "many.fc1")[1], A)


def test_parquet_with_embedding_column_and_ids(tmp_path):
    ids = np.arange(100, 140)
    table = pa.table(
        {"sample_id": ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(A.ravel()), 6)}
    )
    pq.write_table(table, tmp_path / "emb.parquet")
    ingest(tmp_path / "s", tmp_path / "emb.parquet")
    read_ids, values = stored(tmp_path / "s", "emb")
    np.testing.assert_array_equal(read_ids, ids)
    np.testing.assert_array_equal(values, A)


def test_parquet_with_numeric_columns(tmp_path):
    pq.write_table(pa.table({f"f{i}": B[:, i] for i in range(3)}), tmp_path / "cols.parquet")
    ingest(tmp_path / "s", tmp_path / "cols.parquet")
    np.testing.assert_array_equal(stored(tmp_path / "s", "cols")[1], B)


@pytest.mark.parametrize("kind", ["txt", "npy", "parquet"])
def test_ids_from_a_file(tmp_path, kind):
    ids = np.array([f"doc-{i}" for i in range(40)]) if kind == "txt" else np.arange(40) * 3
    path = tmp_path / f"ids.{kind}"
    if kind == "txt":
        path.write_text("\n".join(ids) + "\n")
    elif kind == "npy":
        np.save(path, ids)
    else:
        pq.write_table(pa.table({"sample_id": ids}), path)
    np.save(tmp_path / "x.npy", A)
    ingest(tmp_path / "s", tmp_path / "x.npy", ids=path)
    assert list(stored(tmp_path / "s", "x")[0]) == list(ids)


def test_folder_of_files(tmp_path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "m0.fc1.npy", A)
    np.save(folder / "m1.fc1.npy", A * 2)
    (folder / "notes.txt").write_text("ignored")
    assert ingest(tmp_path / "s", folder) == ["m0.fc1", "m1.fc1"]
    assert open_store(tmp_path / "s").aligned(["m0.fc1", "m1.fc1"])


def test_bad_inputs(tmp_path):
    np.savez(tmp_path / "two.npz", a=A, b=B)
    with pytest.raises(StoreError, match=r"--name needs an input with one array; .* holds 2"):
        ingest(tmp_path / "s", tmp_path / "two.npz", name="x")
    with pytest.raises(StoreError, match="does not exist"):
        ingest(tmp_path / "s", tmp_path / "nothing.npy")
    np.save(tmp_path / "x.npy", A)
    np.save(tmp_path / "ids.npy", np.arange(39))
    with pytest.raises(RowMismatchError, match="has 39 ids but 'x' has 40 rows"):
        ingest(tmp_path / "s", tmp_path / "x.npy", ids=tmp_path / "ids.npy")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(StoreError, match=r"must be 2-D .* shape \(2, 2, 2\)"):
        ingest(tmp_path / "s", tmp_path / "cube.npy")
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_cli_ingest_then_ls(tmp_path):
    np.save(tmp_path / "x.npy", A)

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "repalign", *args], capture_output=True, text=True
        )

    done = cli("ingest", str(tmp_path / "s"), str(tmp_path / "x.npy"), "--name", "m.fc1")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing to warn of
    listing = cli("ls", str(tmp_path / "s"))
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[1].split() == ["m.fc1", "40", "6", "1"]
    again = cli("ingest", str(tmp_path / "s"), str(tmp_path / "x.npy"), "--name", "m.fc1")
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


def test_cli_ingest_warns_of_what_a_job_cannot_use(tmp_path):
    """Rows that are not finite, and other rows than the store's others, are said at once, not
    first by a job; the representations are written all the same."""
    holed = A.copy()
    holed[[3, 17]] = np.nan
    for name, array in [("x", A), ("holed", holed), ("aaa", A[:30])]:
        np.save(tmp_path / f"{name}.npy", array)

    def ingest_file(name):
        command = ["ingest", str(tmp_path / "s"), str(tmp_path / f"{name}.npy")]
        return subprocess.run(
            [sys.executable, "-m", "repalign", *command], capture_output=True, text=True
        )

    first = ingest_file("x")
    assert first.returncode == 0 and first.stderr == "", first.stderr
    for name, warning in [
        ("holed", "holed holds NaN or Inf in 2 rows: jobs leave it out"),
        ("aaa", "aaa has 30 rows where holed has 40"),
    ]:
        done = ingest_file(name)
        assert done.returncode == 0
        assert done.stderr.startswith(f"warning: {warning}"), done.stderr
        assert len(done.stderr.splitlines()) == 1
    # "aaa" sorts first but is the odd one: "x" again, under a new name, is not blamed
    again = subprocess.run(
        [sys.executable, "-m", "repalign", "ingest", str(tmp_path / "s"), str(tmp_path / "x.npy"),
         "--name", "w"], capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert sorted(open_store(tmp_path / "s").representations) == ["aaa", "holed", "w", "x"]
