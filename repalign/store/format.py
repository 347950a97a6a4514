"""The on-disk format of an embedding store (docs/design.md §5).

    <store>/<representation>/part-00000.parquet   sample_id: int64 or string,
                                                  embedding: fixed_size_list<float32 not
                                                  null>[d] (`embedding_type`)
    <store>/<representation>/_pilot_mean.npy      float64 (d,): `pilot_mean` of its first rows
    <store>/<representation>/_manifest.json       name, dim, rows, dtype, id_type, source,
                                                  shards (file, rows, sha256), ids_sha256, ...

A representation exists once its manifest does: writers build it in a hidden folder and
rename it into place, so a crash never leaves one that looks complete.
"""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from repalign.contract import atomic_write
from repalign.errors import StoreError

FORMAT = "repalign-store/1"
MANIFEST = "_manifest.json"
PILOT_FILE = "_pilot_mean.npy"
PILOT_ROWS = 1024
"""Rows of a representation's pilot mean (`pilot_mean`)."""
SHARD_PATTERN = "part-{:05d}.parquet"
DTYPE = "float32"
SHARD_BYTES = 64 * 2**20
"""Default shard size: about 64 MiB of embeddings per Parquet file."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(name):
    """A representation name: letters, digits, '.', '_' and '-', not starting with '.' or '_'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise StoreError(
            f"representation name {name!r} is not valid: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. 'mlp-w64-s0.fc2')."
        )
    return name


ROW_GROUP_BYTES = 8 * 2**20
"""Row groups of about 8 MiB: a reader decodes one row group per representation at a time."""


def default_shard_rows(dim):
    return max(1024, SHARD_BYTES // (4 * dim))


def row_group_rows(dim):
    return max(256, ROW_GROUP_BYTES // (4 * dim))


def schema(dim, id_type):
    ids = pa.int64() if id_type == "int64" else pa.string()
    return pa.schema(
        [
            pa.field("sample_id", ids, nullable=False),
            pa.field("embedding", embedding_type(dim), nullable=False),
        ]
    )


def embedding_type(dim):
    """fixed_size_list<float32>[dim], its elements declared non-null: Parquet then stores one
    definition level per element fewer, and pyarrow decodes a row group 1.5 times as fast
    (16,384 × 512: 21 ms against 32 ms; benchmarks/RESULTS.md, "store.py"). Stores written with
    nullable elements read the same."""
    return pa.list_(pa.field("element", pa.float32(), nullable=False), dim)


def id_type_of(ids):
    """'int64' for integer ids, 'string' for text ids; anything else is refused."""
    kind = np.asarray(ids).dtype.kind
    if kind in "iu":
        return "int64"
    if kind in "UO":
        return "string"
    raise StoreError(f"sample_ids must be integers or strings; got dtype {np.asarray(ids).dtype}.")


def ids_digest_update(digest, ids, id_type):
    """Feed a block of ids to a running sha256 of the id sequence (identical for equal orders)."""
    if id_type == "int64":
        digest.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    else:
        for value in ids:
            digest.update(str(value).encode() + b"\0")


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pilot_mean(first_rows):
    """The float64 column means of a representation's first `PILOT_ROWS` stored rows (all of
    them if fewer): the shift a job subtracts from each row before it sums their products,
    which only conditions those sums (docs/design.md §4). A writer saves it in `PILOT_FILE`,
    so that a job reads d numbers instead of a row group per representation."""
    return np.asarray(first_rows[:PILOT_ROWS], dtype=np.float64).mean(axis=0)


def read_manifest(folder):
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(
            f"{folder} has no {MANIFEST}: it is not a complete representation."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is not valid JSON: {exc}") from exc
    missing = {"name", "dim", "rows", "id_type", "shards"} - set(manifest)
    if missing:
        raise StoreError(f"{path} lacks the keys {sorted(missing)}.")
    return manifest


def write_json_atomically(path, content):
    """Write JSON to ``path`` atomically (`repalign.contract.atomic_write`)."""
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2, sort_keys=True))


def embedding_matrix(column, dim):
    """The (rows, dim) float32 view of a fixed-size-list column, without copying when possible."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, dim)


def ids_array(column, id_type):
    if id_type == "int64":
        return column.to_numpy(zero_copy_only=False)
    return np.asarray(column.to_pylist(), dtype=object)
