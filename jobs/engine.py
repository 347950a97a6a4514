"""Running units of work on Ray actors that each accumulate a mergeable partial state.

A *task* is a small picklable object with ``compute(unit) -> state`` (states support ``+``).
Units are dealt to a fixed number of slots in turn (unit i to slot i mod n); each slot is one
actor that adds its units' states in order. The slots' states are then added in slot order.
So for a given number of actors the result is the same bit for bit, whatever the timing, and
a slot whose actor dies is replayed from its units on a new actor: the job finishes with the
identical result (docs/design.md §8: state in a few actors, ``ray.get`` late).

With a checkpoint folder, each slot also saves its state and the number of units it has added
(at most every ``checkpoint_seconds``); a slot restarted after its actor, or the whole job,
died resumes from there, and the result is still the same bit for bit.
"""

import os
import pickle
import time
from typing import NamedTuple

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, RayActorError

from jobs.progress import Progress
from repalign.contract import atomic_write

ACTOR_FAILURES = (RayActorError, ActorDiedError, ActorUnavailableError, ObjectLostError)
"""What a slot's calls raise when its actor, or the actor's whole node, died. Killing the node
of an actor mid-pass gives `ActorDiedError` with Ray 2.60 (tests/test_multinode.py); a call
that cannot reach the actor for a while raises `ActorUnavailableError`, and a result that only
the dead node held, `ObjectLostError`. Each replays the slot on a new actor."""
MAX_REPLAYS = 3
"""How many times one slot may be replayed after its actor died before the job gives up."""
WAIT_SECONDS = 10.0
"""How often the driver looks up from `ray.wait` to check that the job is not stuck."""
PLACEMENT_SECONDS = 600.0
"""How long the job waits for the actors of its unfinished slots when no alive node has the
CPUs they ask (the node they ran on died), before it gives up: time for the node to come back."""


def start_ray(address=None):
    """Join the Ray cluster at ``address``, or start a local one; nothing if Ray is running."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)


@ray.remote
class Accumulator:
    """One slot: the running sum of the states of the units it was given, in order."""

    def __init__(self, task, checkpoint=None, checkpoint_seconds=None):
        self.task = task
        self.state, self.done = None, 0
        self.checkpoint, self.checkpoint_seconds = checkpoint, checkpoint_seconds
        self.saved_at = time.monotonic()
        if checkpoint is not None and os.path.exists(checkpoint):
            with open(checkpoint, "rb") as f:
                self.done, self.state = pickle.load(f)

    def begin(self):
        """Where this actor runs (its Ray node id), and how many units its checkpoint holds."""
        return ray.get_runtime_context().get_node_id(), self.done

    def add(self, unit):
        part = self.task.compute(unit)
        if self.state is None:
            self.state = part
        else:
            self.state += part  # in place where the state supports it (GramState does)
        self.done += 1
        if self.checkpoint is not None:
            if time.monotonic() - self.saved_at >= self.checkpoint_seconds:
                self._save()
        return self.task.rows(unit)

    def _save(self):
        with atomic_write(self.checkpoint) as temporary, open(temporary, "wb") as f:
            pickle.dump((self.done, self.state), f, protocol=pickle.HIGHEST_PROTOCOL)
        self.saved_at = time.monotonic()

    def result(self):
        return self.state

    def pid(self):
        return os.getpid()


def run_units(
    task, units, *, actors, description, quiet=False, checkpoints=None, checkpoint_seconds=30.0
):
    """The sum of ``task.compute(unit)`` over ``units``, computed by ``actors`` Ray actors.

    Parameters
    ----------
    task : object
        Picklable; ``compute(unit)`` returns a state, ``rows(unit)`` the rows it covers (for
        the progress bar).
    units : list
    actors : int
    description : str
        Label of the progress bar (rows, rows/s and an ETA, on stderr; off when ``quiet`` or
        when stderr is not a terminal).
    checkpoints : path-like, optional
        Folder of this pass's checkpoints (one file per slot); it must be specific to the task,
        the units and the number of actors, as a saved state is resumed without questions.

    Returns
    -------
    UnitsResult
        The state; the number of slots replayed after their actor (or its node) died; the
        units resumed from checkpoints; the nodes whose actors' states make up the sum.

    Each slot's actor is killed as soon as its state has arrived, so that its CPU is free for
    a slot replayed after a node died. While every unfinished slot waits for a CPU, the bar
    says so; when no alive node has enough CPUs for those actors, the job gives up after
    `PLACEMENT_SECONDS` with a `TimeoutError`.
    """
    slots = Slots(task, units, actors, checkpoints, checkpoint_seconds)
    total = sum(task.rows(u) for u in units)
    with Progress(
        total=total, desc=description, unit="rows", unit_scale=True, disable=quiet or None
    ) as bar:
        states = slots.run(bar, description)
    total_state = states[0]
    for state in states[1:]:
        total_state = total_state + state
    return UnitsResult(total_state, sum(slots.replays), slots.resumed, sorted(set(slots.nodes)))


class Slots:
    """The units dealt to slots in turn (unit i to slot i mod n), each slot one `Accumulator`
    actor; `run` returns the slots' states in slot order.

    Each actor asks ``cpus`` CPUs (default: the CPUs shared out, `_cpus_per_actor`). A slot's
    calls go out only once its actor has started (``begin``): then its checkpointed
    units are skipped and the rest queued, then its result. Calls are taken in completion
    order (docs/design.md §8); when one fails because the actor or its node died, the slot is
    replayed on a new actor, at most `MAX_REPLAYS` times.
    """

    def __init__(self, task, units, actors, checkpoints=None, checkpoint_seconds=30.0, cpus=None):
        self.task = task
        count = max(1, min(actors, len(units)))
        self.units = [units[s::count] for s in range(count)]
        self.cpus = cpus or _cpus_per_actor(count)
        self.checkpoints, self.checkpoint_seconds = checkpoints, checkpoint_seconds
        if checkpoints is not None:
            os.makedirs(checkpoints, exist_ok=True)
        self.states = [None] * count
        self.replays = [0] * count
        self.done_rows = [0] * count  # rows on the progress bar
        self.handles = [None] * count
        self.nodes = [None] * count  # None until the slot's actor has started
        self.resumed = 0
        self.pending = {}  # ref -> (slot, "begin" | "add" | "result")

    def run(self, bar, description):
        """Run every slot to its state, reporting on ``bar`` (a `jobs.progress.Progress`)."""
        self.task_ref = ray.put(self.task)
        waiting = _PlacementWait(description, self.cpus)
        try:
            for slot in range(len(self.units)):
                self._start(slot)
            while self.pending:
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=WAIT_SECONDS)
                if not ready:
                    waiting.check(self._unplaced(), bar)
                    continue
                waiting.check([], bar)
                self._take(ready[0], bar, description)
        finally:
            for handle in self.handles:
                if handle is not None:
                    ray.kill(handle)
        return self.states

    def _start(self, slot):
        """Start the slot's actor; its units are queued once it has started (`_begin`)."""
        checkpoint = None
        if self.checkpoints is not None:
            name = f"slot-{slot}-of-{len(self.units)}.pkl"
            checkpoint = os.path.join(self.checkpoints, name)
        self.handles[slot] = Accumulator.options(num_cpus=self.cpus).remote(
            self.task_ref, checkpoint, self.checkpoint_seconds
        )
        self.nodes[slot] = None
        self.pending[self.handles[slot].begin.remote()] = (slot, "begin")

    def _begin(self, slot, node, done, bar):
        """Queue the units that the slot's checkpoint does not hold, then its result."""
        self.nodes[slot] = node
        if done:
            self.resumed += done
            rows = sum(self.task.rows(u) for u in self.units[slot][:done])
            bar.update(rows)
            self.done_rows[slot] += rows
        handle = self.handles[slot]
        for unit in self.units[slot][done:]:
            self.pending[handle.add.remote(unit)] = (slot, "add")
        self.pending[handle.result.remote()] = (slot, "result")

    def _take(self, ref, bar, description):
        """Take the value of a finished call, or replay its slot if the actor died."""
        slot, call = self.pending.pop(ref)
        try:
            value = ray.get(ref)
        except ACTOR_FAILURES as failure:
            self._replay(slot, failure, bar, description)
            return
        if call == "begin":
            self._begin(slot, *value, bar)
        elif call == "add":
            bar.update(value)
            self.done_rows[slot] += value
        else:
            self.states[slot] = value
            ray.kill(self.handles[slot])  # its CPU is free at once, for a replayed slot
            self.handles[slot] = None

    def _replay(self, slot, failure, bar, description):
        for ref in [r for r, (s, _) in self.pending.items() if s == slot]:
            del self.pending[ref]
        ray.kill(self.handles[slot])
        self.replays[slot] += 1
        if self.replays[slot] > MAX_REPLAYS:
            raise failure
        bar.write(
            f"{description}: an actor died ({type(failure).__name__}); replaying "
            f"its {len(self.units[slot])} units"
        )
        bar.update(-self.done_rows[slot])
        self.done_rows[slot] = 0
        self._start(slot)

    def _unplaced(self):
        """The slots waiting for their actor when no slot's actor is working, else none."""
        slots = {s for s, _ in self.pending.values()}
        if any(self.nodes[s] is not None for s in slots):
            return []
        return sorted(slots)


class UnitsResult(NamedTuple):
    """What `run_units` returns."""

    state: object
    replays: int
    resumed: int
    nodes: list


def _cpus_per_actor(actors):
    """Share the CPUs: whole ones when there are enough (BLAS then gets that many threads),
    else fractions, so that more actors than CPUs still all start; never more than the
    largest alive node has, since an actor runs on one node."""
    available = ray.available_resources().get("CPU", actors)
    cpus = available // actors if available >= actors else available / actors
    return min(cpus, max(_node_cpus(), default=cpus))


def _node_cpus():
    """The CPUs of each alive node of the cluster."""
    return [node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]]


class _PlacementWait:
    """Says when every unfinished slot waits for its actor to be placed, and gives up when
    that has lasted `PLACEMENT_SECONDS` and no alive node has the CPUs such an actor asks."""

    def __init__(self, description, cpus):
        self.description, self.cpus = description, cpus
        self.since = None

    def check(self, unplaced, bar):
        """``unplaced``: the waiting slots when nothing else runs, else empty."""
        if not unplaced:
            self.since = None
            return
        nodes = _node_cpus()
        message = (
            f"{self.description}: the actors of slots {unplaced} are waiting for a node with "
            f"{self.cpus:g} free CPUs (alive nodes: {len(nodes)}, with "
            f"{sum(nodes):g} CPUs in all, {ray.available_resources().get('CPU', 0):g} free)"
        )
        if self.since is None:
            self.since = time.monotonic()
            bar.write(message)
        elif max(nodes, default=0) < self.cpus:
            if time.monotonic() - self.since >= PLACEMENT_SECONDS:
                raise TimeoutError(
                    f"{message}; no alive node has {self.cpus:g} CPUs, and none joined in "
                    f"{PLACEMENT_SECONDS:g} s."
                )
