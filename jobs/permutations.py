"""The Monte Carlo permutation null of a job (spec ``null: permutation``): its passes run again
on ``permutations`` random re-pairings of the rows, and each pair's value is ranked among its
values there (`repalign.measures.permutation`, docs/theory.md §2.12).

Each draw is a `jobs.alignment.Job.permuted` job: the same tasks, units and actors, whose tasks
read every representation's rows as the draw permutes them; so it costs what the job's passes
cost, B times. A finished draw's values are kept under ``OUT/.checkpoints/permutations/KEY/``
(KEY a digest of the store, representations, rows and measures), and the same job started
again after a crash takes them up instead of drawing them again.
"""

import hashlib
import pickle
import time

from jobs.progress import Progress
from repalign.contract import atomic_write
from repalign.measures.permutation import UNPAIRED, PermutationDraws


def permutation_null(job):
    """Record the permutation null of every pair of ``job`` (a `jobs.alignment.Job` that has
    run) in its values, from ``job.spec.permutations`` draws."""
    configs = [c for c in job.spec.measures if c.name not in UNPAIRED]
    if not configs:
        return
    started = time.perf_counter()
    # draws of another job into the same OUT (other measures, store or rows) are not taken up
    what = (str(job.store.path), job.names, job.n, [c.model_dump() for c in configs])
    kept = job.checkpoints / "permutations" / hashlib.sha256(pickle.dumps(what)).hexdigest()[:16]
    kept.mkdir(parents=True, exist_ok=True)
    draws = PermutationDraws()
    total = job.spec.permutations
    with Progress(total=total, desc="permutation null", unit="draws",
                  disable=job.quiet or None) as bar:  # fmt: skip
        for draw in range(total):
            path = kept / f"{draw}.pkl"
            if path.exists():
                found = pickle.loads(path.read_bytes())
            else:
                permuted = job.permuted(draw)
                permuted.run()
                job.absorb(permuted)
                found = permuted.values.found
                with atomic_write(path) as temporary:
                    temporary.write_bytes(pickle.dumps(found))
            draws.add(found)
            bar.update(1)
    draws.record(job.values, configs)
    job.timings["permutations"] = round(time.perf_counter() - started, 3)
