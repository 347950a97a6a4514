"""Linear-kernel measures from second moments: the value of one measure configuration for a
pair of representations of a `repalign.stats.GramState` (docs/design.md §3, "Where the numbers
come from"). An all-pairs job and `repalign.pairwise` both read every linear-kernel value here.
"""

import functools

from repalign.blas_threads import map_over_blas_threads
from repalign.measures.alignment import kernel_measure
from repalign.measures.cca import cca_from_spectra, svcca_from_spectra
from repalign.measures.kernel_products import FeatureProducts
from repalign.measures.nulls import (
    ANALYTIC_NULLS,
    MIN_NULL_ROWS,
    GramInvariants,
    null_distribution,
)
from repalign.measures.procrustes import procrustes_from_spectra
from repalign.measures.spectra import feature_spectra


def moment_value(config, state, i, j, axes):
    """The value of a linear-kernel ``config`` (a `repalign.spec.Measure`) for the pair (i, j)
    of ``state``; ``axes(k)`` gives representation k's `PrincipalAxes`
    (`repalign.measures.spectra.principal_axes`, cached by the caller)."""
    if config.name in ("ka", "cka", "hsic"):
        return kernel_measure(FeatureProducts(state, i, j), config.name, config.estimator)
    spectra = feature_spectra(state, i, j, axes)
    if config.name == "procrustes":
        return procrustes_from_spectra(spectra)
    if config.name == "cca":
        return cca_from_spectra(spectra, squared=config.squared)
    return svcca_from_spectra(spectra, variance=config.variance)


def record_pairs(values, configs, state, pairs, index, axes, *, null, std_errs=None):
    """Record in ``values`` (a `repalign.results.Values`) each linear-kernel ``config`` of each
    of ``pairs`` from ``state``: its value (`moment_value`; ``axes(k)`` gives representation
    k's principal axes), its std_err from ``std_errs`` ({(label, a, b): std_err}, the
    jackknife's, or None), and with ``null`` "analytic" its permutation null (`moment_null`).
    ``index`` maps a name to its position in ``state``. A job's moments pass and
    `repalign.pairwise` both record through here.

    The pairs are measured side by side (`over_pairs`)."""
    invariants = functools.cache(lambda k, center: gram_invariants(state, k, center))

    def measure(pair):
        a, b = pair
        i, j = index[a], index[b]
        part = values.part()
        for config in configs:
            part.record(config, a, b, moment_value, config, state, i, j, axes)
            if std_errs is not None:
                part.record_std_err(config, a, b, std_errs[config.label, a, b])
            if null == "analytic":
                part.record_null(config, a, b, moment_null, config, state, i, j, invariants)
        return part

    for part in over_pairs(measure, pairs, configs, state, index, axes):
        values.merge(part)


def over_pairs(function, pairs, configs, state, index, axes):
    """``[function(pair) for pair in pairs]`` for ``configs`` of the ``pairs`` of ``state``,
    side by side (`repalign.blas_threads`). What the pairs share is made first: the state's
    centrings (`GramState.pair` moves the whole statistic once per centring, on first use:
    centred for all but KA, which reads raw products), then the principal axes that CCA and
    SVCCA read (``axes(k)``, cached by the caller), side by side."""
    for center in {config.name != "ka" for config in configs}:
        state.pair(0, 0, center=center)
    if any(config.name in ("cca", "svcca") for config in configs):
        map_over_blas_threads(axes, sorted({index[name] for pair in pairs for name in pair}))
    return map_over_blas_threads(function, pairs)


def moment_null(value, config, state, i, j, invariants):
    """The permutation null (`repalign.measures.nulls`) of ``value``, the value of ``config``
    for the pair (i, j) of ``state``; None for a configuration without a closed-form null, or
    fewer than 4 rows, where its variance is undefined. ``invariants(k, center)`` gives
    representation k's `GramInvariants` (`gram_invariants`, cached by the caller): centred for
    CKA and HSIC, raw for KA."""
    if config.kernel != "linear" or (config.name, config.estimator) not in ANALYTIC_NULLS:
        return None
    if state.n < MIN_NULL_ROWS:
        return None
    center = config.name != "ka"
    a, b = invariants(i, center), invariants(j, center)
    if config.name == "hsic":
        scale = (state.n - 1) ** 2  # HSIC_b = ⟨K̃, L̃⟩ / (n − 1)²
    else:
        scale = (a.squared_norm * b.squared_norm) ** 0.5  # KA, CKA = ⟨K, L⟩ / (‖K‖ ‖L‖)
    return null_distribution(value, scale, a, b)


def gram_invariants(state, k, center):
    """`GramInvariants` of the linear Gram matrix of representation k of ``state``."""
    return GramInvariants.from_moments(state.pair(k, k, center=center), 0)
