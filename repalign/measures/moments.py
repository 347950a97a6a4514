"""Linear-kernel measures from second moments: the value of one measure configuration for a
pair of representations of a `repalign.stats.GramState` (docs/design.md §3, "Where the numbers
come from"). An all-pairs job and `repalign.pairwise` both read every linear-kernel value here.
"""

from repalign.measures.alignment import kernel_measure
from repalign.measures.cca import cca_from_spectra, svcca_from_spectra
from repalign.measures.kernel_products import FeatureProducts
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
