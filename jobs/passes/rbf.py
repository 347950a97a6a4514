"""The exact RBF pass: KA, CKA and HSIC of RBF kernels from b×b tiles of every Gram matrix at
once (`repalign.tiles`, O(M·b²) memory), one pass per bandwidth choice.

Exact RBF KA also gets the interval of `repalign.bounds.lemma1_interval` (Lemma 1 of Insulla
et al., made rigorous in docs/theory.md §3 (b)) in the columns ``lower`` and ``upper``.
"""

from itertools import combinations_with_replacement

from jobs.passes.rows import tile_ranges
from jobs.tasks import RbfTileTask
from repalign.bounds import lemma1_interval
from repalign.measures.alignment import kernel_measure

LEMMA1_DELTA = 0.05
"""Failure probability of the Lemma 1 interval given with each exact RBF KA (|K| ≤ 1)."""


def run(job, configs):
    """Record every pair's value of the exact RBF ``configs``."""
    names = job.values.usable()
    for sigma_choice in sorted({c.sigma for c in configs}, key=str):
        chosen = [c for c in configs if c.sigma == sigma_choice]
        sigmas = job.sigmas(names, sigma_choice, chosen)
        ok = list(sigmas)
        if not ok:
            continue
        task = RbfTileTask(job.store.path, ok, [sigmas[m] for m in ok], job.pilot_shifts(ok), job.n)
        blocks = tile_ranges(job.n)
        units = [(blocks[i], blocks[j]) for i in range(len(blocks)) for j in range(i, len(blocks))]
        state = job.run_units(task, units, "rbf tiles")
        index = {name: i for i, name in enumerate(ok)}
        for a, b in combinations_with_replacement(ok, 2):
            products = state.products(index[a], index[b])
            for config in chosen:
                job.values.record(
                    config, a, b, kernel_measure, products, config.name, config.estimator
                )
                if config.name == "ka" and job.values.found[config.label, a, b][2] == "":
                    job.values.intervals[config.label, a, b] = _lemma1_interval(products, job.n)


def _lemma1_interval(products, n):
    """`repalign.bounds.lemma1_interval` from the exact products ⟨K, L⟩, ⟨K, K⟩, ⟨L, L⟩ of two
    RBF kernels (bounded by 1), on the (1/n²) scale of the V-statistics."""
    a, b, c = (products.raw(r, s) / n**2 for r, s in ((0, 1), (0, 0), (1, 1)))
    return lemma1_interval(a, b, c, n, delta=LEMMA1_DELTA)
