"""The slots of `jobs.engine.run_units` as Ray actors, one `Accumulator` each.

Each slot is one actor that adds its units' states in order (`jobs.engine.SlotAccumulator`);
a slot whose actor, or the actor's whole node, dies is replayed from its units on a new actor,
and resumes from its checkpoint when it has one: the job finishes with the identical result
(docs/design.md §8: state in a few actors, ``ray.get`` late).
"""

import os
import pickle
import sys
import threading
import time

import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    NodeDiedError,
    ObjectLostError,
    RayActorError,
    WorkerCrashedError,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from threadpoolctl import threadpool_limits

from jobs.engine import (
    OwnedResult,
    SlotAccumulator,
    add_in_order,
    array_bytes,
    checkpoint_path,
    slot_nodes,
    slot_units,
)
from jobs.outputs import redirect_library_logs

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
    """Join the Ray cluster at ``address`` (else ``RAY_ADDRESS``), or start a local one; nothing
    if Ray is running. Ray's lines go to the job's library log when it has one (`jobs.outputs`).

    With neither, the job starts its own Ray (``address="local"``) rather than joining whichever
    cluster ``ray start`` last started on this machine, as ``ray.init()`` would: a cluster is
    used only when it is named."""
    redirect_library_logs()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, include_dashboard=False, log_to_driver=False)


@ray.remote
class Accumulator(SlotAccumulator):
    """One slot on a Ray actor (`jobs.engine.SlotAccumulator`)."""

    def begin(self):
        """Where this actor runs (its Ray node id), and how many units its checkpoint holds."""
        return ray.get_runtime_context().get_node_id(), self.done

    def pid(self):
        return os.getpid()

    @ray.method(num_returns=2)
    def hand_over(self):
        """The slot's state, left in the object store of this actor's node for the pass's
        owner, and its array bytes, which the driver takes."""
        state = self.result()
        return state, array_bytes(state)


def cluster_cpus():
    """The CPUs of the Ray cluster this process is connected to (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class Slots:
    """The units dealt to slots (`jobs.engine.deal`), each slot one `Accumulator`
    actor; `run` returns the slots' states in slot order.

    Each actor asks ``cpus`` CPUs (default: the CPUs shared out, `cpus_per_actor`). A slot's
    calls go out only once its actor has started (``begin``): then its checkpointed
    units are skipped and the rest queued, then its result. Calls are taken in completion
    order (docs/design.md §8); when one fails because the actor or its node died, the slot is
    replayed on a new actor, at most `MAX_REPLAYS` times.
    """

    def __init__(self, task, units, actors, checkpoints=None, checkpoint_seconds=30.0, cpus=None):
        self.task = task
        self.units = slot_units(task, units, actors)
        count = len(self.units)
        self.cpus = cpus or cpus_per_actor(count)
        self.checkpoints, self.checkpoint_seconds = checkpoints, checkpoint_seconds
        if checkpoints is not None:
            os.makedirs(checkpoints, exist_ok=True)
        self.states = [None] * count  # object references: the driver does not fetch them
        self.sizes = [0] * count  # their array bytes
        self.replays = [0] * count
        self.done_rows = [0] * count  # rows on the progress bar
        self.handles = [None] * count
        self.nodes = [None] * count  # None until the slot's actor has started
        self.resumed = 0
        self.pending = {}  # ref -> (slot, "begin" | "add" | "result")

    def run(self, bar, description):
        """Run every slot to its state (``states``, object references in slot order), reporting
        on ``bar`` (a `jobs.progress.Progress`)."""
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

    def _start(self, slot):
        """Start the slot's actor; its units are queued once it has started (`_begin`)."""
        checkpoint = checkpoint_path(self.checkpoints, slot, len(self.units))
        self.handles[slot] = Accumulator.options(num_cpus=self.cpus).remote(
            self.task_ref, self.units[slot], checkpoint, self.checkpoint_seconds
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
        state, size = handle.hand_over.remote()
        self.states[slot] = state
        self.pending[size] = (slot, "result")

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
            self.sizes[slot] = value
            ray.kill(self.handles[slot])  # its CPU is free at once, for a replayed slot
            self.handles[slot] = None

    def _replay(self, slot, failure, bar, description):
        self.states[slot] = None
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


OWNER_FAILURES = (*ACTOR_FAILURES, NodeDiedError, WorkerCrashedError)
"""What getting an owner's result raises when its node, or the node of a state it was adding,
died: the pass is replayed and its owner run again."""


@ray.remote(num_cpus=0)
def _own(measure, states, threads):
    """A pass's owner: the slots' ``states`` (object references, in slot order) fetched one at a
    time and added in order, then ``measure`` of the sum; returns its value and this node.

    It asks no CPU, so that it runs beside the next pass's actors, and uses ``threads`` BLAS
    threads (`Owners.threads`) whichever worker process it lands in: a thread count decides
    the order of LAPACK's sums, and a replayed owner must give the same bits."""
    with threadpool_limits(limits=threads, user_api="blas"):
        total = add_in_order(ray.get(state) for state in states)
        value = measure(total)
    return value, ray.get_runtime_context().get_node_id()


class Owners:
    """Where a job's owners run, and the bytes of state they took in (docs/design.md §4).

    Each pass's owner goes to the alive node that would then have received the fewest bytes
    of partial states from other nodes (a state on the owner's own node moves through shared
    memory): the receives spread evenly over the nodes, whatever the passes' sizes. A node's
    count takes an owner's receives when the owner is placed, so the next pass's owner, placed
    while it runs, goes elsewhere. Passes running side by side, in threads, may share one.

    Attributes
    ----------
    threads : int
        The BLAS threads of every owner of the job: the CPUs of the smallest alive node with
        CPUs when the job starts (a pass's actors have given them back when its owner runs).
    received : dict
        Node id -> bytes of partial states it received from other nodes.
    reduced : int
        Bytes of every partial state taken in by an owner.
    to_driver : int
        Pickled bytes of the owners' values sent to the driver.
    """

    def __init__(self):
        self.threads = max(1, int(min((c for c in _node_cpus() if c > 0), default=1)))
        self.received = {}
        self.reduced = 0
        self.to_driver = 0
        self._lock = threading.Lock()

    def choose(self, nodes, sizes):
        """The node for the owner of a pass whose slots' states, of ``sizes`` bytes, are on
        ``nodes``; its receives are counted to it from now (`release` takes them back)."""
        with self._lock:
            alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
            node = min(
                alive, key=lambda n: (self.received.get(n, 0) + _incoming(n, nodes, sizes), n)
            )
            self.received[node] = self.received.get(node, 0) + _incoming(node, nodes, sizes)
            return node

    def release(self, node, nodes, sizes):
        """Take back the receives `choose` counted to ``node`` for an owner that failed."""
        with self._lock:
            self.received[node] -= _incoming(node, nodes, sizes)

    def took(self, owner, chosen, nodes, sizes, value):
        """Count what an owner placed on node ``chosen`` and run on node ``owner`` (another
        when that node could not take it) received and sent back."""
        with self._lock:
            if owner != chosen:
                self.received[chosen] -= _incoming(chosen, nodes, sizes)
                self.received[owner] = self.received.get(owner, 0) + _incoming(owner, nodes, sizes)
            self.reduced += sum(sizes)
            self.to_driver += len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _incoming(owner, nodes, sizes):
    """Bytes of the states on ``nodes`` (of ``sizes`` bytes) that are not on node ``owner``."""
    return sum(size for node, size in zip(nodes, sizes, strict=True) if node != owner)


class OwnedReduction:
    """A pass whose slots ran (``run()`` runs them) and whose owner adds their states and
    measures the sum on a node of the cluster (`Owners.choose`); `result` waits for it.

    If the owner fails because a node died (its own, or one holding a state it had not
    fetched), the pass is run again, slots resuming from their checkpoints, and so is its
    owner: the same slots add the same units in the same order, so the value is identical. At
    most `MAX_REPLAYS` times.
    """

    def __init__(self, run, measure, owners, description):
        self._run, self.measure, self.owners = run, measure, owners
        self.description = description
        self.replays = self.resumed = 0
        self._submit()

    def _submit(self):
        runner = self._run()
        self.replays += sum(runner.replays)
        self.resumed += runner.resumed
        self.runner = runner
        self.node = node = self.owners.choose(runner.nodes, runner.sizes)
        strategy = NodeAffinitySchedulingStrategy(node, soft=True)
        self.ref = _own.options(scheduling_strategy=strategy).remote(
            self.measure, runner.states, self.owners.threads
        )

    def result(self):
        """The owner's `jobs.engine.OwnedResult`."""
        for attempt in range(MAX_REPLAYS + 1):
            try:
                value, owner = ray.get(self.ref)
                break
            except OWNER_FAILURES as failure:
                if attempt == MAX_REPLAYS:
                    raise
                print(
                    f"{self.description}: its owner failed ({type(failure).__name__}); "
                    "replaying the pass",
                    file=sys.stderr,
                )
                self.replays += 1
                self.owners.release(self.node, self.runner.nodes, self.runner.sizes)
                self._submit()
        runner = self.runner
        self.owners.took(owner, self.node, runner.nodes, runner.sizes, value)
        return OwnedResult(value, self.replays, self.resumed, slot_nodes(runner))


def cpus_per_actor(actors):
    """Share the CPUs: whole ones when there are enough (BLAS then gets that many threads),
    else fractions, so that more actors than CPUs still all start; never more than the
    largest alive node has, since an actor runs on one node."""
    available = ray.available_resources().get("CPU", actors)
    cpus = available // actors if available >= actors else available / actors
    return min(cpus, max(_node_cpus(), default=cpus))


def memory_per_cpu():
    """Ray's memory per CPU on the alive node that has the least of it: what an actor of one
    CPU may hold (`repalign.stats.default_tile_bytes`)."""
    shares = [
        node["Resources"].get("memory", 0) / node["Resources"]["CPU"]
        for node in ray.nodes()
        if node["Alive"] and node["Resources"].get("CPU", 0) > 0
    ]
    return int(min(shares))


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
