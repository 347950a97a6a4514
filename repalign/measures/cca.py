"""Canonical correlation analysis (CCA) and SVCCA of two paired representations."""

import numpy as np

from repalign.errors import InvalidParameterError
from repalign.measures.spectra import paired_spectra
from repalign.validation import check_pair


def cca(X, Y, *, squared=False):
    """Mean canonical correlation of the column-centred representations.

        ρ₁ ≥ … ≥ ρ_k = singular values of Uₓᵀ U_y,   k = min(rank X̃, rank Ỹ)
        cca = (1/k) Σ ρᵢ       (squared=True: (1/k) Σ ρᵢ², Yanai's GCD)

    with Uₓ an orthonormal basis of the column space of X̃. Invariant to any invertible linear
    map and translation of either side.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
    squared : bool, default=False

    Returns
    -------
    float
        In [0, 1]. When rank X̃ + rank Ỹ > n − 1 the two column spaces must share directions,
        whose correlations are 1 whatever the data: with too few samples CCA says little.

    Notes
    -----
    Directions with numerically zero variance are dropped (see `repalign.measures.spectra`).
    Cost as for `procrustes`.

    References
    ----------
    Hotelling (1936). Relations Between Two Sets of Variates. Raghu, Gilmer, Yosinski &
    Sohl-Dickstein (2017). SVCCA, for its use on neural representations.
    """
    X, Y = check_pair(X, Y, min_rows=2, finite=False)  # `paired_spectra` checks
    return cca_from_spectra(paired_spectra(X, Y), squared=squared)


def svcca(X, Y, *, variance=0.99):
    """SVCCA: CCA on the leading principal components of each side.

    Keeps, on each side, the fewest leading principal components whose variances s² (the
    eigenvalues of the covariance) add up to at least ``variance`` of the total, then returns
    the mean canonical correlation of the reduced representations.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
    variance : float in (0, 1], default=0.99

    Returns
    -------
    float

    References
    ----------
    Raghu, Gilmer, Yosinski & Sohl-Dickstein (2017). SVCCA: Singular Vector Canonical
    Correlation Analysis for Deep Learning Dynamics and Interpretability.
    """
    if isinstance(variance, bool) or not isinstance(variance, int | float):
        raise InvalidParameterError(f"variance must be a number in (0, 1]; got {variance!r}.")
    if not 0 < variance <= 1:
        raise InvalidParameterError(f"variance must be in (0, 1]; got variance={variance}.")
    X, Y = check_pair(X, Y, min_rows=2, finite=False)  # `paired_spectra` checks
    return svcca_from_spectra(paired_spectra(X, Y), variance=variance)


def cca_from_spectra(spectra, *, squared=False):
    """Mean canonical correlation from `repalign.measures.spectra` (either source)."""
    return _mean_correlation(spectra, *spectra.ranks, squared)


def svcca_from_spectra(spectra, *, variance=0.99):
    """SVCCA from `repalign.measures.spectra` (either source)."""
    return _mean_correlation(spectra, *svcca_components(spectra, variance), False)


def svcca_components(spectra, variance):
    """The principal components SVCCA keeps on each side: the fewest leading ones whose
    variances reach ``variance`` of the total, at most the rank."""
    return [
        min(_components_for(v, variance), rank)
        for v, rank in zip(spectra.variances, spectra.ranks, strict=True)
    ]


def _components_for(variances, fraction):
    """Fewest leading components whose variances reach ``fraction`` of the total."""
    explained = np.cumsum(variances) / variances.sum()
    return int(np.searchsorted(explained, fraction * (1 - 1e-12)) + 1)


def _mean_correlation(spectra, kx, ky, squared):
    rho = np.linalg.svd(spectra.whitened_cross(kx, ky), compute_uv=False)
    return float(np.mean(rho**2 if squared else rho))
