"""Checking a store: every file against its manifest, and every row for what a job can use.

Each problem names the file and says what is wrong. Errors make a store unusable as it is;
warnings (a leftover partial write, samples missing from some representations) do not.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from repalign.errors import StoreError
from repalign.store.format import (
    MANIFEST,
    PILOT_FILE,
    PILOT_ROWS,
    embedding_matrix,
    file_sha256,
    ids_array,
    pilot_mean,
    read_manifest,
)
from repalign.store.reader import Representation


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "warning"
    path: Path
    message: str

    def __str__(self):
        return f"{self.severity.upper():7} {self.path}: {self.message}"


def validate_store(path):
    """All problems found in the store at ``path``, errors first; an empty list means valid."""
    path = Path(path)
    if not path.is_dir():
        raise StoreError(f"store {path} does not exist or is not a folder.")
    problems, id_sets = [], {}
    for folder in sorted(p for p in path.iterdir() if p.is_dir()):
        if ".partial-" in folder.name or ".retired-" in folder.name:
            problems.append(
                Problem("warning", folder, "leftover of an interrupted write; safe to delete")
            )
        elif folder.name[0] not in "._":
            ids = _check_representation(folder, problems)
            if ids is not None:
                id_sets[folder.name] = ids
    problems.extend(_missing_ids(path, id_sets))
    return sorted(problems, key=lambda p: p.severity != "error")


def _check_representation(folder, problems):
    """Check one representation folder; returns its ids when its rows could all be read."""
    try:
        manifest = read_manifest(folder)
    except StoreError as exc:
        problems.append(Problem("error", folder, str(exc)))
        return None
    dim, listed = int(manifest["dim"]), {s["file"] for s in manifest["shards"]}
    for extra in sorted(p.name for p in folder.glob("part-*.parquet") if p.name not in listed):
        problems.append(Problem("error", folder / extra, "shard file not listed in the manifest"))
    if int(manifest["rows"]) == 0 or not manifest["shards"]:
        problems.append(Problem("error", folder, "empty representation: it has no rows"))
        return None
    if sum(int(s["rows"]) for s in manifest["shards"]) != int(manifest["rows"]):
        problems.append(
            Problem("error", folder / MANIFEST, "rows disagrees with the sum of its shards' rows")
        )
    all_ids, complete = [], True
    for shard in manifest["shards"]:
        ids = _check_shard(folder / shard["file"], shard, dim, manifest["id_type"], problems)
        complete &= ids is not None
        all_ids.append(ids)
    if not complete:
        return None
    _check_pilot_mean(Representation(folder, manifest), problems)
    ids = np.concatenate(all_ids)
    duplicates = [(value, count) for value, count in Counter(ids.tolist()).items() if count > 1]
    if duplicates:
        value, count = duplicates[0]
        problems.append(
            Problem(
                "error",
                folder,
                f"{len(duplicates)} sample_ids appear more than once (e.g. {value!r}, "
                f"{count} times): every sample may appear once",
            )
        )
    return set(ids.tolist())


def _check_pilot_mean(representation, problems):
    """The saved pilot mean, where there is one, is that of the stored first rows."""
    path = representation.path / PILOT_FILE
    if not path.exists():
        return  # written before writers saved it: a job computes it from the rows
    try:
        saved = representation.pilot_mean()
    except StoreError as exc:
        problems.append(Problem("error", path, str(exc)))
        return
    first = representation.read_values(0, min(PILOT_ROWS, representation.rows))
    if not np.array_equal(saved, pilot_mean(first), equal_nan=True):
        problems.append(
            Problem("error", path, "differs from the mean of the first rows: the file was changed")
        )


def _check_shard(path, shard, dim, id_type, problems):
    """Check one shard file; returns its ids if it could be read."""
    if not path.exists():
        problems.append(Problem("error", path, "missing shard listed in the manifest"))
        return None
    if file_sha256(path) != shard["sha256"]:
        problems.append(
            Problem("error", path, "sha256 differs from the manifest: the file was changed")
        )
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        problems.append(Problem("error", path, f"truncated or unreadable Parquet file ({exc})"))
        return None
    stored = parquet.schema_arrow.field("embedding").type
    if getattr(stored, "list_size", None) != dim:
        problems.append(
            Problem("error", path, f"embedding type is {stored}, the manifest says dim={dim}")
        )
        return None
    if parquet.metadata.num_rows != int(shard["rows"]):
        problems.append(
            Problem(
                "error",
                path,
                f"has {parquet.metadata.num_rows} rows, the manifest says {shard['rows']}",
            )
        )
    ids, bad_rows, first_bad = [], 0, None
    try:
        for batch in parquet.iter_batches():
            batch_ids = ids_array(batch.column("sample_id"), id_type)
            bad = ~np.isfinite(embedding_matrix(batch.column("embedding"), dim)).all(axis=1)
            if bad.any() and first_bad is None:
                first_bad = batch_ids[np.flatnonzero(bad)[:1]].tolist()[0]
            bad_rows += int(bad.sum())
            ids.append(batch_ids)
    except (OSError, ValueError, pa.ArrowException) as exc:
        problems.append(Problem("error", path, f"truncated or unreadable Parquet file ({exc})"))
        return None
    if bad_rows:
        problems.append(
            Problem(
                "error",
                path,
                f"{bad_rows} rows hold NaN or Inf (the first: sample_id {first_bad!r})",
            )
        )
    return np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)


def _missing_ids(store, id_sets):
    """Warn about representations that lack samples present in others of the store."""
    if len(id_sets) < 2:
        return []
    union = set().union(*id_sets.values())
    problems = []
    for name, ids in id_sets.items():
        missing = union - ids
        if missing:
            problems.append(
                Problem(
                    "warning",
                    store / name,
                    f"lacks {len(missing)} sample_ids present in other representations "
                    f"(e.g. {min(missing)!r}); `repalign align` joins them",
                )
            )
    return problems
