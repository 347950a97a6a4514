"""The all-pairs alignment job: every measure of a spec, for every pair of representations.

The driver plans passes over the store and slots run them (`jobs.engine`): in this process for
a small job, else on Ray actors (`choose_executor`); each slot reads its own rows
(docs/design.md §4). Each measure configuration is computed by the pass that
`repalign.registry` names for it, one module of `jobs.passes` each: ``moments`` (every
linear-kernel measure), ``rbf`` (exact RBF kernels, with the Lemma 1 interval of KA in the
columns ``lower`` and ``upper``), ``features`` (random features), ``neighbors`` (k-NN measures)
and ``mmd``.

A representation that cannot be measured (NaN or Inf rows, constant, zero-norm rows for k-NN)
has its pairs recorded as missing with the reason; the rest of the matrix is computed.
"""

import hashlib
import json
import os
import pickle
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobs.engine import forced_executor, machine_cpus, owned_units, run_units, slot_units
from jobs.outputs import write_table_and_summary
from jobs.passes import features, mmd, moments, neighbors, rbf
from jobs.passes.rows import median_sample, unit_rows, whole_row_groups
from jobs.permutations import permutation_null
from repalign.contract import RESULT_FILES
from repalign.errors import RepalignError
from repalign.measures.kernels import MEDIAN_MAX_ROWS, MEDIAN_SEED, resolve_sigma
from repalign.measures.permutation import UNPAIRED
from repalign.preflight import machine_memory
from repalign.registry import MEASURES, PASSES, pass_of
from repalign.results import Values
from repalign.stats import GramState, default_tile_bytes
from repalign.store import open_store
from repalign.store.format import row_group_rows

CHECKPOINT_SECONDS = 30.0
"""Each actor saves its partial state at most this often, under OUT/.checkpoints; a job run
again after a crash resumes from there."""
RUNS = {
    "moments": moments.run,
    "rbf": rbf.run,
    "features": features.run,
    "neighbors": neighbors.run,
    "mmd": mmd.run,
}
"""The pass of each name of `repalign.registry.PASSES`."""
LOCAL_MAX_WORK = 3e9
"""Above this many element-wise operations (`elementwise_work`; about 10 s of one core's work), a
job with no Ray cluster starts a local Ray: its slots then hold no GIL between numpy calls (the
per-tile and top-k bookkeeping), and an actor that dies is replayed alone, for the cost of
Ray's start (about 5 s on 2 cores). Below, its slots are threads of this process."""


@dataclass
class AlignmentResult:
    """The long-form table of a job, its summary, the parameters it ran with, and the state
    an incremental run can start from."""

    table: pa.Table
    summary: dict
    params: dict
    state: dict | None = None
    timings: dict = field(default_factory=dict)


def run_alignment(spec, *, ray_address=None, quiet=False, incremental_from=None):
    """Run an `repalign.spec.AlignmentSpec`; returns an `AlignmentResult`.

    The passes run in this process or on Ray as `choose_executor` says: ``ray_address`` (or
    ``RAY_ADDRESS``) is a cluster to join; with none, a job that needs Ray starts a local one
    with the machine's CPUs. ``incremental_from`` is the output folder of an earlier
    run of the same store: its saved second moments are reused, and only the blocks of the
    statistic that involve new representations are computed.
    """
    started = time.perf_counter()
    store = open_store(spec.store)
    names = store.select(spec.representations)
    store.check_aligned(names)
    n = store[names[0]].rows
    dims = [store[name].dim for name in names]
    executor, executor_reason = choose_executor(spec, n, dims, ray_address)
    if executor == "ray":
        from jobs.ray_slots import cluster_cpus, memory_per_cpu, start_ray

        start_ray(ray_address)
        actors = spec.actors or cluster_cpus()
        memory = memory_per_cpu()
    else:
        actors = spec.actors or machine_cpus()
        memory = machine_memory() // machine_cpus()
    tile_bytes = spec.tile_bytes or default_tile_bytes(memory)
    previous = _previous_state(incremental_from, store, names) if incremental_from else None
    if previous is not None:  # old representations first, in the saved order
        names = previous["names"] + [name for name in names if name not in previous["names"]]
    job = Job(spec, store, names, n, executor, actors, quiet, tile_bytes, previous)
    job.run()
    if spec.null == "permutation":
        permutation_null(job)
    shutil.rmtree(job.checkpoints, ignore_errors=True)  # every pass is done
    params = {
        "store": str(Path(spec.store).resolve()),
        "representations": names,
        "measures": [m.model_dump() for m in spec.measures],
        "n": n,
        "executor": executor,
        "actors": actors,
        "precision": spec.precision,
        "null": spec.null,
        **({"permutations": spec.permutations} if spec.null == "permutation" else {}),
        "tile_bytes": tile_bytes,
        "median_sigma": {"max_rows": MEDIAN_MAX_ROWS, "seed": MEDIAN_SEED},
    }
    table = job.values.table(spec.measures, n)
    missing = {name: reason for name, reason in job.values.unusable.items() if reason}
    summary = {
        "representations": len(names),
        "pairs": len(names) * (len(names) + 1) // 2,
        "configurations": [m.label for m in spec.measures],
        "n": n,
        "missing_representations": missing,
        # no value for the measures a constant is undefined for (MMD² has one)
        "constant_representations": dict(job.values.constant),
        "missing_values": int(sum(s != "ok" for s in table.column("status").to_pylist())),
        "executor": executor,
        "executor_reason": executor_reason,
        "slots": actors,
        "blocks_computed": job.blocks_computed,
        "actor_replays": job.replays,
        "units_resumed": job.resumed,
        "nodes": sorted(job.nodes),
        "seconds": round(time.perf_counter() - started, 3),
        "pass_seconds": job.timings,
        "reads_per_row": job.reads_per_row(),
        **job.traffic(),
        "lemma1": {
            "delta": rbf.LEMMA1_DELTA,
            "intervals": len(job.values.intervals),
            "vacuous": sum(interval.vacuous for interval in job.values.intervals.values()),
        },
    }
    return AlignmentResult(table, summary, params, job.saved_state(), job.timings)


def choose_executor(spec, n, dims, ray_address=None):
    """Where a job's passes run, ``"local"`` (this process) or ``"ray"``, and why, in words.

    The rule (docs/design.md §4, "Executors"): the spec's ``executor`` when it names one; Ray
    when there is a cluster to use (``ray_address``, ``RAY_ADDRESS``, or Ray already started
    in this process); else in this process unless the job's element-wise work
    (`elementwise_work`) exceeds `LOCAL_MAX_WORK`, when it starts a local Ray.
    """
    forced = forced_executor(spec.executor, ray_address)
    if forced is not None:
        return forced
    work = elementwise_work(spec.measures, n, dims)
    if work > LOCAL_MAX_WORK:
        return "ray", (
            f"{work:.2g} element-wise operations (over {LOCAL_MAX_WORK:.0e}): a local Ray, "
            "an actor per core"
        )
    return "local", (
        f"no Ray cluster, and {work:.2g} element-wise operations (at most "
        f"{LOCAL_MAX_WORK:.0e}): in this process, a thread per core"
    )


def elementwise_work(measures, n, dims):
    """An estimate of a job's operations that are not BLAS products, which set how long its
    slots run numpy's element-wise kernels and the Python between them. The moments pass is
    one SYRK per row block; the others, per pass used:

    - features: a cosine (RFF) or kernel entry (Nyström) per row and feature, M·n·F;
    - rbf: a distance and its exponential per pair of rows (the upper triangle), M·n²/2; the
      products of the M kernel tiles are a GEMM;
    - mmd: kernel entries of each same-width pair's three blocks, at most M²·n²;
    - neighbors: each row's similarities to every other row ranked, M·n².
    """
    m = len(dims)
    per_pass = {
        "moments": lambda configs: 0,
        "features": lambda configs: m * n * max(c.features for c in configs),
        "rbf": lambda configs: m * n * n / 2,
        "mmd": lambda configs: m * m * n * n,
        "neighbors": lambda configs: m * n * n,
    }
    chosen = {}
    for config in measures:
        chosen.setdefault(pass_of(config), []).append(config)
    return sum(per_pass[name](configs) for name, configs in chosen.items())


def write_result(result, out):
    """Write ``alignment.parquet`` and ``summary.json`` into ``out`` (atomically each)."""
    summary = {**result.summary, "params": result.params}
    path = write_table_and_summary(out, RESULT_FILES["alignment"], result.table, summary)
    if result.state is not None:
        _save_state(result.state, Path(out) / "state")
    return path


def _save_state(state, folder):
    """The second moments (written by the statistic's owner) and the manifests' digests of a
    run, for incremental runs."""
    folder.mkdir(exist_ok=True)
    written = Path(state["moments_file"])
    os.replace(written, folder / "moments.npz")
    written.parent.rmdir()
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


class Job:
    """One run of an alignment job: what its passes share (the store, the rows, the actors,
    the values found so far) and the counts its summary reports."""

    def __init__(self, spec, store, names, n, executor, slots, quiet, tile_bytes, previous):
        self.spec, self.store, self.names, self.n = spec, store, names, n
        self.executor, self.slots = executor, slots
        self.quiet, self.tile_bytes = quiet, tile_bytes
        self.previous = previous
        self.moments = None  # (names, its saved file) when the statistic fits one state
        # absolute: Ray workers write under it, from their own working folders
        out = Path(spec.out).resolve()
        self.saved_moments = out / ".state" / "moments.npz"
        problems = {name: store[name].unusable() for name in names}
        self.values = Values(names, problems, listed=sorted(names))  # the store's order
        self.blocks_computed = 0
        self.replays = 0
        self.resumed = 0
        self.nodes = set()  # Ray node ids of the actors whose states made the statistics (Ray)
        self.checkpoints = out / ".checkpoints"
        self.timings = {}
        self.passing = None  # the pass now running
        self.reads = {}  # pass -> the `RowReads` of its units
        self._pilot_means = {}
        self._sigmas = {}  # (name, choice) -> bandwidth
        self.feature_maps = {}  # configuration label -> {name: its feature map}
        self.permutation = None  # the draw of the permutation null this job runs, if one
        self.bytes_to_driver = 0  # array bytes of the states the driver took from Ray actors
        self.owners = self.cpus = None  # on Ray: where owners go, and each actor's CPUs
        if executor == "ray":
            from jobs.ray_slots import Owners, cpus_per_actor

            self.owners, self.cpus = Owners(), cpus_per_actor(slots)

    def run(self):
        """Run the passes the measures need, in the order of `repalign.registry.PASSES`."""
        chosen = {name: [] for name in PASSES}
        for config in self.spec.measures:
            chosen[pass_of(config)].append(config)
        needs_constants = any(not MEASURES[c.name].constants for c in self.spec.measures)
        constants_known = self.permutation is not None  # its unpermuted job found them
        if (
            not chosen["moments"]
            and needs_constants
            and self.values.usable()
            and not constants_known
        ):
            self.passing = "constants"
            moments.find_constants(self)
        for name, configs in chosen.items():
            if configs:
                started = time.perf_counter()
                self.passing = name
                RUNS[name](self, configs)
                self.timings[name] = round(time.perf_counter() - started, 3)

    def permuted(self, draw):
        """A job of this one's pairable measures (`repalign.measures.permutation.UNPAIRED` left
        out) on the ``draw``-th permutation of the rows, for the permutation null
        (`jobs.permutations`): values only, no null, no jackknife, nothing saved. It shares
        this job's slots, owners, pilot means, bandwidths, random Fourier feature maps and
        constant representations."""
        measures = [m for m in self.spec.measures if m.name not in UNPAIRED]
        spec = self.spec.model_copy(
            update={"measures": measures, "null": "none", "jackknife": None}
        )
        job = Job(spec, self.store, self.names, self.n, self.executor, self.slots, True,
                  self.tile_bytes, None)  # fmt: skip
        job.permutation, job.saved_moments = draw, None
        job.values.constant = dict(self.values.constant)
        job.owners, job.cpus = self.owners, self.cpus
        job._pilot_means, job._sigmas = self._pilot_means, self._sigmas
        # random Fourier maps are functions of one representation; Nyström's hold the rows of
        # the sample's landmarks and probes, which the draw re-pairs (`jobs.passes.features`)
        job.feature_maps = {
            m.label: self.feature_maps[m.label]
            for m in measures
            if m.approx == "rff" and m.label in self.feature_maps
        }
        return job

    def absorb(self, other):
        """Count in the work of ``other``, a `permuted` job that has run: its replays, resumed
        units, nodes and bytes to the driver (its reads and blocks are its own)."""
        self.replays += other.replays
        self.resumed += other.resumed
        self.nodes.update(other.nodes)
        self.bytes_to_driver += other.bytes_to_driver

    def traffic(self):
        """Bytes moved on Ray (none in process): ``bytes_to_driver``, the states and values
        the driver took; ``bytes_reduced``, the partial states the passes' owners added up;
        ``max_bytes_received_per_node``, the most bytes of them that one node received from
        other nodes (docs/design.md §4, "Owners")."""
        owners = self.owners
        return {
            "bytes_to_driver": self.bytes_to_driver + (owners.to_driver if owners else 0),
            "bytes_reduced": owners.reduced if owners else 0,
            "max_bytes_received_per_node": max(owners.received.values(), default=0)
            if owners
            else 0,
        }

    def reads_per_row(self):
        """For each pass, how many times it read each row it read, on average: the rows its
        units read (``task.reads``) over the distinct rows among them. The driver's own reads
        (pilot means, the median heuristic's sample) are not counted."""
        return {name: round(reads.per_row(), 3) for name, reads in self.reads.items()}

    def run_units(self, task, units, description):
        """Run ``units`` of ``task`` on the job's slots, counting replays of dead actors; the
        sum of their states comes to this process (`jobs.engine.run_units`)."""
        options = self.engine_options(task, units, description)
        del options["cpus"]  # the actors share the CPUs out themselves
        state, replays, resumed, nodes, received = run_units(task, units, **options)
        self.replays += replays
        self.resumed += resumed
        self.bytes_to_driver += received
        self.nodes.update(nodes)
        return state

    def owned_units(self, task, units, measure, options, bar):
        """Start ``units`` of ``task`` with ``options`` (`engine_options`), their sum
        measured by the pass's owner (`jobs.engine.owned_units`), rows counted on ``bar``;
        give its ``result()`` to `take_owned`. Passes may run side by side, in threads."""
        return owned_units(task, units, measure, owners=self.owners, bar=bar, **options)

    def take_owned(self, result):
        """Take in the `jobs.engine.OwnedResult` of an owned pass (`owned_units`)."""
        value, replays, resumed, nodes = result
        self.replays += replays
        self.resumed += resumed
        self.nodes.update(nodes)
        self.values.merge(value)

    def engine_options(self, task, units, description, slots=None):
        """How `jobs.engine` runs a pass: its ``slots`` (default: the job's), executor,
        progress bar, checkpoint folder and each Ray actor's CPUs (the cluster's shared out
        among the job's slots, `Job.cpus`); counts the rows its units read.

        In process, with no slot count in the spec, a task that is one BLAS call per block
        (``blas_bound``: the moments pass) runs in one slot, BLAS on every core: as one slot per
        core, each with BLAS on one core, its pass took 1.5× as long (8 × 512 at n = 64,000,
        docs/design.md §4). Its table then agrees with other slot counts to rounding only.
        """
        slots = slots or self.slots
        if (
            self.executor == "local"
            and self.spec.actors is None
            and getattr(task, "blas_bound", False)
        ):
            slots = 1
        if self.permutation is not None:
            task.permutation = self.permutation  # before the checkpoint key is made of it
        reads = self.reads.setdefault(self.passing, RowReads())
        for unit in units:
            for key, start, stop in task.reads(unit):
                reads.add(key, start, stop)
        # the units as dealt: a checkpoint made under another dealing is not taken up
        key = hashlib.sha256(pickle.dumps((task, slot_units(task, units, slots)))).hexdigest()[:16]
        return {
            "slots": slots,
            "executor": self.executor,
            "description": description,
            "quiet": self.quiet,
            "checkpoints": self.checkpoints / key,
            "checkpoint_seconds": CHECKPOINT_SECONDS,
            "cpus": self.cpus,
        }

    def row_units(self, names, width=None):
        """Row ranges of a row pass over ``names`` (of total ``width``; default their dims):
        about `jobs.passes.rows.unit_rows` rows each, rounded to whole row groups of the store
        (`whole_row_groups`)."""
        width = width or sum(self.store[name].dim for name in names) or 1
        groups = [row_group_rows(self.store[name].dim) for name in names]
        rows = whole_row_groups(unit_rows(width, len(names)), groups)
        return [(start, min(start + rows, self.n)) for start in range(0, self.n, rows)]

    def pilot_shifts(self, names):
        """Each representation's pilot mean (`repalign.store.format.pilot_mean`), read once per
        job and shared by every tile that holds it."""
        for name in names:
            if name not in self._pilot_means:
                self._pilot_means[name] = self.store[name].pilot_mean()
        return [self._pilot_means[name] for name in names]

    def sigmas(self, names, choice, configs):
        """The RBF bandwidth of each of ``names`` under ``choice`` (a float or "median");
        a representation the median heuristic fails on has its pairs under ``configs``
        recorded as missing, and is left out."""
        sigmas = {}
        for name in names:
            if (name, choice) not in self._sigmas:
                sample = median_sample(self.store[name], self.n)
                try:
                    self._sigmas[name, choice] = resolve_sigma(sample, choice, name=name)
                except RepalignError as exc:
                    self.values.fail(configs, name, str(exc))
                    continue
            sigmas[name] = self._sigmas[name, choice]
        return sigmas

    def saved_state(self):
        """The names, the file of the second moments (`jobs.passes.moments.save_moments`) and
        the digests to keep for an incremental run; None when the statistic was tiled."""
        if self.moments is None:
            return None
        names, path = self.moments
        digests = {name: representation_digest(self.store[name]) for name in names}
        return {"names": names, "moments_file": path, "digests": digests}


class RowReads:
    """The rows a pass's units read: how many in all, and the distinct row ranges of each
    representation (a set: the units of a tiled pass read the same ranges again and again)."""

    def __init__(self):
        self.read = 0
        self.spans = {}

    def add(self, key, start, stop):
        self.read += stop - start
        self.spans.setdefault(key, set()).add((start, stop))

    def per_row(self):
        """Rows read over distinct rows read (0 when none was read)."""
        distinct = 0
        for spans in self.spans.values():
            end = None
            for start, stop in sorted(spans):
                if end is None or start >= end:
                    distinct += stop - start
                    end = stop
                elif stop > end:
                    distinct += stop - end
                    end = stop
        return self.read / distinct if distinct else 0.0
