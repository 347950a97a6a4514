"""The random-features pass: KA, CKA and HSIC of RBF kernels approximated by random Fourier
features or Nyström features (`repalign.approx`), each configuration with its own maps and
one pass of their second moments."""

from itertools import combinations_with_replacement

import numpy as np

from jobs.passes.rows import gather
from jobs.tasks import FeatureTask
from repalign.approx import Nystrom, RandomFourierFeatures, approximate_products, nystrom_rows
from repalign.measures.permutation import sources_of


def run(job, configs):
    """Record every pair's estimate (value and standard error) of the approximated
    ``configs``."""
    names = job.values.usable()
    for config in configs:
        sigmas = job.sigmas(names, config.sigma, [config])
        if config.label not in job.feature_maps:  # a permuted job takes its parent's RFF maps
            job.feature_maps[config.label] = _feature_maps(job, config, sigmas)
        maps = job.feature_maps[config.label]
        ok = list(maps)
        if not ok:
            continue
        task = FeatureTask(job.store.path, ok, [maps[name] for name in ok])
        units = job.row_units(ok, width=sum(maps[name].n_features for name in ok))
        state = job.run_units(task, units, f"{config.approx} features")
        index = {name: i for i, name in enumerate(ok)}
        for a, b in combinations_with_replacement(ok, 2):
            job.values.record(config, a, b, _estimate, config, state, index, maps, a, b)


def _feature_maps(job, config, sigmas):
    """Each representation's feature map of the RBF kernel with its bandwidth."""
    if config.approx == "rff":
        return {
            name: RandomFourierFeatures(
                job.store[name].dim, config.features, sigma, seed=config.seed
            )
            for name, sigma in sigmas.items()
        }
    rows = nystrom_rows(job.n, min(config.features, job.n), config.seed)
    drawn = np.concatenate([rows.landmarks, rows.probes])
    maps = {}
    for name, sigma in sigmas.items():
        # a draw of the permutation null takes the rows at the same places of its permuted
        # rows: the probes' correction needs the landmarks and probes of both sides to be
        # the same samples, which the draw re-pairs
        sources = drawn
        if job.permutation is not None:
            sources = sources_of(name, job.permutation, drawn, job.n)
        order = np.argsort(sources)
        read = gather(job.store[name], sources[order])  # one read of both kinds of row
        columns = np.empty_like(read)
        columns[order] = read
        landmarks = len(rows.landmarks)
        maps[name] = Nystrom(columns[:landmarks], columns[landmarks:], sigma)
    return maps


def _estimate(config, state, index, maps, a, b):
    products = approximate_products(state, index[a], index[b], maps[a], maps[b])
    estimate = getattr(products, config.name)
    return estimate.value, estimate.std_err
