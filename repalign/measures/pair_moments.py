"""Second moments read fast: the statistic of one pair of representations in memory, built for
one library call of a linear-kernel measure, and the centrings of any moment matrix of the
`repalign.stats.GramState` layout (docs/design.md §3, "Where the numbers come from").

`pair_statistic` accumulates, for two representations,

    M = Σᵢ zᵢzᵢᵀ,   zᵢ = [xᵢ − μₓ, ‖xᵢ − μₓ‖², yᵢ − μ_y, ‖yᵢ − μ_y‖², 1],

with μ the float64 column means, and `Moments` answers the state's ``n``, ``mean`` and ``pair``
questions from it, so that `FeatureProducts` and `feature_spectra` read it as they read a job's
state. It costs what one pair needs and no more:

- the means come from the pass of column sums that also checks the input is finite
  (`repalign.validation.checked_column_means`), so the data is read once before the products;
- one float64 row buffer serves every row block: each block is cast and shifted by one ufunc
  into it, and one dsyrk adds its products;
- the squared-norm columns, which only Song's HSIC_u, Lange's CKA and distance alignment read,
  are computed only when ``norms`` is set; otherwise they hold NaN, so that no formula can
  read them by mistake;
- each centring is one rank-2(K + 1) update of the whole matrix
  (`repalign.stats.moved_moments`, as a job's `GramState.pair` moves its state).
"""

import numpy as np
from scipy.linalg.blas import dsyrk

from repalign.blocks import row_slices
from repalign.stats import PairMoments, moved_moments, symmetric_from_upper


def pair_statistic(X, Y, means, *, norms):
    """The `Moments` of two paired, checked arrays ``X`` and ``Y`` shifted by their column
    ``means`` (float64, from `repalign.validation.checked_column_means`); the squared-norm
    columns hold NaN unless ``norms``."""
    dims = (X.shape[1], Y.shape[1])
    offsets = (0, dims[0] + 1, dims[0] + dims[1] + 2)
    upper = _accumulate((X, Y), means, offsets, norms)
    return Moments(symmetric_from_upper(upper), dims, means)


class Moments:
    """A full moment matrix Σ zzᵀ of the `repalign.stats.GramState` layout, read like the
    state: ``n``, ``mean(k)`` and ``pair(i, j, center=...)``, each centring moved to once
    (`repalign.stats.moved_moments`)."""

    def __init__(self, moments, dims, shifts):
        self._moments = moments
        self.dims = tuple(dims)
        self.shifts = shifts
        self.offsets = np.concatenate([[0], np.cumsum([d + 1 for d in self.dims])])
        self.n = round(moments[-1, -1])
        self._moved = {}

    def mean(self, k):
        """Column means of representation k."""
        start, stop = self.offsets[k], self.offsets[k + 1] - 1
        return self.shifts[k] + self._moments[start:stop, -1] / self._moments[-1, -1]

    def pair(self, i, j, *, center):
        """`PairMoments` of representations i and j, centred at their exact means
        (``center=True``) or not centred, as `GramState.pair` gives them."""
        if center not in self._moved:
            targets = [self.mean(k) if center else np.zeros(d) for k, d in enumerate(self.dims)]
            deltas = [t - c for t, c in zip(targets, self.shifts, strict=True)]
            self._moved[center] = moved_moments(self._moments.copy(), self.dims, deltas)
        M = self._moved[center]
        return PairMoments(M, *(slice(self.offsets[k], self.offsets[k + 1] - 1) for k in (i, j)))


def _accumulate(arrays, means, offsets, norms):
    """Upper triangle of Σ zzᵀ, one dsyrk per row block of a reused float64 buffer."""
    n = arrays[0].shape[0]
    width = offsets[-1] + 1
    upper = np.zeros((width, width), order="F")
    buffer = np.empty((min(n, next(row_slices(n, width)).stop), width))
    buffer[:, -1] = 1.0
    if not norms:
        buffer[:, [offsets[1] - 1, offsets[2] - 1]] = np.nan
    for rows in row_slices(n, width):
        Z = buffer[: rows.stop - rows.start]
        for k, (A, mean) in enumerate(zip(arrays, means, strict=True)):
            start, stop = offsets[k], offsets[k + 1] - 1
            np.subtract(A[rows], mean, out=Z[:, start:stop])
            if norms:
                np.einsum("ij,ij->i", Z[:, start:stop], Z[:, start:stop], out=Z[:, stop])
        # Zᵀ of a C-ordered Z is Fortran-ordered: dsyrk reads it without a copy.
        upper = dsyrk(1.0, Z.T, beta=1.0, c=upper, trans=0, overwrite_c=True)
    return upper
