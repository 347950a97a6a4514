"""Orthogonal Procrustes similarity of two paired representations (docs/design.md §3)."""

import numpy as np

from repalign.measures.spectra import paired_spectra
from repalign.validation import check_pair


def procrustes(X, Y):
    """Procrustes similarity score, in [0, 1].

        score = ‖X̂ᵀŶ‖_*,   X̂ = X̃ / ‖X̃‖_F,  Ŷ = Ỹ / ‖Ỹ‖_F

    with X̃, Ỹ the column-centred representations and ‖·‖_* the nuclear norm. It is
    1 − ½·min_Q ‖X̂ − ŶQ‖²_F over orthogonal Q (zero-padding the narrower side), so 1 means
    the two agree up to rotation, reflection, translation and isotropic scaling.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
        Paired: row i of X and row i of Y describe the same sample.

    Returns
    -------
    float

    Notes
    -----
    O(n·(d_x + d_y)²) time and O((d_x + d_y)²) memory from second moments when
    n ≥ d_x + d_y + 2, else thin SVDs of the data.

    References
    ----------
    Schönemann (1966). A generalized solution of the orthogonal Procrustes problem.
    Williams, Kunz, Kornblith & Linderman (2021). Generalized Shape Metrics on Neural
    Representations (the angular form, `procrustes_distance`).
    """
    X, Y = check_pair(X, Y, min_rows=2, finite=False)  # `paired_spectra` checks
    return procrustes_from_spectra(paired_spectra(X, Y))


def procrustes_from_spectra(spectra):
    """The Procrustes score from `repalign.measures.spectra` (either source)."""
    nuclear = spectra.cross_singular_values().sum()
    total_x, total_y = spectra.total_variances()
    return float(nuclear / np.sqrt(total_x * total_y))


def procrustes_distance(X, Y):
    """Angular Procrustes distance arccos(score) in [0, π/2], of `procrustes`'s score.

    A score above 1 by float round-off (identical inputs) is read as 1, so that the distance
    is 0 rather than NaN.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)

    References
    ----------
    Williams et al. (2021). Generalized Shape Metrics on Neural Representations.
    """
    return float(np.arccos(min(procrustes(X, Y), 1.0)))
