"""Bringing arrays from other tools into a store: .npy, .npz, .pt, .parquet, or folders of them.

Each array becomes one representation. Large .npy files are memory-mapped and Parquet files
read batch by batch, so an input larger than memory streams through.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from repalign.errors import RowMismatchError, StoreError
from repalign.store.format import check_name
from repalign.store.writer import RepresentationWriter

SUFFIXES = (".npy", ".npz", ".pt", ".parquet")
BATCH_ROWS = 65536


def ingest(store, source, *, name=None, ids=None, shard_rows=None, overwrite=False):
    """Write the arrays in ``source`` (a file or a folder of files) into ``store``.

    Parameters
    ----------
    store : path-like
    source : path-like
        A .npy, .npz, .pt or .parquet file, or a folder whose such files are each ingested.
        A file holding several arrays (.npz, a .pt dict) gives ``<stem>.<key>`` names.
    name : str, optional
        Name of the representation when ``source`` holds exactly one array; default the
        file's stem.
    ids : path-like, optional
        Sample ids, one per row, shared by every array: a .npy file, a .parquet file with a
        ``sample_id`` column, or a text file with one id per line. Default: a Parquet input's
        own ``sample_id`` column, else the row order 0, 1, 2, ...

    Returns
    -------
    list of str
        The names written.
    """
    source = Path(source)
    if not source.exists():
        raise StoreError(f"input {source} does not exist.")
    files = [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix in SUFFIXES)
    if not files:
        raise StoreError(f"{source} holds no {', '.join(SUFFIXES)} files.")
    arrays = [item for path in files for item in _arrays_in(path)]
    if name is not None:
        if len(arrays) != 1:
            raise StoreError(f"--name needs an input with one array; {source} holds {len(arrays)}.")
        arrays = [(name, arrays[0][1], arrays[0][2])]
    shared_ids = _read_ids(ids) if ids is not None else None
    written = []
    for array_name, batches, rows in arrays:
        with RepresentationWriter(
            store,
            check_name(array_name),
            source={"ingested_from": str(source)},
            shard_rows=shard_rows,
            overwrite=overwrite,
        ) as writer:
            if shared_ids is not None and len(shared_ids) != rows:
                raise RowMismatchError(
                    f"{ids} has {len(shared_ids)} ids but {array_name!r} has {rows} rows."
                )
            start = 0
            for batch_ids, batch in batches():
                count = len(batch)
                if shared_ids is not None:
                    batch_ids = shared_ids[start : start + count]
                elif batch_ids is None:
                    batch_ids = np.arange(start, start + count, dtype=np.int64)
                writer.write(batch_ids, batch)
                start += count
        written.append(array_name)
    return written


def _arrays_in(path):
    """(name, batches, rows) for each array in ``path``; batches() yields (ids or None, rows)."""
    if path.suffix == ".npy":
        return [_in_memory(path.stem, np.load(path, mmap_mode="r"))]
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return [_in_memory(f"{path.stem}.{key}", archive[key]) for key in archive.files]
    if path.suffix == ".pt":
        return _torch_arrays(path)
    if path.suffix == ".parquet":
        return [_parquet_array(path)]
    raise StoreError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)}.")


def _in_memory(name, array):
    array = np.asarray(array) if not isinstance(array, np.memmap) else array
    if array.ndim != 2:
        raise StoreError(f"{name}: arrays must be 2-D (rows, features); got shape {array.shape}.")

    def batches():
        for start in range(0, len(array), BATCH_ROWS):
            yield None, np.asarray(array[start : start + BATCH_ROWS])

    return name, batches, len(array)


def _torch_arrays(path):
    import torch

    content = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(content, torch.Tensor):
        return [_in_memory(path.stem, content.numpy())]
    if isinstance(content, dict) and all(isinstance(v, torch.Tensor) for v in content.values()):
        return [_in_memory(f"{path.stem}.{key}", value.numpy()) for key, value in content.items()]
    raise StoreError(f"{path}: a .pt input must hold a tensor or a dict of tensors.")


def _parquet_array(path):
    """A Parquet input: an 'embedding' list column, or else every numeric column."""
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    if "embedding" in schema.names:
        kind = schema.field("embedding").type
        if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind)):
            raise StoreError(f"{path}: the 'embedding' column must be a list of numbers.")
        columns = ["embedding"]
    else:
        columns = [
            f.name
            for f in schema
            if f.name != "sample_id"
            and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
        ]
        if not columns:
            raise StoreError(f"{path}: no 'embedding' column and no numeric columns to read.")
    has_ids = "sample_id" in schema.names

    def batches():
        wanted = columns + (["sample_id"] if has_ids else [])
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            if columns == ["embedding"]:
                values = np.stack(batch.column("embedding").to_numpy(zero_copy_only=False))
            else:
                values = np.column_stack([batch.column(c).to_numpy() for c in columns])
            ids = batch.column("sample_id").to_numpy(zero_copy_only=False) if has_ids else None
            yield ids, values

    return path.stem, batches, parquet.metadata.num_rows


def _read_ids(path):
    """Ids from a .npy file, a Parquet 'sample_id' column, or a text file of one id per line."""
    path = Path(path)
    if path.suffix == ".npy":
        ids = np.load(path)
    elif path.suffix == ".parquet":
        ids = pq.read_table(path, columns=["sample_id"]).column("sample_id")
        ids = ids.to_numpy(zero_copy_only=False)
    else:
        lines = path.read_text().splitlines()
        integers = all(line.strip().lstrip("-").isdigit() for line in lines)
        ids = np.array([int(v) for v in lines] if integers else lines)
    if ids.ndim != 1:
        raise StoreError(f"ids file {path} must hold one id per row; got shape {ids.shape}.")
    return ids
