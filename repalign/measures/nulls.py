"""The permutation null of linear kernel alignment, CKA and HSIC, in closed form
(docs/theory.md §2.10).

Under the null hypothesis that the rows of X and Y are not paired, every pairing of them is as
likely as the observed one. With A, B the two n×n Gram matrices (centred for CKA and HSIC, raw
for KA), each of these measures is T = ⟨A, P B Pᵀ⟩ for P = I, divided by a constant that no
permutation P changes. `permutation_moments` gives the exact mean and variance of T over all n!
permutations from a few sums over each matrix (`GramInvariants`); for a linear kernel these
are second and fourth moments of the rows, which a job's statistic already holds
(`GramInvariants.from_moments`). So a null costs O(d²) per representation and O(1) per pair.

The p-value is the upper tail of the gamma distribution with that mean and variance (T ≥ 0,
since A and B are positive semi-definite), the approximation of Gretton et al. (2008) and of
Josse, Pagès & Husson (2008), whose mean and variance of the RV coefficient (linear CKA) these
formulas reproduce.
"""

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaincc

ANALYTIC_NULLS = {("ka", None), ("cka", "biased"), ("hsic", "biased")}
"""The linear-kernel (measure, estimator) pairs with a closed-form null."""
MIN_NULL_ROWS = 4
"""The fewest rows with a closed-form null: its variance divides by n(n − 3)."""
CALIBRATED = {"ka", "cka"}
"""Measures whose largest value is 1: their calibrated score is (value − null mean) / (1 − null
mean), 0 for unpaired rows on average and 1 for identical representations."""


@dataclass(frozen=True)
class NullDistribution:
    """A value's distribution under the permutation null: its mean and standard deviation, and
    the p-value P(value′ ≥ value)."""

    mean: float
    std: float
    p_value: float


@dataclass(frozen=True)
class GramInvariants:
    """The sums of a symmetric n×n matrix A that the permutation moments of ⟨A, P B Pᵀ⟩ need.

    A is split, as the permutations act on it, into orthogonal parts (docs/theory.md): its
    diagonal's mean and deviations δᵢ; the mean ō of its off-diagonal entries, their row
    effects αᵢ and the rest γᵢⱼ, so that aᵢⱼ = ō + αᵢ + αⱼ + γᵢⱼ for i ≠ j with Σαᵢ = 0 and
    Σⱼ γᵢⱼ = 0. Each field is a sum over those parts.
    """

    n: int
    squared_norm: float  # ‖A‖²_F
    diagonal_sum: float  # Σ aᵢᵢ
    off_diagonal_sum: float  # Σ_{i≠j} aᵢⱼ
    diagonal_spread: float  # Σ δᵢ²
    row_spread: float  # Σ αᵢ²
    diagonal_by_row: float  # Σ δᵢ αᵢ
    rest: float  # Σ_{i≠j} γᵢⱼ²

    @classmethod
    def from_sums(cls, n, *, trace, diagonal_squares, total, frobenius, row_squares, diagonal_rows):
        """From tr A, Σ aᵢᵢ², 1ᵀA1, ‖A‖²_F, ‖A1‖² and Σ aᵢᵢ (A1)ᵢ.

        The off-diagonal row sums are Rᵢ = (A1)ᵢ − aᵢᵢ, and αᵢ = (Rᵢ − R̄)/(n − 2). Each part is
        a difference of sums, exact up to rounding of the order of ε times the largest sum; a
        part that rounding leaves below zero is 0.
        """
        if n < MIN_NULL_ROWS:
            raise ValueError(f"the permutation null needs n ≥ {MIN_NULL_ROWS} rows; got {n}.")
        off = total - trace
        rows_squared = row_squares - 2.0 * diagonal_rows + diagonal_squares  # Σ Rᵢ²
        row_spread = max(rows_squared - off * off / n, 0.0) / (n - 2) ** 2
        return cls(
            n=n,
            squared_norm=frobenius,
            diagonal_sum=trace,
            off_diagonal_sum=off,
            diagonal_spread=max(diagonal_squares - trace * trace / n, 0.0),
            row_spread=row_spread,
            diagonal_by_row=(diagonal_rows - diagonal_squares - trace * off / n) / (n - 2),
            rest=max(
                frobenius - diagonal_squares - off * off / (n * (n - 1)) - 2 * (n - 2) * row_spread,
                0.0,
            ),
        )

    @classmethod
    def from_gram(cls, A):
        """From an explicit symmetric matrix."""
        A = np.asarray(A, dtype=np.float64)
        diagonal, rows = np.diag(A), A.sum(axis=1)
        return cls.from_sums(
            A.shape[0],
            trace=diagonal.sum(),
            diagonal_squares=diagonal @ diagonal,
            total=rows.sum(),
            frobenius=np.einsum("ij,ij->", A, A),
            row_squares=rows @ rows,
            diagonal_rows=diagonal @ rows,
        )

    @classmethod
    def from_moments(cls, moments, r):
        """For A = Z Zᵀ, the linear Gram matrix of representation ``r`` of a
        `repalign.stats.PairMoments` (centred or not): with s = Zᵀ1 and aᵢ = ‖zᵢ‖²,
        tr A = Σ aᵢ, Σ aᵢᵢ² = Σ aᵢ², 1ᵀA1 = ‖s‖², ‖A‖²_F = ‖ZᵀZ‖²_F, ‖A1‖² = sᵀ(ZᵀZ)s and
        Σ aᵢ (A1)ᵢ = (Σ aᵢ zᵢ)ᵀ s: O(d²), no n×n matrix."""
        cross, sums = moments.cross(r, r), moments.feature_sums(r)
        return cls.from_sums(
            round(moments.n),
            trace=float(moments.norm_sum(r)),
            diagonal_squares=float(moments.norm_products(r, r)),
            total=float(sums @ sums),
            frobenius=float(np.einsum("ij,ij->", cross, cross)),
            row_squares=float(sums @ cross @ sums),
            diagonal_rows=float(moments.features_times_norms(r, r) @ sums),
        )


def permutation_moments(a, b):
    """Mean and variance of T = ⟨A, P B Pᵀ⟩ over the n! permutation matrices P, for the
    `GramInvariants` ``a`` of A and ``b`` of B (docs/theory.md §2.10):

        E T   = (Σ aᵢᵢ)(Σ bᵢᵢ)/n + (Σ_{i≠j} aᵢⱼ)(Σ_{i≠j} bᵢⱼ)/(n(n−1)),
        Var T = tr(W Gₐ W G_b)/(n − 1) + 2 (Σ γᵢⱼ²)(Σ ηᵢⱼ²)/(n(n − 3)),

    with Gₐ = [[Σδᵢ², Σδᵢαᵢ], [Σδᵢαᵢ, Σαᵢ²]] (G_b likewise) and W = diag(1, 2(n − 2)).
    """
    if a.n != b.n:
        raise ValueError(f"the matrices have {a.n} and {b.n} rows.")
    n = a.n
    mean = a.diagonal_sum * b.diagonal_sum / n + a.off_diagonal_sum * b.off_diagonal_sum / (
        n * (n - 1)
    )
    weights = np.diag([1.0, 2.0 * (n - 2)])
    linear = np.trace(weights @ _spreads(a) @ weights @ _spreads(b)) / (n - 1)
    return mean, linear + 2.0 * a.rest * b.rest / (n * (n - 3))


def _spreads(invariants):
    return np.array(
        [
            [invariants.diagonal_spread, invariants.diagonal_by_row],
            [invariants.diagonal_by_row, invariants.row_spread],
        ]
    )


def null_distribution(value, scale, a, b):
    """The `NullDistribution` of ``value`` = T / ``scale``, for T = ⟨A, P B Pᵀ⟩ at P = I and
    the `GramInvariants` ``a``, ``b``; None when the null is degenerate (zero variance).

    The p-value is Q(k, T/θ), the upper tail of the gamma distribution of shape k = E²/Var and
    scale θ = Var/E (Gretton et al. 2008).
    """
    mean, variance = permutation_moments(a, b)
    if not (variance > 0 and mean > 0):
        return None
    statistic = value * scale
    p_value = float(gammaincc(mean * mean / variance, max(statistic, 0.0) * mean / variance))
    return NullDistribution(mean / scale, float(np.sqrt(variance)) / scale, p_value)


def calibrated(measure, value, null):
    """(value − null mean) / (1 − null mean) for a measure of `CALIBRATED`; else None."""
    if measure not in CALIBRATED or null is None or not null.mean < 1:
        return None
    return (value - null.mean) / (1.0 - null.mean)
