"""The units of work of an alignment job, as run by the actors of `jobs.engine`.

Each task reads its own rows of the store (the driver never loads data) and returns a
mergeable state: a `GramState` of second moments, an `RbfTileState` of exact kernel tiles,
a `NeighborState` of top-k lists, or an `MmdTileState` of two-sample kernel sums. Float32 is
read, float64 accumulated.

Each task also says what a unit reads, ``reads(unit)``: a list of (representation, start, stop)
row ranges, a representation named by its name or, for tasks that read several stores, by
(store, name). The job sums them into how many times each row is read (`reads_per_row`).
"""

import copy
from dataclasses import dataclass, field

import numpy as np

from jobs.engine import added
from repalign.blocks import row_slices
from repalign.measures.jackknife import rows_by_group
from repalign.measures.kernels import _cross_squared_distances
from repalign.measures.permutation import read_permuted
from repalign.stats import BorderState, GramState
from repalign.store import open_store
from repalign.tiles import RbfTileState


class StoreTask:
    """A task that reads representations of one store; the store is opened once per actor.

    With ``permutation`` a draw b of the permutation null, it reads each representation's rows
    as that draw permutes them (`repalign.measures.permutation`); the job sets it.
    """

    permutation = None

    def __init__(self, store):
        self.store_path = str(store)
        self._store = None

    def __getstate__(self):
        return {**self.__dict__, "_store": None}

    @property
    def store(self):
        if self._store is None:
            self._store = open_store(self.store_path)
        return self._store

    def read(self, name, rows):
        representation = self.store[name]
        if self.permutation is None:
            return representation.read_values(*rows)
        return read_permuted(
            representation.read_values, name, self.permutation, *rows, representation.rows
        )


class RowTask(StoreTask):
    """A task whose unit is a row range ``(start, stop)`` of each of ``names``, its work split in
    two so that a slot reads the next unit while it computes this one
    (`jobs.engine.SlotAccumulator`): `load` reads the unit's rows of every representation
    (Parquet decoding, which releases the GIL), and `accumulate` makes the state from them."""

    def __init__(self, store, names):
        super().__init__(store)
        self.names = list(names)

    def rows(self, unit):
        return unit[1] - unit[0]

    def reads(self, unit):
        return [(name, *unit) for name in self.names]

    def load(self, unit):
        """The unit's rows of each representation: a list of float32 (rows, dₖ) arrays."""
        return [self.read(name, unit) for name in self.names]

    def compute(self, unit):
        return self.accumulate(self.load(unit))

    def accumulate_into(self, state, loaded):
        """``state`` (None before the first unit) plus the state of the ``loaded`` data: the
        sum a slot keeps (`jobs.engine.SlotAccumulator`)."""
        return added(state, self.accumulate(loaded))


@dataclass
class ColumnRanges:
    """Column minima and maxima of several representations over the rows seen."""

    low: list
    high: list

    def __add__(self, other):
        return ColumnRanges(
            [np.minimum(a, b) for a, b in zip(self.low, other.low, strict=True)],
            [np.maximum(a, b) for a, b in zip(self.high, other.high, strict=True)],
        )

    def constant(self):
        """For each representation: are all its rows identical?"""
        return [bool((low == high).all()) for low, high in zip(self.low, self.high, strict=True)]


class RangeTask(RowTask):
    """Column ranges of row ranges: unit = (start, stop)."""

    def accumulate(self, blocks):
        return ColumnRanges([b.min(axis=0) for b in blocks], [b.max(axis=0) for b in blocks])


class MomentTask(RowTask):
    """Second moments of row ranges: unit = (start, stop). Its work is one SYRK per row block,
    which BLAS spreads over the cores by itself (``blas_bound``).

    With ``first_new``, only the rows of the statistic that involve the representations from
    that index on are computed (`BorderState`), for a run that adds them to a saved state.
    ``precision`` is the type of each block's products ("float64" or "float32"; the states
    accumulate in float64 either way, docs/design.md §4, "Precision"). With ``groups``, the
    jackknife's contiguous row ranges, the state is a `GroupStates`: one `GramState` per group
    (`repalign.measures.jackknife`), each unit's rows added to the groups they fall in. The
    units stay whole row groups of the store: cutting them at the groups' edges decoded most
    row groups twice (3.3 s against 2.0 s of reads for 8 × 512 at n = 64,000, 16 groups).
    """

    blas_bound = True
    dealt_in_runs = True
    """Each slot takes a contiguous run of the units (`jobs.engine.deal`), whose costs are
    equal: with the jackknife it then holds the states of the groups of its run only, about
    G / slots of them, where units dealt in turn gave every slot a state for each group."""

    def __init__(self, store, names, shifts, first_new=None, precision="float64", groups=None):
        super().__init__(store, names)
        self.shifts, self.first_new, self.precision = shifts, first_new, precision
        self.groups = groups

    def load(self, unit):
        """The unit's first row, which places it among the groups, and its rows."""
        return unit[0], super().load(unit)

    def accumulate(self, loaded):
        return self.accumulate_into(None, loaded)

    def accumulate_into(self, state, loaded):
        """The unit's row blocks added into ``state`` itself (into its group's state with the
        jackknife): no new D×D state per unit, nor a pass to add it."""
        start, blocks = loaded
        if self.groups is None:
            return self._add_rows(state, blocks)
        state = state if state is not None else GroupStates({})
        for group, rows in rows_by_group(self.groups, start, blocks):
            state.states[group] = self._add_rows(state.states.get(group), rows)
        return state

    def _add_rows(self, state, blocks):
        if state is None:
            dims = [b.shape[1] for b in blocks]
            if self.first_new is None:
                state = GramState(dims, self.shifts, self.precision)
            else:
                state = BorderState(dims, self.shifts, self.first_new, self.precision)
        for rows in state.row_blocks(len(blocks[0])):
            state.add_block([b[rows] for b in blocks])
        return state


class GroupStates:
    """The `GramState` of each jackknife group seen so far, {group: state}; states of one group
    add up, and ``+`` merges two of these."""

    def __init__(self, states):
        self.states = states

    def __iadd__(self, other):
        for group, state in other.states.items():
            if group in self.states:
                self.states[group] += state
            else:
                self.states[group] = state
        return self

    def __add__(self, other):
        total = copy.deepcopy(self)
        total += other
        return total

    def in_order(self, count):
        """The states of groups 0 … count − 1."""
        missing = [g for g in range(count) if g not in self.states]
        if missing:
            raise ValueError(f"GroupStates: no rows of groups {missing}.")
        return [self.states[g] for g in range(count)]


class RbfTileTask(StoreTask):
    """Exact RBF kernel tiles: unit = ((i0, i1), (j0, j1)) with i0 ≤ j0."""

    def __init__(self, store, names, sigmas, shifts, n):
        super().__init__(store)
        self.names, self.sigmas, self.shifts, self.n = list(names), sigmas, shifts, n

    def rows(self, unit):
        (i0, i1), (j0, j1) = unit
        return (i1 - i0) * (j1 - j0) // max(1, self.n)

    def reads(self, unit):
        rows_i, rows_j = unit
        sides = [rows_i] if rows_i == rows_j else [rows_i, rows_j]
        return [(name, *side) for name in self.names for side in sides]

    def compute(self, unit):
        rows_i, rows_j = unit
        state = RbfTileState(self.sigmas, self.n, shifts=self.shifts)
        blocks_i = [self.read(name, rows_i) for name in self.names]
        blocks_j = blocks_i if rows_i == rows_j else [self.read(n, rows_j) for n in self.names]
        state.add_tile(slice(*rows_i), blocks_i, slice(*rows_j), blocks_j)
        return state


@dataclass
class NeighborState:
    """The k nearest neighbours (cosine, self excluded) of some query rows, per representation.

    ``parts[name]`` is a list of (start, indices, similarities); ``failures[name]`` the reason a
    representation has none (a row of zero norm).
    """

    parts: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)

    def __add__(self, other):
        parts = {name: list(v) for name, v in self.parts.items()}
        for name, values in other.parts.items():
            parts.setdefault(name, []).extend(values)
        return NeighborState(parts, {**self.failures, **other.failures})

    def neighbors(self, name):
        """(indices, similarities), each (n, k), in row order."""
        parts = sorted(self.parts[name], key=lambda part: part[0])
        return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


class NeighborTask(StoreTask):
    """Exact top-k cosine neighbours of the query rows ``unit = (start, stop)``, found by
    streaming every row of the representation past them (O(b·n) memory, never n×n)."""

    def __init__(self, store, names, k, n, reference_rows):
        super().__init__(store)
        self.names, self.k, self.n, self.reference_rows = list(names), k, n, reference_rows

    def rows(self, unit):
        return unit[1] - unit[0]

    def reads(self, unit):
        """The query rows, then every row as a reference."""
        return [(name, *rows) for name in self.names for rows in (unit, (0, self.n))]

    def compute(self, unit):
        state = NeighborState()
        for name in self.names:
            try:
                state.parts[name] = [(unit[0], *self._top_k(name, unit))]
            except ZeroDivisionError as exc:
                state.failures[name] = str(exc)
        return state

    def _top_k(self, name, unit):
        """The k best of each query row: each reference block's own k best (a partition of
        the block, never copied), merged with the k best so far."""
        queries = self._unit_rows(name, unit)
        best_values = np.full((len(queries), self.k), -np.inf)
        best_indices = np.zeros((len(queries), self.k), dtype=np.int64)
        own = np.arange(unit[0], unit[1])
        for start in range(0, self.n, self.reference_rows):
            stop = min(start + self.reference_rows, self.n)
            similarities = queries @ self._unit_rows(name, (start, stop)).T
            inside = (own >= start) & (own < stop)
            similarities[np.flatnonzero(inside), own[inside] - start] = -np.inf
            k = min(self.k, stop - start)
            top = np.argpartition(similarities, -k, axis=1)[:, -k:]
            values = np.concatenate([best_values, np.take_along_axis(similarities, top, 1)], 1)
            indices = np.concatenate([best_indices, top + start], axis=1)
            keep = np.argpartition(values, -self.k, axis=1)[:, -self.k :]
            best_values = np.take_along_axis(values, keep, axis=1)
            best_indices = np.take_along_axis(indices, keep, axis=1)
        order = np.argsort(-best_values, axis=1, kind="stable")
        return np.take_along_axis(best_indices, order, 1), np.take_along_axis(best_values, order, 1)

    def _unit_rows(self, name, rows):
        block = self.read(name, rows).astype(np.float64)
        norms = np.linalg.norm(block, axis=1)
        if (norms == 0).any():
            first = rows[0] + int(np.flatnonzero(norms == 0)[0])
            raise ZeroDivisionError(
                f"{name} has rows of zero norm (the first is row {first}); cosine "
                "similarity is undefined for them"
            )
        return block / norms[:, None]


@dataclass
class MmdTileState:
    """Kernel sums of two-sample MMD² for a list of pairs of samples (X, Y).

    For pair p: ``sums[p] = [Σ Kxx, Σ Kyy, Σ Kxy, tr Kxx, tr Kyy]`` over all index pairs, and
    the linear-time sum ``linear[p]`` over row pairs (2i, 2i+1).
    """

    sums: np.ndarray
    linear: np.ndarray

    def __add__(self, other):
        return MmdTileState(self.sums + other.sums, self.linear + other.linear)


class MmdTileTask:
    """Units of MMD² tiles for pairs of representations ``(x, y)``, each an (store, name)
    reference so that a pair may span two stores (drift against another store).

    unit = (p, family, (i0, i1), (j0, j1)): family "xx", "yy" (upper triangle, I ≤ J) or "xy"
    (all tiles), or (p, "linear", (i0, i1), None) for the linear-time estimator. ``kernels[p]``
    is "rbf" with bandwidth ``sigmas[p]``, or "linear"; rows are shifted by ``shifts[p]``
    (both kernels are invariant to a common translation; the shift keeps sums accurate).
    """

    def __init__(self, pairs, kernels, sigmas, shifts, rows):
        self.pairs, self.kernels, self.sigmas = pairs, kernels, sigmas
        self.shifts, self.row_counts = shifts, rows
        self._stores = {}

    def __getstate__(self):
        return {**self.__dict__, "_stores": {}}

    def rows(self, unit):
        p, family, rows_i, rows_j = unit
        if rows_j is None:
            return rows_i[1] - rows_i[0]
        side = 0 if family == "xx" else 1
        return (rows_i[1] - rows_i[0]) * (rows_j[1] - rows_j[0]) // self.row_counts[p][side]

    def reads(self, unit):
        p, family, rows_i, rows_j = unit
        x, y = self.pairs[p]
        if family == "linear":
            return [(x, *rows_i), (y, *rows_i)]
        first, second = {"xx": (x, x), "yy": (y, y), "xy": (x, y)}[family]
        return [(first, *rows_i), (second, *rows_j)]

    def read(self, p, reference, rows):
        store, name = reference
        if store not in self._stores:
            self._stores[store] = open_store(store)
        block = self._stores[store][name].read_values(*rows)
        return block.astype(np.float64) - self.shifts[p]

    def kernel(self, p, A, B, *, rowwise=False):
        """k(aᵢ, bⱼ) for all i, j, or k(aᵢ, bᵢ) with ``rowwise``."""
        if self.kernels[p] == "linear":
            return np.einsum("ij,ij->i", A, B) if rowwise else A @ B.T
        if rowwise:
            distances = np.einsum("ij,ij->i", A - B, A - B)
        else:
            distances = _cross_squared_distances(A, B)
        return np.exp(distances * (-0.5 / self.sigmas[p] ** 2))

    def compute(self, unit):
        p, family, rows_i, rows_j = unit
        state = MmdTileState(np.zeros((len(self.pairs), 5)), np.zeros(len(self.pairs)))
        x, y = self.pairs[p]
        if family == "linear":
            X, Y = self.read(p, x, rows_i), self.read(p, y, rows_i)
            half = len(X) // 2
            x0, x1 = X[0 : 2 * half : 2], X[1 : 2 * half : 2]
            y0, y1 = Y[0 : 2 * half : 2], Y[1 : 2 * half : 2]
            h = (
                self.kernel(p, x0, x1, rowwise=True)
                + self.kernel(p, y0, y1, rowwise=True)
                - self.kernel(p, x0, y1, rowwise=True)
                - self.kernel(p, x1, y0, rowwise=True)
            )
            state.linear[p] = h.sum()
            return state
        first, second = {"xx": (x, x), "yy": (y, y), "xy": (x, y)}[family]
        tile = self.kernel(p, self.read(p, first, rows_i), self.read(p, second, rows_j))
        column = {"xx": 0, "yy": 1, "xy": 2}[family]
        if family != "xy" and rows_i == rows_j:
            if self.kernels[p] == "rbf":
                np.fill_diagonal(tile, 1.0)  # exactly, as the in-memory Gram has it
            state.sums[p, column + 3] = np.trace(tile)
        weight = 2.0 if family != "xy" and rows_i != rows_j else 1.0
        state.sums[p, column] = weight * tile.sum()
        return state


class FeatureTask(RowTask):
    """Second moments of random features (RFF or Nyström) of row ranges: unit = (start, stop).

    ``maps[m].transform`` gives representation m's features; the state feeds
    `repalign.approx.approximate_products`. Its work is a SYRK per row block, as in
    `MomentTask` (``blas_bound``).
    """

    blas_bound = True

    def __init__(self, store, names, maps):
        super().__init__(store, names)
        self.maps = maps

    def accumulate(self, blocks):
        state = GramState([m.n_features for m in self.maps])
        for rows in row_slices(len(blocks[0]), state.width):
            state.add_block([m.transform(b[rows]) for m, b in zip(self.maps, blocks, strict=True)])
        return state


@dataclass
class EmbeddingPairs:
    """Random-feature mean embeddings of the two samples of each MMD² pair: {p: (x, y)}."""

    embeddings: dict

    def __add__(self, other):
        merged = dict(self.embeddings)
        for p, (x, y) in other.embeddings.items():
            merged[p] = (merged[p][0] + x, merged[p][1] + y) if p in merged else (x, y)
        return EmbeddingPairs(merged)


class EmbeddingTask:
    """Mean embeddings for MMD² pairs ``(x, y)`` of (store, name) references, one RFF map per
    pair: unit = (p, (start, stop)); a sample with fewer rows contributes the rows it has."""

    def __init__(self, pairs, maps, rows):
        self.pairs, self.maps, self.row_counts = pairs, maps, rows
        self._stores = {}

    def __getstate__(self):
        return {**self.__dict__, "_stores": {}}

    def rows(self, unit):
        return unit[1][1] - unit[1][0]

    def reads(self, unit):
        p, (start, stop) = unit
        counts = self.row_counts[p]
        pairs = zip(self.pairs[p], counts, strict=True)
        return [(reference, start, min(stop, count)) for reference, count in pairs if start < count]

    def compute(self, unit):
        from repalign.approx import MeanEmbedding

        p, (start, stop) = unit
        feature_map = self.maps[p]
        embeddings = []
        for reference, count in zip(self.pairs[p], self.row_counts[p], strict=True):
            embedding = MeanEmbedding(feature_map.n_features, feature_map.blocks)
            if start < count:
                store, name = reference
                if store not in self._stores:
                    self._stores[store] = open_store(store)
                rows = self._stores[store][name].read_values(start, min(stop, count))
                embedding.add(feature_map.transform(rows))
            embeddings.append(embedding)
        return EmbeddingPairs({p: tuple(embeddings)})
