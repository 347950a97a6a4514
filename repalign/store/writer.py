"""Writing representations into a store, in one call or streamed batch by batch.

A writer builds the representation in a hidden folder ``<store>/.<name>.partial-<id>``: shards
are written to temporary names and renamed, the manifest goes last, and the folder is renamed
into place on success. A crash at any point leaves at most a hidden partial folder, which no
reader lists and `repalign validate` reports.
"""

import hashlib
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from repalign.blocks import RowQueue
from repalign.contract import atomic_write
from repalign.errors import RowMismatchError, ShapeError, StoreError
from repalign.store.format import (
    DTYPE,
    FORMAT,
    MANIFEST,
    PILOT_FILE,
    PILOT_ROWS,
    SHARD_PATTERN,
    check_name,
    default_shard_rows,
    embedding_type,
    id_type_of,
    ids_digest_update,
    pilot_mean,
    row_group_rows,
    schema,
    write_json_atomically,
)
from repalign.validation import check_representation


def write_representation(
    store, name, sample_ids, embeddings, *, source=None, shard_rows=None, overwrite=False
):
    """Write one representation from in-memory arrays; returns its manifest.

    Parameters
    ----------
    store : path-like
        The store folder (created if missing).
    name : str
        Representation name, ``<model>.<layer>`` by convention.
    sample_ids : array-like of shape (n_samples,)
        int64 or string ids, one per row.
    embeddings : array-like of shape (n_samples, dim)
        Stored as float32.
    source : dict, optional
        JSON-able provenance (model, layer, dataset, checkpoint, ...).
    shard_rows : int, optional
        Rows per Parquet shard; default about 64 MiB of embeddings.
    overwrite : bool, default=False
        Replace an existing representation of that name.
    """
    with RepresentationWriter(
        store, name, source=source, shard_rows=shard_rows, overwrite=overwrite
    ) as writer:
        writer.write(sample_ids, embeddings)
    return writer.manifest


class RepresentationWriter:
    """Streams batches of (sample_ids, embeddings) into a new representation.

    Use as a context manager: leaving the block normally publishes the representation; an
    exception discards it.

    Examples
    --------
    >>> with RepresentationWriter("zoo", "synth-m00.layer") as writer:  # doctest: +SKIP
    ...     for ids, batch in batches:
    ...         writer.write(ids, batch)
    """

    def __init__(self, store, name, *, source=None, shard_rows=None, overwrite=False):
        self.store = Path(store)
        self.name = check_name(name)
        self.target = self.store / name
        if self.target.exists() and not overwrite:
            raise StoreError(
                f"representation {name!r} already exists in {self.store}; "
                "pass overwrite=True (--overwrite) to replace it."
            )
        self.source = source
        self.shard_rows = shard_rows
        self.overwrite = overwrite
        self.manifest = None
        self._dim = self._id_type = None
        self._pending = RowQueue()
        self._shards, self._rows, self._non_finite = [], 0, 0
        self._first_rows = []  # until they hold PILOT_ROWS rows, copies of the first rows
        self._ids_digest = hashlib.sha256()
        self.store.mkdir(parents=True, exist_ok=True)
        self.partial = self.store / f".{name}.partial-{uuid.uuid4().hex[:12]}"
        self.partial.mkdir()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None:
            self.close()
        else:
            self.abort()

    def write(self, sample_ids, embeddings):
        """Append a batch of rows; shards are written as they fill."""
        embeddings = check_representation(
            embeddings, name="embeddings", min_rows=0, constant_ok=True, finite=False
        )
        sample_ids = np.asarray(sample_ids)
        if sample_ids.ndim != 1 or len(sample_ids) != len(embeddings):
            raise RowMismatchError(
                "sample_ids must be 1-D with one id per row of embeddings; "
                f"got sample_ids.shape={sample_ids.shape}, embeddings.shape={embeddings.shape}."
            )
        if self._dim is None:
            self._dim, self._id_type = embeddings.shape[1], id_type_of(sample_ids)
            self.shard_rows = self.shard_rows or default_shard_rows(self._dim)
        elif embeddings.shape[1] != self._dim:
            raise ShapeError(
                f"every batch of {self.name!r} must have {self._dim} columns; "
                f"got embeddings.shape={embeddings.shape}."
            )
        elif id_type_of(sample_ids) != self._id_type:
            raise StoreError(f"every batch of {self.name!r} must use {self._id_type} ids.")
        rows = embeddings.astype(np.float32, copy=False)
        wanted = PILOT_ROWS - sum(len(first) for first in self._first_rows)
        if wanted > 0 and len(rows):
            self._first_rows.append(rows[:wanted].copy())
        self._non_finite += int(np.count_nonzero(~np.isfinite(rows).all(axis=1)))
        ids_digest_update(self._ids_digest, sample_ids, self._id_type)
        self._pending.put(sample_ids, rows)
        while self._pending.rows >= self.shard_rows:
            self._flush(self.shard_rows)

    def close(self):
        """Write the last shard, the pilot mean and the manifest, then publish the
        representation."""
        if self._dim is None or self._rows + self._pending.rows == 0:
            self.abort()
            raise StoreError(f"representation {self.name!r} received no rows; nothing written.")
        if self._pending.rows:
            self._flush(self._pending.rows)
        with atomic_write(self.partial / PILOT_FILE) as temporary:
            np.save(temporary, pilot_mean(np.concatenate(self._first_rows)))
        self.manifest = {
            "format": FORMAT,
            "name": self.name,
            "dim": self._dim,
            "rows": self._rows,
            "dtype": DTYPE,
            "id_type": self._id_type,
            "ids_sha256": self._ids_digest.hexdigest(),
            "non_finite_rows": self._non_finite,
            "source": self.source,
            "shards": self._shards,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json_atomically(self.partial / MANIFEST, self.manifest)
        self._publish()

    def abort(self):
        """Discard everything written so far."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def _flush(self, rows):
        """Write the next ``rows`` queued rows as one shard: encoded in memory, hashed, then
        written to a temporary name, flushed to disk and renamed."""
        ids, values = self._pending.take(rows)
        table = pa.Table.from_arrays(
            [
                pa.array(ids, type=pa.int64() if self._id_type == "int64" else pa.string()),
                pa.FixedSizeListArray.from_arrays(
                    pa.array(values.ravel()), type=embedding_type(self._dim)
                ),
            ],
            schema=schema(self._dim, self._id_type),
        )
        encoded = pa.BufferOutputStream()
        pq.write_table(
            table, encoded, row_group_size=row_group_rows(self._dim), write_statistics=False
        )
        content = encoded.getvalue()
        file = SHARD_PATTERN.format(len(self._shards))
        with atomic_write(self.partial / file) as temporary:
            temporary.write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        self._shards.append({"file": file, "rows": rows, "sha256": digest})
        self._rows += rows

    def _publish(self):
        if self.target.exists():
            retired = self.store / f".{self.name}.retired-{uuid.uuid4().hex[:12]}"
            os.replace(self.target, retired)
            os.replace(self.partial, self.target)
            shutil.rmtree(retired)
        else:
            os.replace(self.partial, self.target)
