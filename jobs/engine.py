"""Running units of work that each give a mergeable partial state: in this process, or on Ray.

A *task* is a small picklable object with ``compute(unit) -> state`` (states support ``+``).
Units are dealt to a fixed number of slots (`deal`: in turn, or in contiguous runs where the
task asks); each slot adds its units' states in order, and the slots' states are then added in
slot order. So for a given number of slots the result is the same bit for bit, whatever the
timing and whichever executor ran them (docs/design.md §4, "Executors"):

- ``local``: the slots run in this process, a thread each (`LocalSlots`), BLAS sharing the
  machine's cores among them. No Ray is imported or started.
- ``ray``: each slot is one Ray actor (`jobs.ray_slots.Slots`); a slot whose actor dies is
  replayed from its units on a new actor.

With a checkpoint folder, each slot also saves its state and the number of units it has added
(at most every ``checkpoint_seconds``); a slot restarted after a crash of its actor, or of the
whole job, resumes from there, and the result is still the same bit for bit.

`run_units` brings the sum to the caller. `owned_units` instead hands it to a function of the
pass's *owner*, which on Ray runs on a node of the cluster, so that the slots' states never
pass through the driver and only what the owner returns comes back (docs/design.md §4,
"Owners").
"""

import itertools
import os
import pickle
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from jobs.progress import Progress
from repalign.contract import atomic_write

CHECKPOINT_SHARE = 0.05
"""The most of a slot's time its checkpoint saves take: a save that lasts s seconds is followed
by at least s / CHECKPOINT_SHARE seconds of work before the next."""


def forced_executor(requested, ray_address=None):
    """The executor a job must use whatever its size, and why, or None when its size decides:
    the one ``requested`` (a spec's ``executor``), else Ray when there is a cluster to use
    (``ray_address``, ``RAY_ADDRESS``, or Ray already started in this process)."""
    if requested is not None:
        return requested, f"the spec asks for executor {requested}"
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        return "ray", f"a Ray cluster was given ({address})"
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return "ray", "Ray is running in this process"
    return None


def run_units(
    task,
    units,
    *,
    slots,
    executor,
    description,
    quiet=False,
    checkpoints=None,
    checkpoint_seconds=30.0,
):
    """The sum of ``task.compute(unit)`` over ``units``, dealt to ``slots`` slots, here.

    Parameters
    ----------
    task : object
        Picklable; ``compute(unit)`` returns a state, ``rows(unit)`` the rows it covers (for
        the progress bar).
    units : list
    slots : int
    executor : {"local", "ray"}
        Where the slots run: in this process, or one Ray actor each (Ray must be started).
    description : str
        Label of the progress bar (rows, rows/s and an ETA, on stderr; off when ``quiet`` or
        when stderr is not a terminal).
    checkpoints : path-like, optional
        Folder of this pass's checkpoints (one file per slot); it must be specific to the task,
        the units and the number of slots, as a saved state is resumed without questions.

    Returns
    -------
    UnitsResult
        The state; the number of slots replayed after their actor (or its node) died; the
        units resumed from checkpoints; the Ray nodes whose actors' states make up the sum
        (none in process); the bytes of the states that came to this process from Ray actors.
    """
    runner = run_slots(
        task, units, slots, executor, description, quiet, checkpoints, checkpoint_seconds
    )
    states, received = runner.states, 0
    if executor == "ray":
        import ray

        states, received = ray.get(runner.states), sum(runner.sizes)
    return UnitsResult(
        add_in_order(states), sum(runner.replays), runner.resumed, slot_nodes(runner), received
    )


def owned_units(
    task,
    units,
    measure,
    *,
    slots,
    executor,
    description,
    owners,
    quiet=False,
    checkpoints=None,
    checkpoint_seconds=30.0,
    bar=None,
    cpus=None,
):
    """``measure(state)``, the state being the sum of `run_units`, computed by the pass's
    *owner*: in process, this process; on Ray, a task that adds the slots' states where
    ``owners`` (a `jobs.ray_slots.Owners`) places it, so that no state comes to this process
    (docs/design.md §4, "Owners"). ``measure`` is picklable and returns what is sent back.
    ``bar``: a `jobs.progress.Progress` shared with other passes (default: one of its own);
    ``cpus``: each Ray actor's CPUs (default: the free CPUs shared out).

    Returns an object whose ``result()`` is an `OwnedResult`; on Ray the owner runs while the
    caller goes on, and ``result()`` waits for it (replaying the pass if a node holding its
    states, or the owner's, died).
    """

    def run():
        return run_slots(
            task, units, slots, executor, description, quiet, checkpoints, checkpoint_seconds,
            bar=bar, cpus=cpus,
        )  # fmt: skip

    if executor == "ray":
        from jobs.ray_slots import OwnedReduction

        return OwnedReduction(run, measure, owners, description)
    runner = run()
    value = measure(add_in_order(runner.states))
    return Done(OwnedResult(value, 0, runner.resumed, []))


class OwnedResult(NamedTuple):
    """What an owned pass gives: the owner's ``value``, the slots replayed, the units resumed
    from checkpoints, and the Ray nodes whose actors' states made the sum (none in process)."""

    value: object
    replays: int
    resumed: int
    nodes: list


class Done:
    """A result already at hand, behind the same ``result()`` as an `OwnedReduction`."""

    def __init__(self, result):
        self._result = result

    def result(self):
        return self._result


def run_slots(
    task,
    units,
    slots,
    executor,
    description,
    quiet,
    checkpoints,
    checkpoint_seconds,
    bar=None,
    cpus=None,
):
    """Run the slots of a pass to their states (on Ray, object references) behind a progress
    bar (``bar``, or one of its own); returns the runner (`LocalSlots` or
    `jobs.ray_slots.Slots`, each Ray actor asking ``cpus``), its ``states`` in slot order."""
    if executor == "local":
        runner = LocalSlots(task, units, slots, checkpoints, checkpoint_seconds)
    else:
        from jobs.ray_slots import Slots

        runner = Slots(task, units, slots, checkpoints, checkpoint_seconds, cpus)
    if bar is not None:
        runner.run(bar, description)
        return runner
    total = sum(task.rows(u) for u in units)
    with Progress(
        total=total, desc=description, unit="rows", unit_scale=True, disable=quiet or None
    ) as bar:
        runner.run(bar, description)
    return runner


def add_in_order(states):
    """s₀ + s₁ + … of an iterable of states, added left to right, each sum a new state: the
    same order, so the same bits, whoever adds them (this process, or a pass's owner)."""
    states = iter(states)
    total = next(states)
    for state in states:
        total = total + state
    return total


def slot_nodes(runner):
    """The Ray nodes whose actors made the slots' states (none in process)."""
    return sorted({node for node in runner.nodes if node is not None})


class UnitsResult(NamedTuple):
    """What `run_units` returns; ``bytes_received``: the array bytes of the slots' states
    that came from Ray actors to this process (none in process)."""

    state: object
    replays: int
    resumed: int
    nodes: list
    bytes_received: int


def array_bytes(value):
    """The bytes of the numpy arrays a state holds: in its attributes, and in the lists,
    tuples and dicts among them (what pickling it moves, less a small overhead)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(array_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(array_bytes(v) for v in value)
    if hasattr(value, "__dict__"):
        return array_bytes(vars(value))
    return 0


def added(state, part):
    """``state`` plus ``part``, the sum a slot keeps: in place where the state supports it
    (`repalign.stats.GramState` does); ``part`` itself before the slot's first unit (None)."""
    if state is None:
        return part
    state += part
    return state


def deal(units, count, *, runs=False):
    """The units of each of ``count`` slots (at most one slot per unit): unit i to slot i mod
    the number of slots, so that costs that vary along the units even out (a stitching job's
    pairs, ordered by target: 72 s against 50 s dealt in runs); or with ``runs``, contiguous
    runs whose lengths differ by at most one."""
    count = max(1, min(count, len(units)))
    if not runs:
        return [units[s::count] for s in range(count)]
    edges = [len(units) * s // count for s in range(count + 1)]
    return [units[low:high] for low, high in itertools.pairwise(edges)]


def slot_units(task, units, count):
    """`deal` as the ``task`` asks: in runs when it is ``dealt_in_runs``."""
    return deal(units, count, runs=getattr(task, "dealt_in_runs", False))


def checkpoint_path(folder, slot, count):
    """Where slot ``slot`` of ``count`` saves its state (None without a checkpoint folder)."""
    if folder is None:
        return None
    return os.path.join(folder, f"slot-{slot}-of-{count}.pkl")


class SlotAccumulator:
    """One slot: the running sum of the states of its ``units``, added in order.

    For a task that splits its work into ``load(unit)`` and ``accumulate(data)`` (a
    `jobs.tasks.RowTask`), the next unit is read on a thread of the slot while this one is
    computed, so that reading overlaps computing; a slot then holds the data of two units.

    With a ``checkpoint`` file, the state and the count of units added are saved at most every
    ``checkpoint_seconds``, or every `CHECKPOINT_SHARE` of the slot's time when a save takes
    longer (a large state), and a new accumulator resumes from the file: ``done`` units are in
    its state already.
    """

    def __init__(self, task, units, checkpoint=None, checkpoint_seconds=None):
        self.task, self.units = task, list(units)
        self.state, self.done = None, 0
        self.checkpoint, self.checkpoint_seconds = checkpoint, checkpoint_seconds
        self.saved_at = time.monotonic()
        self.save_seconds = 0.0  # how long the last save took
        if checkpoint is not None and os.path.exists(checkpoint):
            with open(checkpoint, "rb") as f:
                self.done, self.state = pickle.load(f)
        self._reader = None
        if hasattr(task, "load"):
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="reader")
        self._loading = None  # (index of a unit, the future of its data)

    def add(self, unit):
        """Add the unit's state (the slot's next unit); returns the rows it covered."""
        self.state = self._add(unit)
        self.done += 1
        if self.checkpoint is not None:
            interval = max(self.checkpoint_seconds, self.save_seconds / CHECKPOINT_SHARE)
            if time.monotonic() - self.saved_at >= interval:
                self._save()
        return self.task.rows(unit)

    def _add(self, unit):
        """The slot's state with the unit's added; starts reading the slot's next unit first."""
        if self._reader is None:
            return added(self.state, self.task.compute(unit))
        index, loading = self._loading or (None, None)
        self._loading = None
        if index == self.done and self.units[index] == unit:
            data = loading.result()
        else:
            data = self.task.load(unit)
        following = self.done + 1
        if following < len(self.units):
            self._loading = (following, self._reader.submit(self.task.load, self.units[following]))
        return self.task.accumulate_into(self.state, data)

    def _save(self):
        started = time.monotonic()
        with atomic_write(self.checkpoint) as temporary, open(temporary, "wb") as f:
            pickle.dump((self.done, self.state), f, protocol=pickle.HIGHEST_PROTOCOL)
        self.saved_at = time.monotonic()
        self.save_seconds = self.saved_at - started

    def result(self):
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
        return self.state


class LocalSlots:
    """The slots run in this process, one thread each (numpy, BLAS and Parquet reads release
    the GIL), with BLAS limited to the machine's cores shared out among them; `run` leaves
    their states in slot order in ``states``. The same dealing, order of sums and checkpoints
    as the Ray actors, so the same result bit for bit (docs/design.md §4)."""

    def __init__(self, task, units, count, checkpoints=None, checkpoint_seconds=30.0):
        self.task = task
        self.units = slot_units(task, units, count)
        self.checkpoints, self.checkpoint_seconds = checkpoints, checkpoint_seconds
        if checkpoints is not None:
            os.makedirs(checkpoints, exist_ok=True)
        self.replays = [0] * len(self.units)
        self.nodes = []
        self.resumed = 0
        self.states = None
        self._lock = threading.Lock()  # the bar and the count of resumed units

    def run(self, bar, description):
        """Run every slot to its state (``states``, in slot order), reporting on ``bar`` (a
        `jobs.progress.Progress`)."""
        count = len(self.units)
        if count == 1:  # in this thread, BLAS as the caller set it
            self.states = [self._run_slot(0, bar)]
            return
        blas_threads = max(1, machine_cpus() // count)
        with (
            threadpool_limits(limits=blas_threads, user_api="blas"),
            ThreadPoolExecutor(count, thread_name_prefix="slot") as pool,
        ):
            slots = [pool.submit(self._run_slot, slot, bar) for slot in range(count)]
            try:
                self.states = [slot.result() for slot in slots]
            finally:
                for slot in slots:
                    slot.cancel()

    def _run_slot(self, slot, bar):
        units = self.units[slot]
        checkpoint = checkpoint_path(self.checkpoints, slot, len(self.units))
        accumulator = SlotAccumulator(self.task, units, checkpoint, self.checkpoint_seconds)
        if accumulator.done:
            with self._lock:
                self.resumed += accumulator.done
                bar.update(sum(self.task.rows(u) for u in units[: accumulator.done]))
        for unit in units[accumulator.done :]:
            rows = accumulator.add(unit)
            with self._lock:
                bar.update(rows)
        return accumulator.result()


def machine_cpus():
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))
