"""The neighbours pass: exact top-k cosine neighbours of every row of every representation,
streamed (never n×n), for mutual k-NN and CKNNA. One pass finds the largest k of the
configurations; each takes its first k."""

from itertools import combinations_with_replacement

from jobs.tasks import NeighborTask
from repalign.measures.neighbors import (
    NeighborSets,
    cknna_from_neighbors,
    mutual_knn_from_neighbors,
)


def run(job, configs):
    """Record every pair's value of the neighbour ``configs``."""
    k = max(c.k for c in configs)
    if k > job.n - 1:
        for config in configs:
            for a, b in combinations_with_replacement(job.names, 2):
                job.values.missing(config, a, b, f"k={config.k} must be below n={job.n}")
        return
    names = job.values.usable()
    # query rows per unit: a block of similarities within 128 MiB, and a unit for every slot
    rows = max(64, min(4096, 2**27 // (8 * job.n), -(-job.n // job.slots)))
    units = [(s, min(s + rows, job.n)) for s in range(0, job.n, rows)]
    task = NeighborTask(job.store.path, names, k, job.n, reference_rows=max(rows, 4096))
    state = job.run_units(task, units, "neighbours")
    found = {}
    for name in names:
        if name in state.failures:
            job.values.fail(configs, name, state.failures[name])
        else:
            found[name] = state.neighbors(name)
    sets = {
        (name, config.k): NeighborSets(*(part[:, : config.k] for part in found[name]))
        for name in found
        for config in configs
    }
    measures = {"mutual_knn": mutual_knn_from_neighbors, "cknna": cknna_from_neighbors}
    for a, b in combinations_with_replacement(list(found), 2):
        for config in configs:
            x, y = sets[a, config.k], sets[b, config.k]
            job.values.record(config, a, b, measures[config.name], x, y)
