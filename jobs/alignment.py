"""The all-pairs alignment job: every measure of a spec, for every pair of representations.

The driver plans passes over the store and Ray actors run them (`jobs.engine`), each actor
reading its own rows (design.md §4):

- moments: one `GramState` over all the representations, from which every linear measure
  (KA, CKA, HSIC, Procrustes, CCA, SVCCA) of every pair comes. When the D×D statistic is too
  large for one actor it is cut into tiles of groups of representations.
- rbf: exact RBF kernel measures from b×b tiles of every Gram matrix at once (O(M·b²) memory).
  Exact RBF KA also gets the interval of `repalign.bounds.lemma1_interval` (Lemma 1 of
  Insulla et al., made rigorous in paper-spec §3 (b)) in the columns ``lower`` and ``upper``.
- neighbors: exact top-k cosine neighbours, for mutual k-NN and CKNNA.
- mmd: two-sample MMD² between representations of equal width (or against another store).

A representation that cannot be measured (NaN or Inf rows, constant, zero-norm rows for k-NN)
has its pairs recorded as missing with the reason; the rest of the matrix is computed.
"""

import functools
import hashlib
import json
import pickle
import shutil
import time
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray

from jobs.engine import run_units, start_ray
from jobs.outputs import write_table_and_summary
from jobs.tasks import (
    EmbeddingTask,
    FeatureTask,
    MmdTileTask,
    MomentTask,
    NeighborTask,
    RangeTask,
    RbfTileTask,
)
from repalign.approx import (
    Nystrom,
    RandomFourierFeatures,
    approximate_mmd2,
    approximate_products,
    sample_landmarks,
)
from repalign.blocks import block_rows
from repalign.bounds import lemma1_interval
from repalign.contract import RESULT_FILES, atomic_write
from repalign.errors import MisalignedError, RepalignError
from repalign.measures.alignment import kernel_measure
from repalign.measures.cca import cca_from_spectra, svcca_from_spectra
from repalign.measures.kernel_products import FeatureProducts
from repalign.measures.kernels import MEDIAN_MAX_ROWS, MEDIAN_SEED, resolve_sigma
from repalign.measures.neighbors import cknna_from_neighbors, mutual_knn_from_neighbors
from repalign.measures.procrustes import procrustes_from_spectra
from repalign.measures.spectra import feature_spectra, principal_axes
from repalign.stats import GramState
from repalign.store import open_store

UNIT_BYTES = 64 * 2**20
"""Float32 bytes of all representations that one unit of a row pass reads."""
STATE_BYTES = 2 * 2**30
"""Largest second-moment state one actor holds; beyond it the statistic is tiled."""
TILE_ROWS = 1024
"""Rows on each side of an exact-kernel tile."""
CHECKPOINT_SECONDS = 30.0
"""Each actor saves its partial state at most this often, under OUT/.checkpoints; a job run
again after a crash resumes from there."""
PILOT_ROWS = 1024
"""Rows whose mean is the shift of the second moments (it only conditions the sums)."""
LEMMA1_DELTA = 0.05
"""Failure probability of the Lemma 1 interval given with each exact RBF KA (|K| ≤ 1)."""

MOMENT_MEASURES = ("ka", "cka", "hsic", "procrustes", "cca", "svcca")
NEIGHBOR_MEASURES = ("mutual_knn", "cknna")
COLUMNS = [
    ("rep_a", pa.string()),
    ("rep_b", pa.string()),
    ("measure", pa.string()),
    ("kernel", pa.string()),
    ("estimator", pa.string()),
    ("value", pa.float64()),
    ("n", pa.int64()),
    ("std_err", pa.float64()),
    ("lower", pa.float64()),  # the Lemma 1 interval of exact RBF KA; null for other rows
    ("upper", pa.float64()),
    ("status", pa.string()),
    ("reason", pa.string()),
]


@dataclass
class AlignmentResult:
    """The long-form table of a job, its summary, the parameters it ran with, and the state
    an incremental run can start from."""

    table: pa.Table
    summary: dict
    params: dict
    state: dict | None = None
    timings: dict = field(default_factory=dict)


def run_alignment(
    spec, *, ray_address=None, quiet=False, incremental_from=None, state_bytes=STATE_BYTES
):
    """Run an `repalign.spec.AlignmentSpec`; returns an `AlignmentResult`.

    ``ray_address`` (or ``RAY_ADDRESS``) joins a running cluster; otherwise a local Ray is
    started with the machine's CPUs. ``incremental_from`` is the output folder of an earlier
    run of the same store: its saved second moments are reused, and only the blocks of the
    statistic that involve new representations are computed.
    """
    started = time.perf_counter()
    store = open_store(spec.store)
    names = store.select(spec.representations)
    if not store.aligned(names):
        raise MisalignedError(
            f"the representations of {spec.store} are not aligned on sample_id; run "
            "`repalign align` first to write an aligned copy."
        )
    n = store[names[0]].rows
    start_ray(ray_address)
    actors = spec.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    previous = _previous_state(incremental_from, store, names) if incremental_from else None
    if previous is not None:  # old representations first, in the saved order
        names = previous["names"] + [name for name in names if name not in previous["names"]]
    job = _Job(spec, store, names, n, actors, quiet, state_bytes, previous)
    job.run()
    shutil.rmtree(job.checkpoints, ignore_errors=True)  # every pass is done
    params = {
        "store": str(Path(spec.store).resolve()),
        "representations": names,
        "measures": [m.model_dump() for m in spec.measures],
        "n": n,
        "actors": actors,
        "median_sigma": {"max_rows": MEDIAN_MAX_ROWS, "seed": MEDIAN_SEED},
    }
    table = job.table()
    missing = {name: reason for name, reason in job.unusable.items() if reason}
    summary = {
        "representations": len(names),
        "pairs": len(names) * (len(names) + 1) // 2,
        "configurations": [m.label for m in spec.measures],
        "n": n,
        "missing_representations": missing,
        "missing_values": int(sum(s != "ok" for s in table.column("status").to_pylist())),
        "blocks_computed": job.blocks_computed,
        "actor_replays": job.replays,
        "units_resumed": job.resumed,
        "nodes": sorted(job.nodes),
        "seconds": round(time.perf_counter() - started, 3),
        "pass_seconds": job.timings,
        "lemma1": {
            "delta": LEMMA1_DELTA,
            "intervals": len(job.intervals),
            "vacuous": sum(interval.vacuous for interval in job.intervals.values()),
        },
    }
    return AlignmentResult(table, summary, params, job.saved_state(), job.timings)


def write_result(result, out):
    """Write ``alignment.parquet`` and ``summary.json`` into ``out`` (atomically each)."""
    summary = {**result.summary, "params": result.params}
    path = write_table_and_summary(out, RESULT_FILES["alignment"], result.table, summary)
    if result.state is not None:
        _save_state(result.state, Path(out) / "state")
    return path


def _save_state(state, folder):
    """The second moments and the manifests' digests of a run, for incremental runs."""
    folder.mkdir(exist_ok=True)
    moments = state["moments"]
    with atomic_write(folder / "moments.npz") as temporary:
        np.savez(
            temporary,
            names=np.array(state["names"]),
            dims=np.array(moments.dims),
            shifts=np.concatenate(moments.shifts),
            moments=moments.moments,
        )
    (folder / "representations.json").write_text(json.dumps(state["digests"], indent=2))


def _previous_state(path, store, names):
    """The saved state of an earlier run, checked against the store as it is now."""
    folder = Path(path) / "state"
    try:
        saved = np.load(folder / "moments.npz")
        digests = json.loads((folder / "representations.json").read_text())
    except OSError as exc:
        raise RepalignError(
            f"{path} holds no saved state of an earlier run ({exc.strerror}); run the job in "
            "full first, with a linear-kernel measure, so that its second moments are saved."
        ) from None
    old = [str(name) for name in saved["names"]]
    for name in old:
        if name not in names:
            raise RepalignError(f"{name} of the earlier run is not selected in {store.path}.")
        if representation_digest(store[name]) != digests.get(name):
            raise RepalignError(
                f"{name} changed since the earlier run ({path}); its pairs must be recomputed: "
                "run the job in full."
            )
    dims = [int(d) for d in saved["dims"]]
    shifts = np.split(saved["shifts"], np.cumsum(dims)[:-1])
    return {"names": old, "moments": GramState.from_moments(dims, shifts, saved["moments"])}


def representation_digest(representation):
    """What identifies a representation's content: its ids' sha256 and its shards' sha256s."""
    return {
        "ids_sha256": representation.manifest.get("ids_sha256"),
        "shards": [shard["sha256"] for shard in representation.shards],
    }


class _Job:
    def __init__(self, spec, store, names, n, actors, quiet, state_bytes, previous):
        self.spec, self.store, self.names, self.n = spec, store, names, n
        self.actors, self.quiet, self.state_bytes = actors, quiet, state_bytes
        self.previous = previous
        self.moments = None  # (names, GramState) when the statistic fits one state
        self.values = {}  # (label, a, b) -> (value, std_err, reason)
        self.intervals = {}  # (label, a, b) -> KAInterval, for exact RBF KA
        self.unusable = {name: _manifest_problem(store[name]) for name in names}
        self.constant = {}  # name -> reason; moments find them, else a pass of column ranges
        self.blocks_computed = 0
        self.replays = 0
        self.resumed = 0
        self.nodes = set()  # Ray node ids of the actors whose states made the statistics
        self.checkpoints = Path(spec.out) / ".checkpoints"
        self.timings = {}

    def _units(self, task, units, description):
        """Run ``units`` of ``task`` on the job's actors, counting replays of dead actors."""
        key = hashlib.sha256(pickle.dumps((task, units, self.actors))).hexdigest()[:16]
        state, replays, resumed, nodes = run_units(
            task,
            units,
            actors=self.actors,
            description=description,
            quiet=self.quiet,
            checkpoints=self.checkpoints / key,
            checkpoint_seconds=CHECKPOINT_SECONDS,
        )
        self.replays += replays
        self.resumed += resumed
        self.nodes.update(nodes)
        return state

    def saved_state(self):
        if self.moments is None:
            return None
        names, state = self.moments
        digests = {name: representation_digest(self.store[name]) for name in names}
        return {"names": names, "moments": state, "digests": digests}

    def usable(self):
        """Representations every measure can use: finite and not constant."""
        return [n for n in self.names if not self.unusable[n] and n not in self.constant]

    def _reason(self, config, a, b):
        """Why the pair (a, b) has no value under ``config`` before anything is computed."""
        for name in (a, b):
            if self.unusable[name]:
                return self.unusable[name]
            if name in self.constant and config.name != "mmd2":  # a point mass has an MMD
                return self.constant[name]
        return ""

    def _find_constants(self):
        """Constant representations, from one cheap pass of column ranges."""
        names = [n for n in self.names if not self.unusable[n]]
        task = RangeTask(self.store.path, names)
        ranges = self._units(task, self.row_units(names), description="column ranges")
        for name, constant in zip(names, ranges.constant(), strict=True):
            if constant:
                self.constant[name] = f"{name} is constant (zero variance)"

    def run(self):
        measures = self.spec.measures
        passes = [
            (
                "moments",
                [m for m in measures if m.name in MOMENT_MEASURES and m.kernel == "linear"],
            ),
            (
                "rbf",
                [
                    m
                    for m in measures
                    if m.kernel == "rbf" and m.name in MOMENT_MEASURES and m.approx == "none"
                ],
            ),
            ("features", [m for m in measures if m.approx != "none" and m.name != "mmd2"]),
            ("neighbors", [m for m in measures if m.name in NEIGHBOR_MEASURES]),
            ("mmd", [m for m in measures if m.name == "mmd2"]),
        ]
        needs_ranges = not passes[0][1] and any(m.name != "mmd2" for m in measures)
        if needs_ranges and self.usable():
            self._find_constants()
        for name, configs in passes:
            if configs:
                started = time.perf_counter()
                getattr(self, f"_{name}")(configs)
                self.timings[name] = round(time.perf_counter() - started, 3)

    def row_units(self, names, width=None):
        width = width or sum(self.store[name].dim for name in names) or 1
        rows = unit_rows(width, len(names))
        return [(start, min(start + rows, self.n)) for start in range(0, self.n, rows)]

    def pilot_shifts(self, names):
        return [_pilot_mean(self.store[name]) for name in names]

    # -- passes -----------------------------------------------------------------------------

    def _moments(self, configs):
        names = self.usable()
        if not names:
            return
        tiles = self._tiles(names)
        if self.previous is not None:
            tiles = [(names, names)]
        for group_a, group_b in tiles:
            members = group_a if group_a == group_b else group_a + group_b
            state, computed = self._moment_state(members)
            index = {name: i for i, name in enumerate(members)}
            pairs = [(a, b) for a in group_a for b in group_b if group_a != group_b]
            if group_a == group_b:
                pairs = list(combinations_with_replacement(group_a, 2))
                self.moments = (members, state) if len(tiles) == 1 else None
            self.blocks_computed += computed if computed is not None else len(pairs)
            for name in members:
                if _is_constant(state, index[name]):
                    self.constant[name] = f"{name} is constant (zero variance)"
            axes = functools.cache(functools.partial(principal_axes, state))
            for a, b in pairs:
                for config in configs:
                    self._record(
                        config, a, b, _moment_measure, config, state, index[a], index[b], axes
                    )

    def _moment_state(self, members):
        """The second moments of ``members``, and how many pair blocks were computed for it
        (None: all of them). With a saved state, only the blocks of new representations."""
        previous = self.previous
        if previous is None or not set(previous["names"]) <= set(members):
            shifts = self.pilot_shifts(members)
            task = MomentTask(self.store.path, members, shifts)
            description = f"moments ({len(members)} representations)"
            state = self._units(task, self.row_units(members), description=description)
            return state, None
        old = previous["names"]
        new = members[len(old) :]
        if not new:
            return previous["moments"], 0
        shifts = list(previous["moments"].shifts) + self.pilot_shifts(new)
        task = MomentTask(self.store.path, members, shifts, first_new=len(old))
        border = self._units(
            task, self.row_units(members), description=f"moments of {len(new)} new representations"
        )
        computed = len(new) * len(old) + len(new) * (len(new) + 1) // 2
        return previous["moments"].extended(border), computed

    def _tiles(self, names):
        """Groups of representations whose pairwise states each fit in ``state_bytes``."""
        widths = [self.store[name].dim + 1 for name in names]
        if (sum(widths) + 1) ** 2 * 8 <= self.state_bytes:
            return [(names, names)]
        budget = int(np.sqrt(self.state_bytes / 8)) // 2
        groups, current, width = [], [], 0
        for name, w in zip(names, widths, strict=True):
            if current and width + w > budget:
                groups.append(current)
                current, width = [], 0
            current.append(name)
            width += w
        groups.append(current)
        return [(groups[g], groups[h]) for g in range(len(groups)) for h in range(g, len(groups))]

    def _rbf(self, configs):
        names = self.usable()
        for sigma_choice in sorted({c.sigma for c in configs}, key=str):
            chosen = [c for c in configs if c.sigma == sigma_choice]
            sigmas = {}
            for name in names:
                try:
                    sigmas[name] = resolve_sigma(self._median_sample(name), sigma_choice, name=name)
                except RepalignError as exc:
                    self._fail(chosen, name, str(exc))
            ok = [name for name in names if name in sigmas]
            if not ok:
                continue
            task = RbfTileTask(
                self.store.path, ok, [sigmas[m] for m in ok], self.pilot_shifts(ok), self.n
            )
            blocks = [(s, min(s + TILE_ROWS, self.n)) for s in range(0, self.n, TILE_ROWS)]
            units = [
                (blocks[i], blocks[j]) for i in range(len(blocks)) for j in range(i, len(blocks))
            ]
            state = self._units(task, units, description="rbf tiles")
            index = {name: i for i, name in enumerate(ok)}
            for a, b in combinations_with_replacement(ok, 2):
                products = state.products(index[a], index[b])
                for config in chosen:
                    self._record(
                        config, a, b, kernel_measure, products, config.name, config.estimator
                    )
                    if config.name == "ka" and self.values[config.label, a, b][2] == "":
                        self.intervals[config.label, a, b] = _lemma1_interval(products, self.n)

    def _features(self, configs):
        """RBF measures through random features: each configuration's own maps and pass."""
        names = self.usable()
        for config in configs:
            sigmas, maps = {}, {}
            landmarks = None
            if config.approx == "nystrom":
                landmarks = sample_landmarks(self.n, min(config.features, self.n), config.seed)
            for name in names:
                try:
                    sigma = resolve_sigma(self._median_sample(name), config.sigma, name=name)
                except RepalignError as exc:
                    self._fail([config], name, str(exc))
                    continue
                sigmas[name] = sigma
                if config.approx == "rff":
                    maps[name] = RandomFourierFeatures(
                        self.store[name].dim, config.features, sigma, seed=config.seed
                    )
                else:
                    maps[name] = Nystrom(_gather(self.store[name], landmarks), sigma)
            ok = list(maps)
            if not ok:
                continue
            task = FeatureTask(self.store.path, ok, [maps[name] for name in ok])
            units = self.row_units(ok, width=sum(maps[name].n_features for name in ok))
            state = self._units(task, units, description=f"{config.approx} features")
            index = {name: i for i, name in enumerate(ok)}
            for a, b in combinations_with_replacement(ok, 2):
                self._record(config, a, b, _approximate_measure, config, state, index, maps, a, b)

    def _neighbors(self, configs):
        names = self.usable()
        k = max(c.k for c in configs)
        if k > self.n - 1:
            for config in configs:
                for a, b in combinations_with_replacement(self.names, 2):
                    self.values[config.label, a, b] = (
                        None,
                        None,
                        f"k={config.k} must be below n={self.n}",
                    )
            return
        rows = max(64, min(4096, 2**27 // (8 * self.n)))
        units = [(s, min(s + rows, self.n)) for s in range(0, self.n, rows)]
        task = NeighborTask(self.store.path, names, k, self.n, reference_rows=max(rows, 4096))
        state = self._units(task, units, description="neighbours")
        found = {}
        for name in names:
            if name in state.failures:
                self._fail(configs, name, state.failures[name])
            else:
                found[name] = state.neighbors(name)
        for a, b in combinations_with_replacement(list(found), 2):
            for config in configs:
                nx = tuple(part[:, : config.k] for part in found[a])
                ny = tuple(part[:, : config.k] for part in found[b])
                if config.name == "mutual_knn":
                    self._record(config, a, b, mutual_knn_from_neighbors, nx[0], ny[0])
                else:
                    self._record(config, a, b, cknna_from_neighbors, nx, ny)

    def _mmd(self, configs):
        for config in configs:
            pairs, labels = self._mmd_pairs(config)
            if not pairs:
                continue
            sigmas = [
                self._pooled_sigma(config, x, y) if config.kernel == "rbf" else None
                for x, y in pairs
            ]
            rows = [(open_store(x[0])[x[1]].rows, open_store(y[0])[y[1]].rows) for x, y in pairs]
            if config.approx == "rff":
                self._mmd_features(config, pairs, labels, sigmas, rows)
                continue
            shifts = [_pilot_mean(open_store(x[0])[x[1]]) for x, _ in pairs]
            task = MmdTileTask(pairs, [config.kernel] * len(pairs), sigmas, shifts, rows)
            units = []
            for p, (m, n) in enumerate(rows):
                if config.estimator == "linear":
                    step = 2 * (TILE_ROWS // 2)
                    units += [(p, "linear", (s, min(s + step, m)), None) for s in range(0, m, step)]
                    continue
                bx = [(s, min(s + TILE_ROWS, m)) for s in range(0, m, TILE_ROWS)]
                by = [(s, min(s + TILE_ROWS, n)) for s in range(0, n, TILE_ROWS)]
                units += [
                    (p, "xx", bx[i], bx[j]) for i in range(len(bx)) for j in range(i, len(bx))
                ]
                units += [
                    (p, "yy", by[i], by[j]) for i in range(len(by)) for j in range(i, len(by))
                ]
                units += [(p, "xy", a, b) for a in bx for b in by]
            state = self._units(task, units, description="mmd tiles")
            for p, (a, b) in enumerate(labels):
                m, n = rows[p]
                self._record(config, a, b, _mmd_value, config, state, p, m, n)

    def _mmd_features(self, config, pairs, labels, sigmas, rows):
        """MMD² as the distance of random-feature mean embeddings (a mergeable sum)."""
        maps = [
            RandomFourierFeatures(
                open_store(x[0])[x[1]].dim, config.features, sigma, seed=config.seed
            )
            for (x, _), sigma in zip(pairs, sigmas, strict=True)
        ]
        step = max(256, UNIT_BYTES // (8 * config.features))
        units = [
            (p, (s, min(s + step, max(m, n))))
            for p, (m, n) in enumerate(rows)
            for s in range(0, max(m, n), step)
        ]
        state = self._units(EmbeddingTask(pairs, maps, rows), units, description="mmd features")
        for p, (a, b) in enumerate(labels):
            x, y = state.embeddings[p]
            self._record(config, a, b, _approximate_mmd, x, y, config.estimator)

    def _mmd_pairs(self, config):
        """((store, name) of x, of y) and (rep_a, rep_b) labels of the pairs MMD² applies to."""
        here = str(self.store.path)
        names = [name for name in self.names if not self.unusable[name]]  # constants allowed
        if config.against is not None:
            other = open_store(config.against)
            common = [name for name in names if name in other.representations]
            for name in set(self.names) - set(common):
                self.values[config.label, name, name] = (
                    None,
                    None,
                    f"{name} is not in {config.against}",
                )
            return [((here, nm), (str(other.path), nm)) for nm in common], [
                (nm, nm) for nm in common
            ]
        pairs, labels = [], []
        for a, b in combinations_with_replacement(self.names, 2):
            if self.store[a].dim != self.store[b].dim:
                reason = (
                    f"different widths ({self.store[a].dim} and {self.store[b].dim}): "
                    "MMD² compares samples of one space"
                )
                self.values[config.label, a, b] = (None, None, reason)
            elif a in names and b in names:
                pairs.append(((here, a), (here, b)))
                labels.append((a, b))
        return pairs, labels

    def _pooled_sigma(self, config, x, y):
        if config.sigma != "median":
            return config.sigma
        m, n = open_store(x[0])[x[1]].rows, open_store(y[0])[y[1]].rows
        chosen = np.arange(m + n)
        if m + n > MEDIAN_MAX_ROWS:
            chosen = np.sort(
                np.random.default_rng(MEDIAN_SEED).choice(m + n, MEDIAN_MAX_ROWS, replace=False)
            )
        rows = np.concatenate(
            [
                _gather(open_store(x[0])[x[1]], chosen[chosen < m]),
                _gather(open_store(y[0])[y[1]], chosen[chosen >= m] - m),
            ]
        )
        return resolve_sigma(rows, "median", name=f"the pooled sample of {x[1]} and {y[1]}")

    def _median_sample(self, name):
        """The rows the library's median heuristic would use (seeded subsample if n is large)."""
        representation = self.store[name]
        if self.n <= MEDIAN_MAX_ROWS:
            return representation.read_rows(0, self.n)[1]
        chosen = np.sort(
            np.random.default_rng(MEDIAN_SEED).choice(self.n, MEDIAN_MAX_ROWS, replace=False)
        )
        return _gather(representation, chosen)

    # -- results ----------------------------------------------------------------------------

    def _record(self, config, a, b, function, *args):
        reason = self._reason(config, a, b)
        if reason:
            self.values[config.label, a, b] = (None, None, reason)
            return
        try:
            value = function(*args)
        except RepalignError as exc:
            self.values[config.label, a, b] = (None, None, str(exc))
            return
        std_err = None
        if isinstance(value, tuple):
            value, std_err = value
        if not np.isfinite(value):
            self.values[config.label, a, b] = (None, None, "the value is not finite")
        else:
            self.values[config.label, a, b] = (float(value), std_err, "")

    def _fail(self, configs, name, reason):
        """Record every pair of ``name`` as missing (pairs of unusable representations keep
        their own reason)."""
        for config in configs:
            for other in self.usable():
                a, b = sorted((name, other), key=self.names.index)
                self.values[config.label, a, b] = (None, None, reason)

    def table(self):
        rows = {column: [] for column, _ in COLUMNS}
        for config in self.spec.measures:
            pairs = list(combinations_with_replacement(self.names, 2))
            if config.against is not None:
                pairs = [(name, name) for name in self.names]
            for a, b in pairs:
                value, std_err, reason = self.values.get(
                    (config.label, a, b),
                    (None, None, self._reason(config, a, b) or "not computed"),
                )
                interval = self.intervals.get((config.label, a, b))
                for column, item in zip(
                    [c for c, _ in COLUMNS],
                    [
                        a,
                        b,
                        config.name,
                        config.kernel,
                        config.estimator or "",
                        value,
                        self.n,
                        std_err,
                        None if interval is None else interval.lower,
                        None if interval is None else interval.upper,
                        "ok" if reason == "" else "missing",
                        reason,
                    ],
                    strict=True,
                ):
                    rows[column].append(item)
        return pa.table({c: pa.array(rows[c], type=t) for c, t in COLUMNS})


def unit_rows(width, representations):
    """Rows of one unit of work: ``UNIT_BYTES`` of float32 rows of total ``width``, cut down to
    whole blocks of the moment statistic (``width`` + a norm per representation + 1 columns),
    so that no unit ends in a short SYRK that still streams the whole D×D state."""
    rows = max(256, UNIT_BYTES // (4 * width))
    block = block_rows(width + representations + 1)
    return rows - rows % block if rows > block else rows


def _pilot_mean(representation):
    """Mean of the first rows: a shift that keeps sums of products well conditioned."""
    rows = representation.read_rows(0, min(PILOT_ROWS, representation.rows))[1]
    return rows.astype(np.float64).mean(axis=0)


def _manifest_problem(representation):
    bad = int(representation.manifest.get("non_finite_rows", 0))
    if bad:
        return f"{representation.name} holds NaN or Inf in {bad} rows"
    return ""


def _is_constant(state, i):
    moments = state.pair(i, i, center=True)
    return not np.trace(moments.cross(0, 0)) > 0


def _moment_measure(config, state, i, j, axes):
    if config.name in ("ka", "cka", "hsic"):
        return kernel_measure(FeatureProducts(state, i, j), config.name, config.estimator)
    spectra = feature_spectra(state, i, j, axes)
    if config.name == "procrustes":
        return procrustes_from_spectra(spectra)
    if config.name == "cca":
        return cca_from_spectra(spectra, squared=config.squared)
    return svcca_from_spectra(spectra, variance=config.variance)


def _lemma1_interval(products, n):
    """`repalign.bounds.lemma1_interval` from the exact products ⟨K, L⟩, ⟨K, K⟩, ⟨L, L⟩ of two
    RBF kernels (bounded by 1), on the (1/n²) scale of the V-statistics."""
    a, b, c = (products.raw(r, s) / n**2 for r, s in ((0, 1), (0, 0), (1, 1)))
    return lemma1_interval(a, b, c, n, delta=LEMMA1_DELTA)


def _approximate_measure(config, state, index, maps, a, b):
    products = approximate_products(state, index[a], index[b], maps[a], maps[b])
    estimate = getattr(products, config.name)
    return estimate.value, estimate.std_err


def _approximate_mmd(x, y, estimator):
    estimate = approximate_mmd2(x, y, estimator=estimator)
    return estimate.value, estimate.std_err


def _mmd_value(config, state, p, m, n):
    if config.estimator == "linear":
        return state.linear[p] / (m // 2)
    xx, yy, xy, trace_x, trace_y = state.sums[p]
    if config.estimator == "biased":
        return xx / m**2 + yy / n**2 - 2 * xy / (m * n)
    within_x = (xx - trace_x) / (m * (m - 1))
    return within_x + (yy - trace_y) / (n * (n - 1)) - 2 * xy / (m * n)


def _gather(representation, rows):
    """The given (sorted) rows of a representation, read block by block."""
    parts, step = [], 65536
    for start in range(0, representation.rows, step):
        inside = rows[(rows >= start) & (rows < start + step)]
        if len(inside):
            block = representation.read_rows(start, min(start + step, representation.rows))[1]
            parts.append(block[inside - start])
    return np.concatenate(parts) if parts else np.empty((0, representation.dim), np.float32)
