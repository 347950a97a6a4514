"""The second moments of one pair of representations in memory, built for one library call of a
linear-kernel measure (docs/design.md §3, "Where the numbers come from").

`pair_statistic` accumulates the statistic of `repalign.stats.GramState` for two
representations,

    M = Σᵢ zᵢzᵢᵀ,   zᵢ = [xᵢ − μₓ, ‖xᵢ − μₓ‖², yᵢ − μ_y, ‖yᵢ − μ_y‖², 1],

with μ the float64 column means, and returns what answers the state's ``n``, ``mean`` and
``pair`` questions, so that `FeatureProducts` and `feature_spectra` read it as they read a
job's state. It costs what one pair needs and no more:

- the means come from the pass of column sums that also checks the input is finite
  (`repalign.validation.checked_column_means`), so the data is read once before the products;
- one float64 row buffer serves every row block: each block is cast and shifted by one ufunc
  into it, and one dsyrk adds its products;
- the squared-norm columns, which only Song's HSIC_u, Lange's CKA and distance alignment read,
  are computed only when ``norms`` is set (the result is then a `GramState`); otherwise they
  hold NaN, so that no formula can read them by mistake, and moving the moments to another
  centre is a symmetric rank-two update of the feature columns (`PairStatistic`, O(D²)) instead
  of the full affine map of `GramState.pair`.
"""

import numpy as np
from scipy.linalg.blas import dsyrk

from repalign.blocks import row_slices
from repalign.stats import GramState, PairMoments


def pair_statistic(X, Y, means, *, norms):
    """The moments of two paired, checked arrays ``X`` and ``Y`` shifted by their column
    ``means`` (float64, from `repalign.validation.checked_column_means`): a `GramState` when
    the squared-norm columns are wanted (``norms``), else a `PairStatistic`."""
    dims = (X.shape[1], Y.shape[1])
    offsets = (0, dims[0] + 1, dims[0] + dims[1] + 2)
    upper = _accumulate((X, Y), means, offsets, norms)
    if norms:
        return GramState.from_moments(dims, means, upper)
    return PairStatistic(dims, means, upper)


class PairStatistic:
    """The statistic of two representations without its squared-norm columns (they hold NaN),
    read like a `GramState`: ``n``, ``mean(k)`` and ``pair(i, j, center=...)``."""

    def __init__(self, dims, shifts, upper):
        self.dims, self.shifts = dims, shifts
        self.offsets = (0, dims[0] + 1, dims[0] + dims[1] + 2)
        self._moments = _symmetric(upper)
        self.n = round(self._moments[-1, -1])
        self._moved = {}

    def mean(self, k):
        """Column means of representation k (0 or 1)."""
        start, stop = self.offsets[k], self.offsets[k + 1] - 1
        return self.shifts[k] + self._moments[start:stop, -1] / self._moments[-1, -1]

    def pair(self, i, j, *, center):
        """`PairMoments` of representations i and j (each 0 or 1), centred at their exact means
        (``center=True``) or not centred, as `GramState.pair` gives them."""
        if center not in self._moved:
            targets = [self.mean(k) if center else np.zeros(d) for k, d in enumerate(self.dims)]
            deltas = [t - c for t, c in zip(targets, self.shifts, strict=True)]
            self._moved[center] = _moved(self._moments.copy(), self.offsets, deltas)
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


def _symmetric(upper):
    M = upper + upper.T
    M[np.diag_indices_from(M)] *= 0.5
    return M


def _moved(M, offsets, deltas):
    """The moments of the feature columns after each shift moves by δ: with s = Σ z the column
    sums (M's last column) and n = M[-1, -1],

        Σ (u − δᵤ)(v − δᵥ) = Mᵤᵥ − δᵤsᵥ − sᵤδᵥ + n δᵤδᵥ,   Σ (u − δᵤ) = sᵤ − n δᵤ,

    that is M − δtᵀ − tδᵀ with t = s − n δ/2 (δ is 0 on the constant column). The norm columns
    are not moved: they are NaN here."""
    delta = np.zeros(M.shape[0])
    for k, d in enumerate(deltas):
        delta[offsets[k] : offsets[k] + len(d)] = d
    t = M[:, -1] - 0.5 * M[-1, -1] * delta
    M -= np.outer(delta, t)
    M -= np.outer(t, delta)
    return M
