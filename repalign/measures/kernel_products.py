"""The inner products of kernel matrices that KA, CKA and HSIC are made of.

Each measure of `repalign.measures.alignment` is a ratio of these products of the kernels
K₀ = K (of X) and K₁ = L (of Y):

    raw       ⟨Kᵣ, Kₛ⟩_F                                            (uncentered, KA)
    centered  ⟨H Kᵣ H, H Kₛ H⟩_F,  H = I − 11ᵀ/n                    (biased HSIC, CKA)
    song      HSIC_u(Kᵣ, Kₛ), Song et al. (2012), eq. (5)           (unbiased HSIC)
    lange     ⟨K'ᵣ, K'ₛ⟩_F,  K' = H K H with its diagonal set to 0   (Lange et al. 2022)

They come from two sources with identical values: `GramProducts` from explicit n×n Gram
matrices (any kernel; O(n²) memory), and `FeatureProducts` from the d×d second moments of
`repalign.stats.GramState` (linear kernel only; O(d²) memory). `kernel_products` picks the
cheaper one.
"""

from functools import cached_property

import numpy as np

from repalign.measures.kernels import _linear_gram, _rbf_gram, resolve_sigma
from repalign.measures.pair_moments import pair_statistic
from repalign.validation import checked_column_means


def kernel_products(X, Y, *, kernel, sigma, norms=True):
    """The products for checked, paired ``X`` and ``Y`` under ``kernel``.

    The linear kernel uses the feature-space form when it is cheaper, that is when the
    O(n·D²) moments cost less than the O(n²·D) Gram matrices (n ≥ D = d_x + d_y + 2). Its
    input need not have been checked for NaN and Inf: the pass of column means does it
    (`repalign.validation.checked_column_means`). ``norms=False`` serves only ``raw`` and
    ``centered`` (the products of KA, biased CKA and biased HSIC), and skips the squared-norm
    columns that ``song`` and ``lange`` read (`repalign.measures.pair_moments`).
    """
    n = X.shape[0]
    if kernel == "linear":
        means = [checked_column_means(A, name=name) for A, name in ((X, "X"), (Y, "Y"))]
        if n >= X.shape[1] + Y.shape[1] + 2:
            return FeatureProducts(pair_statistic(X, Y, means, norms=norms))
        centred = [_linear_gram(A - mean) for A, mean in zip((X, Y), means, strict=True)]
        return GramProducts(_linear_gram(X), _linear_gram(Y), translated=centred)
    sigmas = [resolve_sigma(A, sigma, name=name) for A, name in ((X, "X"), (Y, "Y"))]
    return GramProducts(_rbf_gram(X, sigmas[0]), _rbf_gram(Y, sigmas[1]))


def song_hsic(n, trace, sum_r, sum_s, cross_sum):
    """HSIC_u = [Tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2·1ᵀK̃L̃1/(n−2)] / (n(n−3)).

    K̃, L̃ are K, L with zero diagonals (Song et al. 2012, eq. (5)).
    """
    return (trace + sum_r * sum_s / ((n - 1) * (n - 2)) - 2.0 * cross_sum / (n - 2)) / (n * (n - 3))


class GramProducts:
    """Products from explicit n×n Gram matrices: O(n²) memory, O(n²) time per product.

    ``translated`` are Gram matrices of the same representations after any translation of
    their rows, used for the translation-invariant products (all but ``raw``). For the linear
    kernel these are the Grams of the centred data: uncentred Grams of data far from the
    origin lose digits to cancellation in H K H and in the Song estimator.
    """

    def __init__(self, K, L, *, translated=None):
        self.n = K.shape[0]
        self._grams = (K, L)
        self._translated = translated or self._grams

    @cached_property
    def _centered(self):
        return tuple(_double_center(G) for G in self._translated)

    @cached_property
    def _hollow(self):
        return tuple(_zero_diagonal(G) for G in self._translated)

    @cached_property
    def _hollow_centered(self):
        return tuple(_zero_diagonal(G) for G in self._centered)

    def raw(self, r, s):
        return np.vdot(self._grams[r], self._grams[s])

    def centered(self, r, s):
        return np.vdot(self._centered[r], self._centered[s])

    def lange(self, r, s):
        return np.vdot(self._hollow_centered[r], self._hollow_centered[s])

    def song(self, r, s):
        Kr, Ks = self._hollow[r], self._hollow[s]
        return song_hsic(
            self.n,
            trace=np.vdot(Kr, Ks.T),
            sum_r=Kr.sum(),
            sum_s=Ks.sum(),
            cross_sum=Kr.sum(axis=0) @ Ks.sum(axis=1),
        )


def _double_center(G):
    """H G H for a symmetric G: subtract row and column means, add back the grand mean."""
    means = G.mean(axis=0)
    return G - means[:, None] - means[None, :] + means.mean()


def _zero_diagonal(G):
    G = G.copy()
    np.fill_diagonal(G, 0.0)
    return G


class FeatureProducts:
    """Products of linear kernels from second moments: O(d²) memory, no n×n matrix.

    Representations ``i`` and ``j`` of the `GramState` (or of a
    `repalign.measures.pair_moments.PairStatistic`) play X and Y.

    With K = X Xᵀ: ⟨K, L⟩ = ‖XᵀY‖²_F, and after centring the columns ⟨HKH, HLH⟩ = ‖X̃ᵀỸ‖²_F.
    The diagonal of H K H is aᵢ = ‖x̃ᵢ‖², so ⟨K', L'⟩ = ‖X̃ᵀỸ‖²_F − Σᵢ aᵢbᵢ. HSIC_u is invariant
    to translating either representation, so it is computed on centred rows, where
    Tr(K̃L̃) = ‖X̃ᵀỸ‖²_F − Σ aᵢbᵢ, 1ᵀK̃1 = ‖X̃ᵀ1‖² − Σ aᵢ and
    1ᵀK̃L̃1 = (X̃ X̃ᵀ1 − a)ᵀ(Ỹ Ỹᵀ1 − b).
    """

    def __init__(self, state, i=0, j=1):
        self.n = state.n
        self._state, self._pair = state, (i, j)

    @cached_property
    def _raw(self):
        return self._state.pair(*self._pair, center=False)

    @cached_property
    def _centered(self):
        return self._state.pair(*self._pair, center=True)

    def raw(self, r, s):
        return _squared_frobenius(self._raw.cross(r, s))

    def centered(self, r, s):
        return _squared_frobenius(self._centered.cross(r, s))

    def lange(self, r, s):
        m = self._centered
        return _squared_frobenius(m.cross(r, s)) - m.norm_products(r, s)

    def song(self, r, s):
        m = self._centered
        sum_r, sum_s = m.feature_sums(r), m.feature_sums(s)
        cross_sum = (
            sum_r @ m.cross(r, s) @ sum_s
            - sum_r @ m.features_times_norms(r, s)
            - m.features_times_norms(s, r) @ sum_s
            + m.norm_products(r, s)
        )
        return song_hsic(
            self.n,
            trace=_squared_frobenius(m.cross(r, s)) - m.norm_products(r, s),
            sum_r=sum_r @ sum_r - m.norm_sum(r),
            sum_s=sum_s @ sum_s - m.norm_sum(s),
            cross_sum=cross_sum,
        )


def _squared_frobenius(A):
    # einsum reads a strided block of the moment matrix in place; vdot would copy it first
    return float(np.einsum("ij,ij->", A, A))
