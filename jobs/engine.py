"""Running units of work on Ray actors that each accumulate a mergeable partial state.

A *task* is a small picklable object with ``compute(unit) -> state`` (states support ``+``).
Units are dealt to a fixed number of slots in turn (unit i to slot i mod n); each slot is one
actor that adds its units' states in order. The slots' states are then added in slot order.
So for a given number of actors the result is the same bit for bit, whatever the timing, and
a slot whose actor dies is replayed from its units on a new actor: the job finishes with the
identical result (style.md §3: state in a few actors, ``ray.get`` late).

With a checkpoint folder, each slot also saves its state and the number of units it has added
(at most every ``checkpoint_seconds``); a slot restarted after its actor, or the whole job,
died resumes from there, and the result is still the same bit for bit.
"""

import os
import pickle
import time

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from jobs.progress import Progress

ACTOR_FAILURES = (RayActorError, ActorDiedError, ActorUnavailableError)
MAX_REPLAYS = 3
"""How many times one slot may be replayed after its actor died before the job gives up."""


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

    def units_done(self):
        return self.done

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
        temporary = f"{self.checkpoint}.tmp"
        with open(temporary, "wb") as f:
            pickle.dump((self.done, self.state), f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.checkpoint)
        self.saved_at = time.monotonic()

    def result(self):
        return self.state

    def pid(self):
        return os.getpid()


def run_units(
    task, units, *, actors, description, quiet=False, checkpoints=None, checkpoint_seconds=30.0
):
    """The sum of ``task.compute(unit)`` over ``units``, computed by ``actors`` Ray actors;
    the number of slots replayed after their actor died; and the units resumed from
    checkpoints.

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
    """
    actors = max(1, min(actors, len(units)))
    # Share the CPUs: whole ones when there are enough (BLAS then gets that many threads),
    # else fractions, so that more actors than CPUs still all start.
    available = ray.available_resources().get("CPU", actors)
    cpus = available // actors if available >= actors else available / actors
    slots = [units[s::actors] for s in range(actors)]
    total = sum(task.rows(u) for u in units)
    task_ref = ray.put(task)
    if checkpoints is not None:
        os.makedirs(checkpoints, exist_ok=True)
    resumed = 0
    with Progress(
        total=total, desc=description, unit="rows", unit_scale=True, disable=quiet or None
    ) as bar:
        results = [None] * actors
        replays = [0] * actors
        done_rows = [0] * actors
        handles = [None] * actors
        pending = {}

        def start(slots_to_start):
            """Start one actor per slot, all at once, then queue each slot's remaining units."""
            nonlocal resumed
            for slot in slots_to_start:
                checkpoint = None
                if checkpoints is not None:
                    checkpoint = os.path.join(checkpoints, f"slot-{slot}-of-{actors}.pkl")
                handles[slot] = Accumulator.options(num_cpus=cpus).remote(
                    task_ref, checkpoint, checkpoint_seconds
                )
            done_counts = [0] * len(slots_to_start)
            if checkpoints is not None:
                done_counts = ray.get([handles[s].units_done.remote() for s in slots_to_start])
            for slot, done in zip(slots_to_start, done_counts, strict=True):
                if done:
                    resumed += done
                    rows = sum(task.rows(u) for u in slots[slot][:done])
                    bar.update(rows)
                    done_rows[slot] += rows
                for unit in slots[slot][done:]:
                    pending[handles[slot].add.remote(unit)] = slot
                pending[handles[slot].result.remote()] = slot

        start(range(actors))
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            slot = pending.pop(done)
            try:
                value = ray.get(done)
            except ACTOR_FAILURES:
                for ref in [r for r, s in pending.items() if s == slot]:
                    del pending[ref]
                replays[slot] += 1
                if replays[slot] > MAX_REPLAYS:
                    raise
                bar.write(f"{description}: an actor died; replaying its {len(slots[slot])} units")
                bar.update(-done_rows[slot])
                done_rows[slot] = 0
                start([slot])
                continue
            if isinstance(value, int):
                bar.update(value)
                done_rows[slot] += value
            else:
                results[slot] = value
        for handle in handles:
            ray.kill(handle)
    total_state = results[0]
    for state in results[1:]:
        total_state = total_state + state
    return total_state, sum(replays), resumed
