"""Checks of a job spec against its store, before anything starts: the service answers them at
submit (422, or 404 for a missing store) and ``repalign run`` exits with them before Ray.

Only the stores' manifests are read, never their rows. A spec passes when:

- its store exists and holds the representations it names (every name or glob matches one);
- the representations are aligned on sample_id (the manifests agree), so they share n rows;
- k < n for the neighbour measures (mutual k-NN, CKNNA: each row has n − 1 others);
- features < n for Nyström, whose kernel columns are rows: with all of them it is the exact
  kernel, at many times its cost;
- random Fourier features come in the blocks of `repalign.approx.RFF_BLOCKS`;
- the memory the engine plans for one process fits in the worker's memory.

The planned memory is what one process of the job must hold at once in the largest pass
(docs/design.md §4): the job runs its passes one after another, and a Ray actor holds its
running state plus the state of the unit it is adding, so each state counts twice. Of each
pass only the terms that do not depend on the engine's tuning (rows per unit, tile sizes)
are counted, so a job that is refused could not have run; one that passes may still need
somewhat more. With M representations of widths dₘ, n rows, F features:

    moments      2 · 8 · (D + 1)²,  D = Σ (dₘ + 1)    the whole statistic, when it fits in a
                                                  tile (``tile_bytes``, by default a quarter of
                 2 · 8 · (d₁ + d₂ + 3)²          the memory); else the smallest tile that holds
                                                  the two widest representations;
                 with `jackknife: G`, (G + 6) states instead of 2 (the groups', their total
                 and one without a group, each of the last two centred two ways), and the
                 whole statistic only when G + 1 copies fit in a tile
    exact RBF    2 · 8 · 2·M·n                  kernel row sums and diagonals
    features     2 · 8 · (M·(F + 1) + 1)² + 8 · F · Σ dₘ       the feature statistic, the maps
    neighbours   16 · M · n · k                 every row's k neighbours and similarities
    MMD² (rff)   8 · F · Σ d over the pairs     one feature map per pair

Nyström uses F = features kernel columns (landmarks and probes), and its maps hold the F·d
values of their rows.
"""

import fnmatch
import os
from dataclasses import dataclass
from itertools import combinations_with_replacement
from pathlib import Path

from repalign.approx import RFF_BLOCKS
from repalign.errors import MisalignedError, RepalignError, StoreError
from repalign.stats import default_tile_bytes, moment_matrix_bytes
from repalign.store import open_store

FLOAT = 8  # bytes of a float64 or an int64
GIB = 2**30


class JobCheckError(RepalignError):
    """A job spec that cannot run on its store. ``field`` is the spec's key at fault, written
    as in the spec's validation errors (``measures.0.k``)."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field


class MissingStoreError(JobCheckError):
    """The spec's store (or the ``against`` store of an MMD² measure) does not exist."""


def machine_memory():
    """Bytes of physical memory of this machine."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_job(spec, *, memory_bytes, locate=Path):
    """Raise `JobCheckError` for the first reason ``spec`` cannot run; return None.

    Parameters
    ----------
    spec : AlignmentSpec or StitchingSpec
    memory_bytes : int
        Memory of the worker that runs the job (`machine_memory` for this machine).
    locate : callable, default=pathlib.Path
        The folder of a store as the spec names it (the service resolves names under its
        store roots). Messages name stores as the spec does, never by ``locate``'s answer.
    """
    store = _open(spec.store, locate, field="store")
    if spec.kind == "stitching":
        for i, pair in enumerate(spec.pairs or []):
            for side in ("source", "target"):
                if getattr(pair, side) not in store.representations:
                    raise JobCheckError(
                        f"pairs.{i}.{side}",
                        f"store {spec.store!r} has no representation {getattr(pair, side)!r}",
                    )
        return
    names = _selected(spec, store)
    n = store[names[0]].rows
    for i, measure in enumerate(spec.measures):
        if measure.name in ("mutual_knn", "cknna") and measure.k >= n:
            raise JobCheckError(
                f"measures.{i}.k",
                f"k={measure.k} must be below n={n}, the samples of store {spec.store!r}",
            )
        if measure.approx == "nystrom" and measure.features >= n:
            given = "" if "features" in measure.model_fields_set else " (the default)"
            raise JobCheckError(
                f"measures.{i}.features",
                f"features={measure.features}{given} must be below n={n}, the samples of store "
                f"{spec.store!r}: Nyström takes its kernel columns from the rows, and with all "
                "of them it is the exact kernel at more cost (leave out approx for the exact one)",
            )
        if measure.approx == "rff" and measure.features % RFF_BLOCKS:
            raise JobCheckError(
                f"measures.{i}.features",
                f"random Fourier features come in {RFF_BLOCKS} blocks: {measure.features} is "
                f"not a multiple of {RFF_BLOCKS}",
            )
        if measure.against is not None:
            _open(measure.against, locate, field=f"measures.{i}.against")
    largest = max(planned_memory(spec, store, names, memory_bytes), key=lambda need: need.bytes)
    if largest.bytes > memory_bytes:
        raise JobCheckError(
            largest.field,
            f"the job needs at least {largest.bytes / GIB:.1f} GiB in one process for "
            f"{largest.what}, more than the worker's {memory_bytes / GIB:.1f} GiB",
        )


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes that one process of a job holds at once in one pass, and the spec field that
    sets them."""

    bytes: int
    field: str
    what: str


def _moment_state_bytes(dims, tile_bytes, states=1):
    """Bytes of the largest moment state an actor holds: the whole statistic when ``states``
    copies of it (the jackknife's groups and their total) fit in ``tile_bytes`` (the engine
    then does not tile), else at least the tile of the two widest."""
    whole = moment_matrix_bytes(dims)
    if states * whole <= tile_bytes:
        return whole
    return moment_matrix_bytes(sorted(dims, reverse=True)[:2])


def planned_memory(spec, store, names, memory_bytes):
    """The `MemoryNeed` of each pass of an alignment ``spec`` over ``names`` of ``store``, for
    workers of ``memory_bytes`` (the formulas of the module docstring)."""
    tile_bytes = spec.tile_bytes or default_tile_bytes(memory_bytes)
    reps = [store[name] for name in names if not store[name].unusable()]
    dims = [r.dim for r in reps] or [0]
    n, m = store[names[0]].rows, len(reps)
    if spec.jackknife is None:
        needs = [
            MemoryNeed(
                2 * _moment_state_bytes(dims, tile_bytes), "representations", "the second moments"
            )
        ]
    else:
        # the groups' states, their total and one statistic without a group, each of the last
        # two with its two centrings
        states = spec.jackknife + 6
        needs = [
            MemoryNeed(
                states * _moment_state_bytes(dims, tile_bytes, spec.jackknife + 1),
                "jackknife",
                f"the second moments of {spec.jackknife} groups of rows",
            )
        ]
    for i, measure in enumerate(spec.measures):
        if measure.kernel == "rbf" and measure.approx == "none" and measure.name != "mmd2":
            needs.append(
                MemoryNeed(2 * FLOAT * 2 * m * n, "representations", "the exact RBF tiles")
            )
        elif measure.approx != "none" and measure.name != "mmd2":
            features = measure.features
            statistic = 2 * FLOAT * (m * (features + 1) + 1) ** 2
            maps = FLOAT * features * sum(dims)
            needs.append(
                MemoryNeed(
                    statistic + maps,
                    f"measures.{i}.features",
                    f"the statistic of {m} representations × {features} random features",
                )
            )
        elif measure.name in ("mutual_knn", "cknna"):
            needs.append(
                MemoryNeed(
                    2 * FLOAT * m * n * measure.k,
                    f"measures.{i}.k",
                    f"the {measure.k} neighbours of each of {n} rows of {m} representations",
                )
            )
        elif measure.name == "mmd2" and measure.approx == "rff":
            widths = [a.dim for a, b in combinations_with_replacement(reps, 2) if a.dim == b.dim]
            if measure.against is not None:
                widths = [r.dim for r in reps]
            needs.append(
                MemoryNeed(
                    FLOAT * measure.features * sum(widths),
                    f"measures.{i}.features",
                    f"the random-feature maps of {len(widths)} MMD² pairs × "
                    f"{measure.features} features",
                )
            )
    return needs


def _open(name, locate, *, field):
    folder = locate(name)
    if not Path(folder).is_dir():
        raise MissingStoreError(field, f"store {name!r} does not exist")
    try:
        return open_store(folder)
    except StoreError:  # its message names the folder, which the service keeps to itself
        raise JobCheckError(
            field, f"store {name!r} has a manifest that cannot be read; run `repalign validate`"
        ) from None


def _selected(spec, store):
    """The names the spec selects, which must be aligned: refuses a glob matching nothing."""
    if not store.representations:
        raise JobCheckError("store", f"store {spec.store!r} holds no representation")
    for i, pattern in enumerate(spec.representations or []):
        if not any(fnmatch.fnmatchcase(name, pattern) for name in store.representations):
            raise JobCheckError(
                f"representations.{i}",
                f"{pattern!r} matches no representation of store {spec.store!r}",
            )
    names = store.select(spec.representations)
    try:
        store.check_aligned(names)
    except MisalignedError as exc:
        raise JobCheckError("representations", str(exc)) from None
    return names
