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
- each centring is one rank-2(K + 1) update of the whole matrix (`Moments`), a few BLAS
  calls, where `GramState.pair` applies the affine map row by row. For K = 2 that is the
  faster (D = 1,026: 5 ms against 10 ms); for many representations it is not (K = 8,
  D = 4,105: 0.23 s against 0.13 s), so `repalign.pairwise` centres its state as a job does.
"""

import numpy as np
from scipy.linalg.blas import dsyrk

from repalign.blocks import row_slices
from repalign.stats import PairMoments, symmetric_from_upper


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
    state: ``n``, ``mean(k)`` and ``pair(i, j, center=...)``.

    Moving the shifts cᵏ by δᵏ is z' = T z with T = I + A Bᵀ, A and B of K + 1 columns for K
    representations: the feature rows get −δᵏ times the constant 1 (A's first column, B's
    first column eₗₐₛₜ), and each squared-norm row gets −2δᵏᵀx + ‖δᵏ‖² (A's column eₐₖ, B's
    column [−2δᵏ on xᵏ, ‖δᵏ‖² on the constant]). So

        T M Tᵀ = M + A G'ᵀ + G' Aᵀ,   G = M B,  G' = G + ½ A (BᵀG),

    a rank-2(K + 1) update: O(K·D²) in a few BLAS calls, where `GramState.pair` applies the
    map row by row. Squared-norm columns that hold NaN (`pair_statistic` without ``norms``)
    stay NaN and touch nothing else: B is zero on them and G is formed without them.
    """

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
            self._moved[center] = self._move(deltas)
        M = self._moved[center]
        return PairMoments(M, *(slice(self.offsets[k], self.offsets[k + 1] - 1) for k in (i, j)))

    def _move(self, deltas):
        M = self._moments
        width, count = M.shape[0], len(self.dims)
        A, B = np.zeros((width, count + 1)), np.zeros((width, count + 1))
        B[-1, 0] = 1.0
        G = np.zeros((width, count + 1))
        G[:, 0] = M[:, -1]
        for k, delta in enumerate(deltas):
            features, norm = (
                slice(self.offsets[k], self.offsets[k + 1] - 1),
                self.offsets[k + 1] - 1,
            )
            A[features, 0] = -delta
            A[norm, k + 1] = 1.0
            B[features, k + 1] = -2.0 * delta
            B[-1, k + 1] = delta @ delta
            G[:, k + 1] = M[:, features] @ B[features, k + 1] + M[:, -1] * B[-1, k + 1]
        norms = self.offsets[1:] - 1
        rows = np.ones(width, dtype=bool)
        rows[norms] = False  # B is zero there, and G may be NaN
        H = B[rows].T @ G[rows]
        G += 0.5 * A @ H
        update = A @ G.T
        moved = M + update
        moved += update.T
        return moved


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
