"""The singular structure of two centred representations, behind Procrustes, CCA and SVCCA.

With X̃, Ỹ the column-centred representations and X̃ = Uₓ Sₓ Vₓᵀ (thin SVD), every measure of
this family is a function of

    the singular values sₓ, s_y                (principal variances s²)
    the cross matrix  X̃ᵀỸ                      (Procrustes: its nuclear norm)
    the whitened cross  Uₓᵀ U_y = Sₓ⁻¹ Vₓᵀ X̃ᵀỸ V_y S_y⁻¹   (CCA: its singular values)

`paired_spectra` computes them from d×d second moments when n ≥ d_x + d_y + 2
(`FeatureSpectra`, no n×n or n×d float64 copy), and from thin SVDs of the data otherwise
(`DataSpectra`, O(n²·d) time). Both give the same values.
"""

from functools import cached_property

import numpy as np

from repalign.measures.pair_moments import pair_statistic
from repalign.validation import checked_column_means


def paired_spectra(X, Y):
    """Spectra of paired ``X`` and ``Y``, checked but for NaN and Inf (the pass of column means
    checks those), from the cheaper source."""
    means = [checked_column_means(A, name=name) for A, name in ((X, "X"), (Y, "Y"))]
    if X.shape[0] >= X.shape[1] + Y.shape[1] + 2:
        return feature_spectra(pair_statistic(X, Y, means, norms=False), 0, 1)
    return DataSpectra(X, Y)


def feature_spectra(state, i, j, principal=None):
    """`FeatureSpectra` of representations i and j of a `GramState`.

    ``principal(k)`` may supply each representation's `PrincipalAxes` (an all-pairs job
    computes them once per representation, not once per pair).
    """
    principal = principal or (lambda k: principal_axes(state, k))
    return FeatureSpectra(state.pair(i, j, center=True), lambda: (principal(i), principal(j)))


def principal_axes(state, k):
    """The `PrincipalAxes` of representation k of a `GramState` (or a `PairStatistic`)."""
    centred = state.pair(k, k, center=True).cross(0, 0)
    mean = state.mean(k)
    norm = np.sqrt(np.trace(centred) + state.n * (mean @ mean))  # ‖X‖²_F = ‖X̃‖²_F + n‖μ‖²
    return PrincipalAxes(centred, norm)


class PrincipalAxes:
    """X̃ᵀX̃ = V Λ Vᵀ, eigenvalues descending, and the numerical rank.

    Centring rows costs up to ε‖x‖ each (ε the float64 machine epsilon), so a null direction
    of X̃ᵀX̃ shows an eigenvalue up to about ε‖X‖_F‖X̃‖_F, with ‖X‖_F uncentred (``norm``):
    eigenvalues below d times that count as null.
    """

    def __init__(self, centred_moments, norm):
        values, vectors = np.linalg.eigh(centred_moments)
        self.variances = np.maximum(values[::-1], 0.0)
        self.basis = vectors[:, ::-1]
        threshold = len(values) * np.finfo(float).eps * norm * np.sqrt(self.variances.sum())
        self.rank = int(np.sum(self.variances > threshold))


class FeatureSpectra:
    """From centred second moments (`repalign.stats.PairMoments`): X̃ᵀỸ, and the principal
    axes of each side (``axes()`` gives both), all d×d. The axes cost an eigendecomposition of
    each side, so they are computed only when a measure reads them (CCA and SVCCA do,
    Procrustes does not)."""

    def __init__(self, moments, axes):
        self._moments = moments
        self.cross = moments.cross(0, 1)  # X̃ᵀỸ
        self._axes = axes

    @cached_property
    def _principal(self):
        return self._axes()

    @property
    def variances(self):
        return [axes.variances for axes in self._principal]

    @property
    def ranks(self):
        return [axes.rank for axes in self._principal]

    @property
    def bases(self):
        """Each side's principal directions, columns in descending order of variance."""
        return [axes.basis for axes in self._principal]

    def total_variances(self):
        """‖X̃‖²_F and ‖Ỹ‖²_F, the traces of X̃ᵀX̃ and ỸᵀỸ."""
        return [np.trace(self._moments.cross(r, r)) for r in (0, 1)]

    def cross_singular_values(self):
        """Singular values of X̃ᵀỸ."""
        return np.linalg.svd(self.cross, compute_uv=False)

    def whitened_cross(self, kx, ky):
        """Uₓᵀ U_y over the leading kx and ky principal directions (kx, ky ≤ ranks)."""
        Vx, Vy = self.bases[0][:, :kx], self.bases[1][:, :ky]
        scale_x = 1.0 / np.sqrt(self.variances[0][:kx])
        scale_y = 1.0 / np.sqrt(self.variances[1][:ky])
        return scale_x[:, None] * (Vx.T @ self.cross @ Vy) * scale_y[None, :]


class DataSpectra:
    """From thin SVDs of the centred data, for n < d_x + d_y + 2.

    As in ``numpy.linalg.matrix_rank``, singular values below max(n, d)·ε times the scale of
    the data count as null; the scale is the uncentred ‖X‖_F, since centring rows far from
    the origin costs up to ε‖x‖ each.
    """

    def __init__(self, X, Y):
        X, Y = (np.asarray(A, dtype=np.float64) for A in (X, Y))
        svds = [np.linalg.svd(A - A.mean(axis=0), full_matrices=False) for A in (X, Y)]
        self._left = [U for U, _, _ in svds]
        singular = [s for _, s, _ in svds]
        self.variances = [s * s for s in singular]
        self.ranks = [
            int(np.sum(s > max(A.shape) * np.finfo(float).eps * np.linalg.norm(A)))
            for s, A in zip(singular, (X, Y), strict=True)
        ]
        self._singular = singular

    def total_variances(self):
        """‖X̃‖²_F and ‖Ỹ‖²_F, the sums of the principal variances."""
        return [variances.sum() for variances in self.variances]

    def cross_singular_values(self):
        """Singular values of X̃ᵀỸ = Vₓ Sₓ Uₓᵀ U_y S_y V_yᵀ, i.e. of Sₓ Uₓᵀ U_y S_y."""
        sx, sy = self._singular
        core = sx[:, None] * (self._left[0].T @ self._left[1]) * sy[None, :]
        return np.linalg.svd(core, compute_uv=False)

    def whitened_cross(self, kx, ky):
        """Uₓᵀ U_y over the leading kx and ky principal directions (kx, ky ≤ ranks)."""
        return self._left[0][:, :kx].T @ self._left[1][:, :ky]
