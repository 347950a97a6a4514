"""Aligning representations on sample_id: an out-of-core inner join with Dask (docs/design.md §5).

Representations written by different tools list their samples in different orders, or cover
different samples, and `Store.blocks` refuses to read them together. `align_representations`
writes an aligned copy: the samples present in every representation, ordered by sample_id.
The rows each representation loses are counted in the report, never dropped silently.

The join is a range-partitioned shuffle that never holds a whole representation in memory:

1. Buckets. Dask computes approximate quantiles of all the sample_ids (it reads the id columns
   only) that cut the id range into buckets of about ``shard_rows`` rows, every
   representation counted.
2. Spill. Dask reads each representation partition by partition (a Parquet shard, or a row
   group of one) and appends each partition's rows to the on-disk file of their bucket
   (an unbuffered partd, in a hidden scratch folder of the target store).
3. Join. Bucket by bucket, in id order: read each representation's rows of the bucket, sort
   them by id, refuse duplicate ids, and append the rows of the ids present in every
   representation to one `RepresentationWriter` per representation.

Memory: two input partitions while spilling (two Dask threads), then one bucket of every
representation (about ``shard_rows`` rows in all) plus the writers' pending shards. Disk: one
more copy of the data, in the scratch folder, removed at the end.

Dask's ``set_index(..., shuffle_method="disk")`` does steps 1 and 2 too, but keeps up to 1 GB
of the shuffled data in memory (a ``partd.Buffer``) before it writes any to disk: a bound that
no caller sets, hence the spill of step 2 to an unbuffered partd.
"""

import os
import shutil
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial, reduce
from math import ceil
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import partd
import pyarrow as pa
from tqdm import tqdm

from repalign.errors import StoreError
from repalign.store import RepresentationWriter, open_store
from repalign.store.format import default_shard_rows, embedding_matrix
from repalign.validation import check_int_in_range

DASK_CONFIG = {"scheduler": "threads", "num_workers": 2}
_ID_DTYPES = {"int64": np.int64, "string": object}


@dataclass(frozen=True)
class RowCount:
    """Rows of one representation before the join, and the rows it kept."""

    name: str
    rows: int
    kept: int

    @property
    def lost(self):
        """Rows whose sample_id is missing from another representation."""
        return self.rows - self.kept


@dataclass(frozen=True)
class AlignmentReport:
    """What `align_representations` did.

    Attributes
    ----------
    source, target : str
        The store read and the store written.
    counts : tuple of RowCount
        Rows before, kept and lost, per representation, in the order they were named.
    kept : int
        Samples present in every representation: the rows of the aligned copy.
    already_aligned : bool
        The manifests said that the representations list the same ids in the same order:
        nothing was shuffled, and the files were copied as they are (or not at all, when the
        target is the source).
    """

    source: str
    target: str
    counts: tuple
    kept: int
    already_aligned: bool

    def __str__(self):
        if self.already_aligned:
            action = (
                "nothing to do"
                if self.source == self.target
                else f"files copied as they are to {self.target}"
            )
            header = (
                f"{len(self.counts)} representations of {self.source} are already aligned "
                f"({self.kept:,} samples): {action}."
            )
        else:
            header = (
                f"aligned {len(self.counts)} representations of {self.source} on sample_id "
                f"(inner join) into {self.target}: {self.kept:,} samples kept."
            )
        rows = [("representation", "rows", "kept", "lost")]
        rows += [(c.name, f"{c.rows:,}", f"{c.kept:,}", f"{c.lost:,}") for c in self.counts]
        return "\n".join([header, *_text_table(rows)])

    def to_dict(self):
        """The report as JSON-able built-in types."""
        return {
            "source": self.source,
            "target": self.target,
            "kept": self.kept,
            "already_aligned": self.already_aligned,
            "representations": [
                {"name": c.name, "rows": c.rows, "kept": c.kept, "lost": c.lost}
                for c in self.counts
            ],
        }


def _text_table(rows):
    """Rows of strings as lines of aligned columns: the first left-aligned, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def align_representations(source_store, names, target_store, *, shard_rows=None, progress=False):
    """Write an aligned copy of representations: the samples they all hold, by sample_id.

    Every representation of ``names`` is written to ``target_store`` under its own name, with
    the rows of the sample_ids present in all of them, in increasing sample_id order, so that
    ``open_store(target_store).blocks(names)`` reads them together. Each keeps its ``source``,
    plus ``{"aligned_from": str(source_store)}``. Representations whose manifests already say
    they are aligned are not shuffled: their files are copied as they are, or left alone when
    ``target_store`` is ``source_store``.

    Parameters
    ----------
    source_store : path-like
        The store that holds ``names``.
    names : sequence of str
        The representations to align, at least one, each once.
    target_store : path-like
        The store to write (created if missing); it must not hold any of ``names``. It may be
        ``source_store`` only when the representations are already aligned.
    shard_rows : int, optional
        Rows per Parquet shard of every aligned representation, and about the rows of each
        bucket of the shuffle, all representations together. Default: the smallest default
        shard size of the representations (about 64 MiB of the widest).
    progress : bool, default=False
        Show progress bars (on stderr).

    Returns
    -------
    AlignmentReport
        Rows before, kept and lost per representation; ``str(report)`` is a table.

    Raises
    ------
    StoreError
        A name is missing from the store or repeated; the representations mix int64 and string
        ids; a representation holds a sample_id twice (the join would be ambiguous); no
        sample_id is in all of them; ``target_store`` already holds one of ``names``, or is
        the source while the representations are not aligned.
    InvalidParameterError
        ``shard_rows`` is not a positive integer.

    Notes
    -----
    Memory stays bounded for representations larger than memory: about two input partitions
    while reading, then one bucket (about ``shard_rows`` rows, all representations together)
    plus the writers' pending shards. The shuffle needs one more copy of the data on disk, in
    a hidden scratch folder of ``target_store`` that is removed at the end. Dask runs with its
    threaded scheduler and two workers.
    """
    if shard_rows is not None:
        check_int_in_range(shard_rows, name="shard_rows", low=1, high=sys.maxsize)
    source = open_store(source_store)
    representations = _representations(source, names)
    target = Path(target_store)
    aligned = source.aligned([r.name for r in representations])
    if target.resolve() == source.path.resolve():
        if aligned:
            return _already_aligned_report(source, target, representations)
        raise StoreError(
            f"{[r.name for r in representations]} in {source.path} are not aligned, and their "
            "aligned copy cannot replace them in place: give another target_store."
        )
    _refuse_existing(representations, target)
    if aligned:
        _copy(representations, target)
        return _already_aligned_report(source, target, representations)

    if shard_rows is None:
        shard_rows = min(default_shard_rows(r.dim) for r in representations)
    target.mkdir(parents=True, exist_ok=True)
    scratch = target / f".align-scratch-{uuid.uuid4().hex[:12]}"
    try:
        with dask.config.set(DASK_CONFIG):
            cuts = _bucket_cuts(representations, shard_rows)
            spills = [
                _spill(r, cuts, scratch / str(i), progress) for i, r in enumerate(representations)
            ]
        note = {"aligned_from": str(source_store)}
        kept = _join(representations, spills, target, note, shard_rows, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    counts = tuple(
        RowCount(r.name, int(rows.sum()), kept)
        for r, (_, rows) in zip(representations, spills, strict=True)
    )
    return AlignmentReport(str(source.path), str(target), counts, kept, already_aligned=False)


def _representations(source, names):
    """The named representations of ``source``: distinct, existing, with one id type."""
    names = list(names)
    if not names or len(set(names)) < len(names):
        raise StoreError(f"names must list one or more distinct representations; got {names}.")
    representations = [source[name] for name in names]
    id_types = {r.id_type for r in representations}
    if len(id_types) > 1:
        types = ", ".join(f"{r.name}: {r.id_type}" for r in representations)
        raise StoreError(
            f"representations with int64 and string sample_ids cannot be joined; got {types}."
        )
    return representations


def _already_aligned_report(source, target, representations):
    rows = representations[0].rows
    counts = tuple(RowCount(r.name, r.rows, r.rows) for r in representations)
    return AlignmentReport(str(source.path), str(target), counts, rows, already_aligned=True)


def _refuse_existing(representations, target):
    existing = [r.name for r in representations if (target / r.name).exists()]
    if existing:
        raise StoreError(
            f"target store {target} already holds {existing}: align into a store without "
            "them, or remove them first."
        )


def _copy(representations, target):
    """Copy each representation's folder as it is, published by a rename once complete."""
    target.mkdir(parents=True, exist_ok=True)
    for representation in representations:
        partial_copy = target / f".{representation.name}.partial-{uuid.uuid4().hex[:12]}"
        shutil.copytree(representation.path, partial_copy)
        os.replace(partial_copy, target / representation.name)


def _read(representation, columns=None):
    """A Dask frame of the representation's shards; the embedding column stays Arrow."""
    shards = [str(path) for path in representation.shard_paths()]
    return dd.read_parquet(shards, columns=columns, dtype_backend="pyarrow")


def _bucket_cuts(representations, bucket_rows):
    """Sorted sample_ids that cut the id range into buckets of about ``bucket_rows`` rows.

    Bucket ``b`` holds the ids with ``cuts[b - 1] <= id < cuts[b]``. The cuts are the
    approximate quantiles that Dask's ``set_index`` computes, reading the id columns only, of
    every representation's ids together.
    """
    ids = dd.concat([_read(r, columns=["sample_id"]) for r in representations])
    buckets = ceil(sum(r.rows for r in representations) / bucket_rows)
    divisions = ids.set_index("sample_id", npartitions=buckets).divisions
    return np.array(divisions[1:-1], dtype=_ID_DTYPES[representations[0].id_type])


def _spill(representation, cuts, folder, progress):
    """Append every row of ``representation`` to the file of its bucket under ``folder``.

    Returns the bucket files (a partd store keyed by bucket number) and the rows per bucket.
    """
    buckets = partd.PandasBlocks(partd.File(str(folder)))
    partitions = _read(representation).to_delayed()
    spill_partition = dask.delayed(_spill_partition, pure=False)
    with tqdm(
        total=len(partitions), desc=f"spill {representation.name}", disable=not progress
    ) as bar:
        rows = dask.compute(*[spill_partition(p, cuts, buckets, bar) for p in partitions])
    return buckets, np.sum(rows, axis=0)


def _spill_partition(frame, cuts, buckets, bar):
    bucket = np.searchsorted(cuts, frame["sample_id"].to_numpy(), side="right")
    rows = np.bincount(bucket, minlength=len(cuts) + 1)
    order = np.argsort(bucket, kind="stable")
    ends = np.cumsum(rows)
    buckets.append(
        {
            b: frame.iloc[order[end - n : end]]
            for b, (n, end) in enumerate(zip(rows, ends, strict=True))
            if n
        }
    )
    bar.update()
    return rows


def _join(representations, spills, target, note, shard_rows, progress):
    """Write the rows of the ids in every representation, bucket by bucket; returns how many.

    Every writer is discarded, and nothing published, if any bucket fails.
    """
    kept = 0
    with ExitStack() as stack:
        writers = [
            stack.enter_context(
                RepresentationWriter(
                    target, r.name, source={**(r.source or {}), **note}, shard_rows=shard_rows
                )
            )
            for r in representations
        ]
        bucket_count = len(spills[0][1])
        for b in tqdm(range(bucket_count), desc="join", disable=not progress):
            parts = [
                _bucket(r, buckets, b, rows[b])
                for r, (buckets, rows) in zip(representations, spills, strict=True)
            ]
            common = reduce(partial(np.intersect1d, assume_unique=True), [p[0] for p in parts])
            if len(common):
                for writer, (ids, first, values) in zip(writers, parts, strict=True):
                    writer.write(common, values[first[np.searchsorted(ids, common)]])
            kept += len(common)
        if kept == 0:
            rows = ", ".join(f"{r.name} ({r.rows:,} rows)" for r in representations)
            raise StoreError(f"no sample_id is present in all of {rows}: nothing to write.")
    return kept


def _bucket(representation, buckets, index, rows):
    """One bucket of a representation: its sorted distinct ids, the row of each, the rows.

    A sample_id that occurs twice is refused: which of its rows pairs with the other
    representations' row would be a guess.
    """
    if rows == 0:
        empty_ids = np.empty(0, dtype=_ID_DTYPES[representation.id_type])
        return empty_ids, np.empty(0, dtype=np.intp), np.empty((0, representation.dim))
    frame = buckets.get(index)
    ids, first, counts = np.unique(
        frame["sample_id"].to_numpy(), return_index=True, return_counts=True
    )
    if counts.max() > 1:
        at = int(np.argmax(counts))
        raise StoreError(
            f"{representation.name!r} holds sample_id {ids[at : at + 1].tolist()[0]!r} "
            f"{counts[at]} times (and maybe other duplicate ids): a join on duplicated ids is "
            "ambiguous. Remove the duplicates (`repalign validate` lists them) and align again."
        )
    return ids, first, embedding_matrix(pa.array(frame["embedding"]), representation.dim)
