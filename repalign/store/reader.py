"""Reading a store: what it holds, and aligned row blocks of any set of representations."""

import fnmatch
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from repalign.blocks import RowQueue
from repalign.errors import MisalignedError, StoreError
from repalign.store.format import (
    MANIFEST,
    PILOT_FILE,
    PILOT_ROWS,
    embedding_matrix,
    ids_array,
    pilot_mean,
    read_manifest,
)

BLOCK_ROWS = 65536
"""Rows per block when streaming; a block of M representations holds 4·Σdₘ·BLOCK_ROWS bytes."""


def open_store(path):
    """Open the store at ``path``: every complete representation, listed from its manifest."""
    return Store(path)


class Representation:
    """One representation of a store, described by its manifest; reads nothing until asked."""

    def __init__(self, folder, manifest):
        self.path = Path(folder)
        self.manifest = manifest
        self.name = manifest["name"]
        self.dim = int(manifest["dim"])
        self.rows = int(manifest["rows"])
        self.id_type = manifest["id_type"]
        self.source = manifest.get("source")
        self.shards = manifest["shards"]

    def __repr__(self):
        return f"Representation({self.name!r}, rows={self.rows}, dim={self.dim})"

    def unusable(self):
        """Why no measure can use this representation, from its manifest ("x holds NaN or Inf
        in 3 rows"); empty when none says so."""
        bad = int(self.manifest.get("non_finite_rows", 0))
        rows = "a row" if bad == 1 else f"{bad:,} rows"
        return f"{self.name} holds NaN or Inf in {rows}" if bad else ""

    def pilot_mean(self):
        """`repalign.store.format.pilot_mean` of the first rows: as the writer saved it beside
        the manifest, or, in a store written before writers saved it, from the rows."""
        path = self.path / PILOT_FILE
        if not path.exists():
            return pilot_mean(self.read_values(0, min(PILOT_ROWS, self.rows)))
        try:
            mean = np.load(path)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path} is not a .npy file: {exc}") from exc
        if mean.shape != (self.dim,) or mean.dtype != np.float64:
            raise StoreError(
                f"{path} holds {mean.dtype} values of shape {mean.shape}; expected float64 of "
                f"shape ({self.dim},), the pilot mean of {self.name!r}."
            )
        return mean

    def shard_paths(self):
        return [self.path / shard["file"] for shard in self.shards]

    def batches(self, block_rows=BLOCK_ROWS):
        """Yield (ids, float32 array of shape (rows, dim)) blocks of exactly ``block_rows`` rows,
        but the last, in stored order."""
        queue = RowQueue()
        for path in self.shard_paths():
            for batch in _open_parquet(path, self.name).iter_batches(batch_size=block_rows):
                queue.put(
                    ids_array(batch.column("sample_id"), self.id_type),
                    embedding_matrix(batch.column("embedding"), self.dim),
                )
                while queue.rows >= block_rows:
                    yield queue.take(block_rows)
        if queue.rows:
            yield queue.take(queue.rows)

    def read_rows(self, start, stop):
        """Rows ``start:stop`` in stored order: (ids, float32 array of shape (rows, dim)).

        Reads only the row groups that overlap the range.
        """
        tables = self._row_range(start, stop, ["sample_id", "embedding"])
        ids = [ids_array(table.column("sample_id"), self.id_type) for table in tables]
        values = [embedding_matrix(table.column("embedding"), self.dim) for table in tables]
        if len(values) == 1:
            return ids[0], values[0]
        return np.concatenate(ids), np.concatenate(values)

    def read_values(self, start, stop):
        """Rows ``start:stop`` of the embedding alone, a float32 array of shape (rows, dim):
        what a job's passes read (the ids column is not decoded)."""
        tables = self._row_range(start, stop, ["embedding"])
        values = [embedding_matrix(table.column("embedding"), self.dim) for table in tables]
        return values[0] if len(values) == 1 else np.concatenate(values)

    def _row_range(self, start, stop, columns):
        """The ``columns`` of rows ``start:stop``: one table per row group they overlap."""
        tables = []
        offset = 0
        for path, shard in zip(self.shard_paths(), self.shards, strict=True):
            rows = int(shard["rows"])
            if offset < stop and start < offset + rows:
                parquet = _open_parquet(path, self.name)
                group_start = offset
                for group in range(parquet.metadata.num_row_groups):
                    group_rows = parquet.metadata.row_group(group).num_rows
                    low, high = max(start, group_start), min(stop, group_start + group_rows)
                    if low < high:
                        table = parquet.read_row_group(group, columns=columns)
                        tables.append(table.slice(low - group_start, high - low))
                    group_start += group_rows
            offset += rows
        if not tables:
            raise StoreError(
                f"rows {start}:{stop} are outside {self.name!r}, which has {self.rows} rows."
            )
        return tables

    def read(self):
        """All rows at once: (ids, float32 array of shape (rows, dim))."""
        tables = [_open_parquet(path, self.name).read() for path in self.shard_paths()]
        if not tables:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        ids = np.concatenate([ids_array(t.column("sample_id"), self.id_type) for t in tables])
        values = np.concatenate([embedding_matrix(t.column("embedding"), self.dim) for t in tables])
        return ids, values


def _open_parquet(path, name):
    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise StoreError(f"shard {path} of {name!r} cannot be read: {exc}") from exc


class Store:
    """An embedding store folder. ``store.representations`` maps names to `Representation`."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"store {self.path} does not exist or is not a folder.")
        self.representations = {}
        for folder in sorted(self.path.iterdir()):
            if folder.is_dir() and folder.name[0] not in "._" and (folder / MANIFEST).exists():
                manifest = read_manifest(folder)
                self.representations[manifest["name"]] = Representation(folder, manifest)

    def __repr__(self):
        return f"Store({str(self.path)!r}, {len(self.representations)} representations)"

    def __getitem__(self, name):
        try:
            return self.representations[name]
        except KeyError:
            raise StoreError(
                f"store {self.path} has no representation {name!r}; "
                f"it has {len(self.representations)}: {', '.join(list(self.representations)[:8])}"
                + (" ..." if len(self.representations) > 8 else "")
            ) from None

    def select(self, patterns=None):
        """Names matching any of the glob ``patterns`` (all when None), in sorted order."""
        if patterns is None:
            return list(self.representations)
        names = [
            n for n in self.representations if any(fnmatch.fnmatchcase(n, p) for p in patterns)
        ]
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise StoreError(f"no representation in {self.path} matches {unmatched}.")
        return names

    def read(self, name):
        """(ids, float32 embeddings) of one representation, all rows."""
        return self[name].read()

    def aligned(self, names):
        """True when the manifests say the representations list the same ids in the same order."""
        return not self.misaligned(names)

    def misaligned(self, names):
        """How each of ``names`` whose manifest lists other sample ids than the first's differs
        from it, in words ("b.x has 1,500 rows where a.x has 2,000"); empty when aligned."""
        first = self[names[0]].manifest
        found = []
        for name in names[1:]:
            manifest = self[name].manifest
            if manifest["rows"] != first["rows"]:
                found.append(f"{name} has {manifest['rows']:,} rows where {names[0]} has "
                             f"{first['rows']:,}")  # fmt: skip
            elif manifest.get("ids_sha256") != first.get("ids_sha256"):
                found.append(f"{name} lists other sample ids, or another order, than {names[0]}")
        return found

    def check_aligned(self, names):
        """Raise `MisalignedError` saying how ``names`` differ (`misaligned`), unless aligned."""
        if misaligned := self.misaligned(names):
            raise MisalignedError(
                f"the representations of store {str(self.path)!r} are not aligned on sample_id "
                f"({'; '.join(misaligned)}). Align them first with `repalign align` (a join on "
                "sample_id), which writes an aligned copy and reports the rows each one loses."
            )

    def blocks(self, names, block_rows=None):
        """Yield (ids, [float32 arrays]) row blocks of ``names``, read together.

        ``block_rows`` defaults to the shard size when all the representations share one (then
        no row is copied), else `BLOCK_ROWS`.

        Every block's ids are checked to agree across the representations; a store that is not
        aligned raises `MisalignedError` (see ``repalign align``). Memory: one block of each
        representation, plus a shard's row group being decoded.
        """
        self.check_aligned(names)
        representations = [self[name] for name in names]
        if block_rows is None:
            block_rows = _common_shard_rows(representations) or BLOCK_ROWS
        streams = [r.batches(block_rows) for r in representations]
        start = 0
        # map(list, ...) lets zip reuse its result tuple instead of pinning the first blocks
        for parts in map(list, zip(*streams, strict=True)):
            ids = parts[0][0]
            for representation, (other_ids, _) in zip(representations[1:], parts[1:], strict=True):
                if not np.array_equal(ids, other_ids):
                    row = start + int(np.flatnonzero(ids != other_ids)[0])
                    raise MisalignedError(
                        f"{representation.name!r} and {representations[0].name!r} differ in "
                        f"sample_id at row {row}, although their manifests agree: the store "
                        "is damaged; run `repalign validate`."
                    )
            start += len(ids)
            yield ids, [values for _, values in parts]


def _common_shard_rows(representations):
    sizes = {int(s["rows"]) for r in representations for s in r.shards[:-1]}
    sizes |= {int(r.shards[0]["rows"]) for r in representations if len(r.shards) == 1}
    return sizes.pop() if len(sizes) == 1 else None
