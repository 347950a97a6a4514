"""RBF kernel measures at scale from random features, as mergeable statistics (docs/design.md §4).

An exact RBF CKA needs n×n Gram matrices. Here each representation is mapped to a few thousand
columns whose linear kernel approximates its RBF kernel k(x, y) = exp(−‖x − y‖²/(2σ²)):

    RandomFourierFeatures   φ(x) = sqrt(2/m) cos(Wᵀx + b)    unbiased: E φ(x)ᵀφ(y) = k(x, y)
    Nystrom                 [k(Z, x); k(P, x)]                K̂ = K(·, Z) K(Z, Z)⁻¹ K(Z, ·) ≼ K,
                                                              its error estimated at probes P

The columns of every representation go through one `repalign.stats.GramState` (one pass over the
rows, O(D²) memory, merged across workers with ``+``), and `approximate_products` reads KA, CKA,
HSIC and their kernel products for any pair from the state's cross moments, never from the data.
Each estimate carries a standard error: the jackknife over the independent parts of the
approximation (blocks of random features, Nyström's probes). MMD² between two samples is a
difference of mean embeddings, `MeanEmbedding`, also a mergeable sum.

The recipe of a job: one map per representation (`RandomFourierFeatures` with the job's seed, or
`Nystrom` on the rows `nystrom_rows` picks), ``state.add_block([map.transform(rows), ...])``
on every row block, states merged, then `approximate_products(state, i, j, maps[i], maps[j])`.
`cka_rff`, `cka_nystrom` and `mmd2_rff` do exactly this for in-memory arrays.

References
----------
Rahimi & Recht (2007). Random Features for Large-Scale Kernel Machines. NIPS.
Williams & Seeger (2001). Using the Nyström Method to Speed Up Kernel Machines. NIPS.
Efron & Stein (1981). The Jackknife Estimate of Variance. Annals of Statistics 9(3).
"""

import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
from scipy.linalg import solve_triangular

from repalign.blocks import row_slices
from repalign.errors import InvalidParameterError, ShapeError, ZeroVarianceError
from repalign.measures.kernels import resolve_sigma
from repalign.stats import GramState
from repalign.validation import (
    check_int_in_range,
    check_option,
    check_pair,
    check_representation,
    check_sigma,
    check_two_samples,
)

EIGENVALUE_FLOOR = 1e-10
"""Nyström adds this fraction of tr K(Z, Z) (the number of landmarks) to every eigenvalue."""

RFF_BLOCKS = 16
"""Independent blocks of random features, the default of `RandomFourierFeatures`."""

PROBE_SHARE = 0.2
"""The share of a Nyström map's kernel columns that are probes, not landmarks (`nystrom_rows`)."""

MIN_PROBES = 3
"""Probes a `Nystrom` map needs: pairs of them estimate one term, and one is left out."""

MMD_RFF_ESTIMATORS = ("unbiased", "biased")
"""The estimators of `repalign.mmd2` that random features approximate."""


@dataclass(frozen=True)
class Estimate:
    """An approximate value and its standard error over the randomness of the approximation."""

    value: float
    std_err: float


@dataclass(frozen=True)
class Approximation:
    """An approximate measure of in-memory arrays, with what it was computed from.

    Attributes
    ----------
    value, std_err : float
        The estimate and its standard error (see `approximate_products`, `approximate_mmd2`).
    n_features : int
        Random features per representation, or Nyström's kernel columns (landmarks and
        probes).
    seed : int
        Seed of the random features or of the landmark sample.
    """

    value: float
    std_err: float
    n_features: int
    seed: int


class RandomFourierFeatures:
    """Random Fourier features of the RBF kernel, drawn as independent blocks.

        φₖ(x) = sqrt(2/m) cos(Wₖᵀx + bₖ),   Wₖ ~ N(0, I/σ²) of shape (dim, m),  bₖ ~ U(0, 2π)ᵐ

    for k(x, y) = exp(−‖x − y‖²/(2σ²)), with m = n_features / blocks columns per block k. Each
    block alone is unbiased, E[φₖ(x)ᵀφₖ(y)] = k(x, y) (Bochner's theorem), and the whole map
    averages them: K̂ = (1/B) Σₖ ΦₖΦₖᵀ.

    Block k is drawn from its own stream, child k of ``numpy.random.SeedSequence(seed)``, so
    blocks k ≠ l are independent, also between two maps that share the seed (whatever their
    widths or bandwidths). `approximate_products` only ever multiplies such blocks, so one seed
    can serve every representation of a job.

    Parameters
    ----------
    dim : int
        Width of the representation.
    n_features : int
        Total number of features, a multiple of ``blocks``.
    sigma : float
        Bandwidth σ > 0 (resolve ``"median"`` first with `repalign.median_sigma`).
    seed : int
        Seed (≥ 0); the map is a deterministic function of all five arguments.
    blocks : int, default=16
        Independent blocks, at least 3: two distinct blocks give the debiased products, and
        their standard error leaves one block out.

    References
    ----------
    Rahimi & Recht (2007). Random Features for Large-Scale Kernel Machines. NIPS.
    """

    def __init__(self, dim, n_features, sigma, *, seed, blocks=RFF_BLOCKS):
        self.dim = _check_at_least(dim, name="dim", low=1)
        self.blocks = _check_at_least(
            blocks, name="blocks", low=3, why=" (two to debias, after one is left out)"
        )
        self.n_features = _check_at_least(
            n_features, name="n_features", low=self.blocks, why=" (one per block)"
        )
        if self.n_features % self.blocks:
            raise InvalidParameterError(
                f"n_features must be a multiple of blocks={self.blocks}, the independent "
                f"blocks of features; got n_features={self.n_features}."
            )
        self.sigma = _check_bandwidth(sigma)
        self.seed = _check_at_least(seed, name="seed", low=0)
        width = self.n_features // self.blocks
        weights, phases = [], []
        for stream in np.random.SeedSequence(self.seed).spawn(self.blocks):
            rng = np.random.default_rng(stream)
            weights.append(rng.standard_normal((self.dim, width)))
            phases.append(rng.uniform(0.0, 2.0 * np.pi, width))
        self._weights = np.concatenate(weights, axis=1) / self.sigma
        self._phases = np.concatenate(phases)
        self._scale = np.sqrt(2.0 / width)

    def transform(self, X):
        """The features of the rows of X: shape (n_rows, n_features), float64, block after block.

        Parameters
        ----------
        X : array-like of shape (n_rows, dim)
        """
        X = _check_rows(X, self.dim)
        features = X @ self._weights
        features += self._phases
        np.cos(features, out=features)
        features *= self._scale
        return features

    @property
    def _units(self):
        return self.blocks

    def _products(self, centered, raw, means, n, other):
        """{"centered": (value, replicates), "raw": …} of ⟨K̂, L̂⟩ from the centred and raw
        cross moments ΦᵀΨ, the replicates without each block.

        The mean of ‖Φₖᵀ Ψₗ‖² = ⟨ΦₖΦₖᵀ, ΨₗΨₗᵀ⟩ over blocks k ≠ l: a product of two
        independent unbiased kernel estimates, so unbiased for ⟨K, L⟩ (centred if the cross
        moments are). Without block k, the pairs that hold k are taken out.
        """
        return {
            name: _distinct_block_mean(_block_energies(cross, self.blocks, other.blocks))
            for name, cross in (("centered", centered), ("raw", raw))
        }

    def _variance_factor(self, n):
        return 1.0


def _distinct_block_mean(energies):
    """The mean of ``energies[k, l]`` over k ≠ l, and the same mean without unit k (a block,
    or Nyström's probe), for each k."""
    blocks = len(energies)
    total = energies.sum() - np.trace(energies)
    holding = energies.sum(axis=0) + energies.sum(axis=1) - 2.0 * np.diag(energies)
    full = total / (blocks * (blocks - 1))
    return full, (total - holding) / ((blocks - 1) * (blocks - 2))


def _block_energies(cross, rows, cols):
    """‖C_kl‖²_F for every block (k, l) of a matrix cut into rows × cols blocks."""
    blocked = cross.reshape(rows, cross.shape[0] // rows, cols, cross.shape[1] // cols)
    return np.einsum("aibj,aibj->ab", blocked, blocked)


class NystromRows(NamedTuple):
    """Sorted row indices of a Nyström map's landmarks and probes (`nystrom_rows`)."""

    landmarks: np.ndarray
    probes: np.ndarray


def nystrom_rows(n_rows, n_features, seed):
    """The rows a `Nystrom` map takes its ``n_features`` kernel columns from.

    ``n_features`` of the ``n_rows`` rows are drawn without replacement, in random order, with
    ``numpy.random.default_rng(seed)``; the first `PROBE_SHARE` of them (at least `MIN_PROBES`)
    are the probes, the others the landmarks. Given the landmarks, the probes are then a simple
    random sample of the other rows, which is what makes the map's error estimate unbiased. The
    same arguments give the same rows, so a job that reads its store in shards can pick them
    before reading.
    """
    n_rows = _check_at_least(n_rows, name="n_rows", low=MIN_PROBES + 1)
    n_features = check_int_in_range(
        n_features,
        name="n_features",
        low=MIN_PROBES + 1,
        high=n_rows,
        why=f" ({MIN_PROBES} probes and a landmark, at most the number of rows)",
    )
    seed = _check_at_least(seed, name="seed", low=0)
    drawn = np.random.default_rng(seed).choice(n_rows, n_features, replace=False)
    probes = min(max(MIN_PROBES, round(PROBE_SHARE * n_features)), n_features - 1)
    return NystromRows(np.sort(drawn[probes:]), np.sort(drawn[:probes]))


class Nystrom:
    """Nyström features of the RBF kernel, with probe columns that estimate what they miss.

        K̂ = K(·, Z) A K(Z, ·),   A = (K(Z, Z) + ε·tr K(Z, Z)·I)⁻¹     (Williams & Seeger 2001)

    from landmark rows Z. K̂ is the kernel projected onto the span of the landmarks, so K̂ ≼ K:
    alone, Nyström is biased, and CKA, a ratio, inherits a bias of either sign, as large as a
    third of a weak pair's value at n = 800 and 128 landmarks. The map therefore also takes the
    kernel columns of probe rows P, drawn at random from the rows that are not landmarks
    (`nystrom_rows`), and `approximate_products` adds an estimate of the residual
    E = K − K̂ from them (Nyström with a sampled correction, as in Persson, Cortinovis & Kressner
    2022). E is zero in the landmarks' columns, so for each product the error of Nyström's
    value is a sum over the N = n − m other columns j of a term aⱼ that needs only the exact
    column K·ⱼ and the residual column eⱼ = K·ⱼ − K̂·ⱼ:

        ⟨K, L⟩ − ⟨K̂, L̂⟩ = Σⱼ aⱼ,   aⱼ = K·ⱼᵀfⱼ + eⱼᵀL·ⱼ − eⱼᵀfⱼ

    (fⱼ, L·ⱼ the same for the other kernel). At a probe both columns are linear in the map's
    features, k(Z, x) and k(P, x), so aⱼ is read from the accumulated moments. The probes are a
    simple random sample of the N columns, so N · mean over the probes of aⱼ is unbiased for
    the sum, given the landmarks: the difference estimator of survey sampling (Särndal, Swensson
    & Wretman 1992). Centred products have one more term, a double sum over pairs of
    columns, estimated by its mean over pairs of distinct probes (a U-statistic); see
    `approximate_products`. The standard error is the delete-one-probe jackknife times the
    finite-population correction sqrt(1 − p/N); the interval value ± t₀.₉₇₅,ₚ₋₁ · std_err
    covered the exact value in 96.5% of 200 samples, strongly and weakly related pairs in turn
    (99% and 94% of each kind; tests/test_approx.py), where Nyström's value alone was off by
    25 to 40 times the spread of its landmark groups.

    `transform` returns the kernel columns [k(Z, x); k(P, x)], not a whitened φ(x): the
    whitening K(Z, Z)^{-1/2} is linear, so it is applied to the accumulated moments, and the
    same state gives Nyström's products and the probes' terms.

    Eigenvalue floor: A = (K(Z, Z) + ε·tr K(Z, Z)·I)⁻¹ with ε = `EIGENVALUE_FLOOR` (1e-10,
    and tr K(Z, Z) = the number of landmarks), through a Cholesky factor. The floor makes the
    whitening exist when landmarks repeat, and it damps the directions of K(Z, Z) below it,
    whose rounding errors an exact inverse would amplify; it changes K̂ by a relative
    O(ε·m/λ) in a direction of eigenvalue λ, and leaves residuals of that order in the
    landmarks' columns, which the estimate takes as zero.

    Parameters
    ----------
    landmarks : array-like of shape (n_landmarks, dim)
        Rows of the representation, e.g. ``X[nystrom_rows(len(X), 1024, seed).landmarks]``.
    probes : array-like of shape (n_probes, dim)
        Other rows of the same sample, at least `MIN_PROBES`, drawn at random from the rows that
        are not landmarks (``X[rows.probes]``). The maps of two representations must take the
        same samples' rows.
    sigma : float
        Bandwidth σ > 0 (resolve ``"median"`` first with `repalign.median_sigma`).

    References
    ----------
    Williams & Seeger (2001). Using the Nyström Method to Speed Up Kernel Machines. NIPS.
    Särndal, Swensson & Wretman (1992). Model Assisted Survey Sampling. Springer.
    Persson, Cortinovis & Kressner (2022). Improved Variants of the Hutch++ Algorithm for Trace
    Estimation. SIAM J. Matrix Anal. Appl. 43(3) ("Nyström++").
    """

    def __init__(self, landmarks, probes, sigma):
        # rows of a sample, equal or not: a constant representation is refused where its
        # products are (`approximate_products`)
        landmarks = check_representation(landmarks, name="landmarks", min_rows=1, constant_ok=True)
        probes = check_representation(probes, name="probes", min_rows=MIN_PROBES, constant_ok=True)
        if landmarks.shape[1] != probes.shape[1]:
            raise ShapeError(
                "landmarks and probes must be rows of one representation; got widths "
                f"{landmarks.shape[1]} and {probes.shape[1]}."
            )
        self.n_landmarks, self.n_probes = len(landmarks), len(probes)
        self.columns = np.vstack([landmarks, probes]).astype(np.float64)
        self.sigma = _check_bandwidth(sigma)
        self.n_features = self.n_landmarks + self.n_probes

    def transform(self, X):
        """Kernel columns [k(Z, x); k(P, x)] of the rows of X: shape (n_rows, n_features),
        float64, the landmarks' first.

        Parameters
        ----------
        X : array-like of shape (n_rows, dim)
        """
        return _rbf_cross(_check_rows(X, self.columns.shape[1]), self.columns, self.sigma)

    @property
    def _units(self):
        return self.n_probes

    def _products(self, centered, raw, means, n, other):
        """{"centered": (value, replicates), "raw": …}: the estimates of ⟨HKH, HLH⟩ and ⟨K, L⟩
        from the centred and raw cross moments of the two maps' columns (``means`` their column
        means, n rows), and the same without each probe.

        With m landmarks, p probes, N = n − m, column-selection vectors sⱼ of the probes in the
        features, and bⱼ = [−A k(Z, pⱼ); sⱼ] (eⱼ = F bⱼ for the feature rows F): for the raw
        moments R = FᵀG,

            ⟨K, L⟩ ≈ ‖TᵀR_ZZ T′‖² + N · meanⱼ (sⱼᵀR b′ⱼ + bⱼᵀR s′ⱼ − bⱼᵀR b′ⱼ)

        (T Tᵀ = A). Centred, ⟨HKH, HLH⟩ = Σⱼ K·ⱼᵀHL·ⱼ − (K1)ᵀH(L1)/n over all n columns, and
        splitting K1 = K̂1 + Σⱼ eⱼ gives, with the centred moments M = FᵀHG and the landmark
        means c, c′,

            ⟨HKH, HLH⟩ ≈ ‖TᵀM_ZZ T′‖² + N · meanⱼ aⱼ − N(N − 1)/n · mean_{j≠k} Q_jk,
            aⱼ = sⱼᵀM b′ⱼ + bⱼᵀM s′ⱼ − Q_jj − cᵀA M_Z· b′ⱼ − bⱼᵀM_·Z A′c′ − Q_jj/n,
            Q = BᵀM B′.
        """
        bases = self._residual_basis, other._residual_basis
        base = {"centered": centered, "raw": raw}
        rows = n - self.n_landmarks
        landmarks = slice(0, self.n_landmarks)
        probes = slice(self.n_landmarks, None)
        products = {}
        for name, moments in base.items():
            whitened = self._whitening.T @ moments[landmarks, landmarks] @ other._whitening
            times_b = moments @ bases[1]  # M B′
            pairs = bases[0].T @ times_b  # Q
            terms = (
                np.diag(times_b[probes])
                + np.einsum("kj,kj->j", bases[0], moments[:, probes])
                - np.diag(pairs)
            )
            if name == "raw":
                products[name] = _probe_mean(_squared_frobenius(whitened), terms, rows)
                continue
            terms -= (means[0][landmarks] @ self._inverse) @ times_b[landmarks]
            terms -= bases[0].T @ (moments[:, landmarks] @ (other._inverse @ means[1][landmarks]))
            terms -= np.diag(pairs) / n
            products[name] = _probe_mean(_squared_frobenius(whitened), terms, rows, pairs, n)
        return products

    def _variance_factor(self, n):
        """1 − p/N: the probes are drawn without replacement from the N = n − m columns that
        are not landmarks (all of them when p = N, and then the estimate is exact)."""
        return 1.0 - self.n_probes / (n - self.n_landmarks)

    @cached_property
    def _residual_basis(self):
        """B = [−A K(Z, P); I]: the feature rows F times B are the residual columns at the
        probes, K(·, P) − K̂(·, P)."""
        landmarks = self.columns[: self.n_landmarks]
        probes = self.columns[self.n_landmarks :]
        across = _rbf_cross(landmarks, probes, self.sigma)  # K(Z, P)
        return np.vstack([-(self._inverse @ across), np.eye(self.n_probes)])

    @cached_property
    def _inverse(self):
        """A = T Tᵀ = (K(Z, Z) + ε·tr K(Z, Z)·I)⁻¹."""
        return self._whitening @ self._whitening.T

    @cached_property
    def _whitening(self):
        """T with T Tᵀ = (K(Z, Z) + ε·tr K(Z, Z)·I)⁻¹: T = R⁻ᵀ from the Cholesky factor R Rᵀ of
        the floored Gram matrix."""
        landmarks = self.columns[: self.n_landmarks]
        gram = _rbf_cross(landmarks, landmarks, self.sigma)
        floored = gram + EIGENVALUE_FLOOR * np.trace(gram) * np.eye(self.n_landmarks)
        factor = np.linalg.cholesky(floored)
        return solve_triangular(factor, np.eye(self.n_landmarks), lower=True).T


def _probe_mean(nystrom, terms, rows, pairs=None, n=None):
    """The difference estimate ``nystrom`` + N · mean(``terms``) [− N(N − 1)/n · the mean of
    ``pairs`` off its diagonal], N = ``rows``, and the same without each probe."""
    probes = len(terms)
    total = terms.sum()
    full = nystrom + rows * total / probes
    without = nystrom + rows * (total - terms) / (probes - 1)
    if pairs is not None:
        off_full, off_without = _distinct_block_mean(pairs)
        scale = rows * (rows - 1) / n
        full -= scale * off_full
        without -= scale * off_without
    return full, without


def _rbf_cross(A, Z, sigma):
    """exp(−‖aᵢ − zⱼ‖²/(2σ²)), with both sides shifted by the mean of Z to limit cancellation."""
    center = Z.mean(axis=0)
    A, Z = np.asarray(A, dtype=np.float64) - center, Z - center
    distances = A @ Z.T
    distances *= -2.0
    distances += np.einsum("ij,ij->i", A, A)[:, None]
    distances += np.einsum("ij,ij->i", Z, Z)[None, :]
    np.maximum(distances, 0.0, out=distances)
    return np.exp(distances / (-2.0 * sigma * sigma), out=distances)


@dataclass(frozen=True)
class ApproximateProducts:
    """Approximate kernel products and the measures made of them, each with a standard error.

    K, L are the kernels of the two representations and H = I − 11ᵀ/n.

    Attributes
    ----------
    n : int
        Rows accumulated.
    raw_kl, raw_kk, raw_ll : Estimate
        ⟨K, L⟩_F, ⟨K, K⟩_F, ⟨L, L⟩_F.
    centered_kl, centered_kk, centered_ll : Estimate
        ⟨HKH, HLH⟩_F, ⟨HKH, HKH⟩_F, ⟨HLH, HLH⟩_F.
    ka : Estimate
        raw_kl / sqrt(raw_kk · raw_ll).
    cka : Estimate
        centered_kl / sqrt(centered_kk · centered_ll), the "biased" CKA of `repalign.cka`.
    hsic : Estimate
        centered_kl / (n − 1)², the "biased" HSIC of `repalign.hsic`.
    """

    n: int
    raw_kl: Estimate
    raw_kk: Estimate
    raw_ll: Estimate
    centered_kl: Estimate
    centered_kk: Estimate
    centered_ll: Estimate
    ka: Estimate
    cka: Estimate
    hsic: Estimate


def approximate_products(state, x, y, map_x, map_y):
    """KA, CKA, HSIC and their RBF kernel products for two representations of a state of features.

    ``state`` holds, as its representations ``x`` and ``y``, the columns ``map_x.transform`` and
    ``map_y.transform`` gave for paired rows. Every product comes from the centred cross
    moments Φ̃ᵀΨ̃ of ``state.pair(x, y, center=True)`` (centring the columns of Φ is HΦ, so they
    give ⟨HKH, HLH⟩), and the raw ones ΦᵀΨ = Φ̃ᵀΨ̃ + n φ̄ψ̄ᵀ from them and the state's means
    (one ``pair`` call: it is the costly step at large widths).

    Random Fourier features, debiased. With Φₖ the k-th of B independent blocks,

        ⟨K, L⟩ ≈ 1/(B(B−1)) Σ_{k≠l} ‖Φₖᵀ Ψₗ‖²_F,   ⟨K, K⟩ ≈ 1/(B(B−1)) Σ_{k≠l} ‖Φₖᵀ Φₗ‖²_F

    each term the product of two independent unbiased estimates of the kernels, so each sum is
    unbiased. The plain ‖ΦᵀΦ‖²_F/B² also has the terms k = l, whose expectation exceeds ⟨K, K⟩ by
    the variance of the features: the self products come out too large and CKA too low
    (docs/design.md §4 measures −0.117 at 256 features). The sum over k ≠ l is the cross-half
    estimate ‖Φ_aᵀΦ_b‖² of two independent halves a, b, averaged over every split of the blocks
    into halves. Leaving k = l out of the cross term too makes it unbiased even when both maps share
    their seed, and makes the CKA of a representation with itself exactly 1.

    Nyström: the products of the approximation K̂ from the landmarks, ⟨K̂, L̂⟩ = ‖TᵀCᵀDT′‖²_F
    for kernel columns C, D and whitenings T, T′, plus the probes' unbiased estimate of what K̂
    misses (see `Nystrom`).

    Standard errors: the delete-one jackknife over the B blocks (or p probes),

        se² = f · (B − 1)/B · Σₖ (θ₍₋ₖ₎ − θ̄₍.₎)²

    where θ₍₋ₖ₎ is the same estimate without unit k, and f = 1 for random features, the
    finite-population correction 1 − p/N for Nyström's probes, drawn without replacement from
    the N = n − m columns that are not landmarks. The ratios are smooth functions of
    U-statistics of the independent units, for which the jackknife is consistent; in
    expectation it overestimates the variance of the estimate from B − 1 units (Efron & Stein
    1981). It was chosen over the spread of per-group estimates, std/sqrt(groups), because it
    needs no estimate from a fraction of the features (whose ratio bias is larger) and has
    B − 1 degrees of freedom rather than groups − 1. Measured on a synthetic pair (random
    features, 20 to 40 seeds, n = 2,000 to 20,000): the mean standard error was within 20% of
    the actual spread, and varied by ±13% between seeds with B = 16 (±28% with B = 8, the
    reason for the default). A 95% interval is value ± t₀.₉₇₅,B−1 · se (tests/test_approx.py
    measures its coverage for both kinds of map).

    Parameters
    ----------
    state : repalign.stats.GramState
        Accumulated ``transform`` outputs, one representation per map.
    x, y : int
        Indices of the two representations in ``state``.
    map_x, map_y : RandomFourierFeatures or Nystrom
        The maps that produced them: of one kind, with as many blocks (or groups).

    Returns
    -------
    ApproximateProducts
        Values as computed: a debiased CKA may exceed 1 slightly, and is not clipped.

    Raises
    ------
    ZeroVarianceError
        When a centred self product is at the level of rounding, 1e-20 of the raw one (a
        constant representation).
    """
    maps = (map_x, map_y)
    _check_state_and_maps(state, (x, y), maps)
    moments = state.pair(x, y, center=True)
    means = (state.mean(x), state.mean(y))
    products = {}
    for r, s, suffix in ((0, 1, "kl"), (0, 0, "kk"), (1, 1, "ll")):
        centered = moments.cross(r, s)
        raw = centered + state.n * np.outer(means[r], means[s])  # Σ xyᵀ = Σ x̃ỹᵀ + n x̄ȳᵀ
        estimates = maps[r]._products(centered, raw, (means[r], means[s]), state.n, maps[s])
        for kind, estimate in estimates.items():
            products[f"{kind}_{suffix}"] = estimate
    for suffix, index in (("kk", x), ("ll", y)):
        centered, raw = products[f"centered_{suffix}"][0], products[f"raw_{suffix}"][0]
        # Centred features 1e-10 of the raw ones are rounding (constant rows leave ~1e-15).
        if not centered > 1e-20 * raw:
            raise ZeroVarianceError(
                f"CKA is undefined: the approximate centred kernel of representation {index} "
                f"has no variation (its self product is {centered:.3g}, the raw one {raw:.3g})."
            )
    # each a pair (value, its replicates without each unit); the ratios apply to both
    value = {name: np.asarray(estimate[0]) for name, estimate in products.items()}
    without = {name: np.asarray(estimate[1]) for name, estimate in products.items()}
    for values in (value, without):
        values["ka"] = values["raw_kl"] / np.sqrt(values["raw_kk"] * values["raw_ll"])
        values["cka"] = values["centered_kl"] / np.sqrt(
            values["centered_kk"] * values["centered_ll"]
        )
        values["hsic"] = values["centered_kl"] / (state.n - 1) ** 2
    factor = map_x._variance_factor(state.n)
    return ApproximateProducts(
        n=state.n,
        **{
            name: Estimate(float(value[name]), _jackknife_error(without[name], factor))
            for name in value
        },
    )


def _jackknife_error(replicates, factor):
    """sqrt(factor · (U − 1)/U · Σₖ (θ₍₋ₖ₎ − θ̄₍.₎)²): the delete-one jackknife standard error of
    the U ``replicates``, times a finite-population correction ``factor``."""
    units = len(replicates)
    spread = (units - 1) / units * np.sum((replicates - replicates.mean()) ** 2)
    return float(np.sqrt(factor * spread))


def cka_rff(X, Y, *, n_features=2048, sigma="median", seed=0):
    """RBF CKA of two paired representations from random Fourier features, debiased.

    Each representation gets its own `RandomFourierFeatures` (``seed`` for both, 16 blocks), the
    features go through a `repalign.stats.GramState` row block by row block, and
    `approximate_products` gives the "biased" CKA of `repalign.cka` (kernel="rbf") with its
    standard error. Memory O(n_features²), never n².

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
        Paired: row i of X and row i of Y describe the same sample.
    n_features : int, default=2048
        Random features per representation, a multiple of 16. The error shrinks as
        1/sqrt(n_features).
    sigma : float or "median", default="median"
        RBF bandwidth; "median" takes each representation's median heuristic
        (`repalign.median_sigma`), as `repalign.cka` does.
    seed : int, default=0

    Returns
    -------
    Approximation
    """
    X, Y = check_pair(X, Y)
    sigma = check_sigma(sigma)
    maps = [
        RandomFourierFeatures(A.shape[1], n_features, resolve_sigma(A, sigma, name=name), seed=seed)
        for A, name in ((X, "X"), (Y, "Y"))
    ]
    cka = approximate_products(_accumulate(maps, (X, Y)), 0, 1, *maps).cka
    return Approximation(cka.value, cka.std_err, maps[0].n_features, maps[0].seed)


def cka_nystrom(X, Y, *, n_features=1024, sigma="median", seed=0):
    """RBF CKA of two paired representations from Nyström features with probes.

    The kernel columns are those of the rows ``nystrom_rows(n_samples, n_features, seed)``
    (the same samples on both sides): a fifth of them probes, the rest landmarks. The rest is
    as in `cka_rff`, with a `Nystrom` map per representation: Nyström's value plus the probes'
    estimate of what it misses, and the standard error over the probes (see `Nystrom`).

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
    n_features : int, default=1024
        Kernel columns per representation, landmarks and probes: at least 4, at most
        n_samples.
    sigma : float or "median", default="median"
    seed : int, default=0

    Returns
    -------
    Approximation
    """
    X, Y = check_pair(X, Y)
    sigma = check_sigma(sigma)
    rows = nystrom_rows(X.shape[0], n_features, seed)
    maps = [
        Nystrom(A[rows.landmarks], A[rows.probes], resolve_sigma(A, sigma, name=name))
        for A, name in ((X, "X"), (Y, "Y"))
    ]
    cka = approximate_products(_accumulate(maps, (X, Y)), 0, 1, *maps).cka
    return Approximation(cka.value, cka.std_err, maps[0].n_features, seed)


def _accumulate(maps, arrays):
    """A GramState of the features of paired, checked in-memory arrays, one row block at a time."""
    state = GramState([m.n_features for m in maps])
    for rows in row_slices(arrays[0].shape[0], state.width):
        state.add_block([m.transform(A[rows]) for m, A in zip(maps, arrays, strict=True)])
    return state


class MeanEmbedding:
    """Σᵢ φ(xᵢ), Σᵢ ‖φₖ(xᵢ)‖² per block k, and n over the rows of one sample seen so far.

    The mergeable statistic behind `approximate_mmd2`: feed it ``rff.transform(rows)`` of one
    `RandomFourierFeatures` map row block by row block, and add embeddings with ``+``.

    Parameters
    ----------
    n_features, blocks : int
        Those of the map whose features are added.
    """

    def __init__(self, n_features, blocks):
        self.n_features, self.blocks = n_features, blocks
        self.n = 0
        self.sums = np.zeros(n_features)
        self.squared_norms = np.zeros(blocks)

    def add(self, features):
        """Add a row block of features, shape (rows, n_features)."""
        rows = features.shape[0]
        self.n += rows
        self.sums += features.sum(axis=0)
        blocked = features.reshape(rows, self.blocks, -1)
        self.squared_norms += np.einsum("ikj,ikj->k", blocked, blocked)

    def __add__(self, other):
        if (self.n_features, self.blocks) != (other.n_features, other.blocks):
            raise ShapeError(
                "MeanEmbedding: only embeddings of one feature map add up; got "
                f"(n_features, blocks)=({self.n_features}, {self.blocks}) and "
                f"({other.n_features}, {other.blocks})."
            )
        total = MeanEmbedding(self.n_features, self.blocks)
        total.n = self.n + other.n
        total.sums = self.sums + other.sums
        total.squared_norms = self.squared_norms + other.squared_norms
        return total


def approximate_mmd2(embedding_x, embedding_y, *, estimator="unbiased"):
    """MMD² between two samples from their random-feature mean embeddings.

        biased    ‖μ̂ₓ − μ̂ᵧ‖²,  μ̂ₓ = (1/m) Σᵢ φ(xᵢ)
        unbiased  (‖Σφ(xᵢ)‖² − Σ‖φ(xᵢ)‖²)/(m(m−1)) + (same for y)/(n(n−1)) − 2 Σφ(xᵢ)ᵀΣφ(yⱼ)/(mn)

    approximate the estimators of the same names in `repalign.mmd2`. Both are linear in the
    kernel matrix and every φₖ(a)ᵀφₖ(b) is unbiased for k(a, b), so each block's estimate is
    unbiased for the exact value: unlike CKA, MMD² needs no cross-block debiasing. The value is
    the mean of the B block estimates and the standard error their standard deviation over
    sqrt(B) (the jackknife of a mean).

    Parameters
    ----------
    embedding_x, embedding_y : MeanEmbedding
        The two samples, embedded with one `RandomFourierFeatures` map.
    estimator : {"unbiased", "biased"}, default="unbiased"
        "unbiased" needs two rows per sample.

    Returns
    -------
    Estimate
        The unbiased estimate may be negative; it is returned as computed.
    """
    check_option(estimator, name="estimator", allowed=MMD_RFF_ESTIMATORS)
    if (embedding_x.n_features, embedding_x.blocks) != (embedding_y.n_features, embedding_y.blocks):
        raise ShapeError(
            "embedding_x and embedding_y must hold features of one map; got "
            f"(n_features, blocks)=({embedding_x.n_features}, {embedding_x.blocks}) and "
            f"({embedding_y.n_features}, {embedding_y.blocks})."
        )
    m, n = embedding_x.n, embedding_y.n
    if min(m, n) < (2 if estimator == "unbiased" else 1):
        raise InvalidParameterError(
            f"the {estimator!r} MMD² needs more rows in each sample; got {m} and {n}."
        )
    sum_x = embedding_x.sums.reshape(embedding_x.blocks, -1)
    sum_y = embedding_y.sums.reshape(embedding_y.blocks, -1)
    if estimator == "biased":
        difference = sum_x / m - sum_y / n
        per_block = np.einsum("kj,kj->k", difference, difference)
    else:
        within_x = np.einsum("kj,kj->k", sum_x, sum_x) - embedding_x.squared_norms
        within_y = np.einsum("kj,kj->k", sum_y, sum_y) - embedding_y.squared_norms
        between = np.einsum("kj,kj->k", sum_x, sum_y)
        per_block = within_x / (m * (m - 1)) + within_y / (n * (n - 1)) - 2.0 * between / (m * n)
    return Estimate(float(per_block.mean()), float(per_block.std(ddof=1) / np.sqrt(len(per_block))))


def mmd2_rff(X, Y, *, n_features=2048, sigma="median", seed=0, estimator="unbiased"):
    """MMD² between the distributions of the rows of X and of Y, from random Fourier features.

    One `RandomFourierFeatures` map (the RBF kernel of both samples), a `MeanEmbedding` per
    sample, then `approximate_mmd2`: O((m + n)·n_features) time, O(n_features) memory.

    Parameters
    ----------
    X : array-like of shape (m_samples, n_dims)
    Y : array-like of shape (n_samples, n_dims)
        Two samples in one space; m and n may differ.
    n_features : int, default=2048
        A multiple of 16.
    sigma : float or "median", default="median"
        "median" is the median heuristic on the pooled sample [X; Y], as in `repalign.mmd2`.
    seed : int, default=0
    estimator : {"unbiased", "biased"}, default="unbiased"
        Which estimator of `repalign.mmd2` to approximate.

    Returns
    -------
    Approximation
    """
    check_option(estimator, name="estimator", allowed=MMD_RFF_ESTIMATORS)
    sigma = check_sigma(sigma)
    X, Y = check_two_samples(X, Y)
    sigma = resolve_sigma(np.concatenate([X, Y]), sigma, name="the pooled sample [X; Y]")
    rff = RandomFourierFeatures(X.shape[1], n_features, sigma, seed=seed)
    embeddings = []
    for A in (X, Y):
        embedding = MeanEmbedding(rff.n_features, rff.blocks)
        for rows in row_slices(A.shape[0], rff.n_features):
            embedding.add(rff.transform(A[rows]))
        embeddings.append(embedding)
    mmd2 = approximate_mmd2(*embeddings, estimator=estimator)
    return Approximation(mmd2.value, mmd2.std_err, rff.n_features, rff.seed)


def _check_at_least(value, *, name, low, why=""):
    """Return ``value`` if it is an integer >= ``low``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be an integer; got {value!r}.")
    if value < low:
        raise InvalidParameterError(f"{name} must be at least {low}{why}; got {name}={value}.")
    return int(value)


def _check_bandwidth(sigma):
    if isinstance(sigma, str):
        raise InvalidParameterError(
            f"sigma must be a positive number here; got {sigma!r}. Resolve 'median' first "
            "with repalign.median_sigma."
        )
    return check_sigma(sigma)


def _check_rows(X, dim):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != dim:
        raise ShapeError(f"X must have shape (n_rows, {dim}); got an array of shape {X.shape}.")
    return X


def _check_state_and_maps(state, indices, maps):
    kinds = {type(m) for m in maps}
    if len(kinds) != 1 or not kinds <= {RandomFourierFeatures, Nystrom}:
        raise InvalidParameterError(
            "map_x and map_y must both be RandomFourierFeatures or both Nystrom; got "
            f"{type(maps[0]).__name__} and {type(maps[1]).__name__}."
        )
    if maps[0]._units != maps[1]._units:
        raise InvalidParameterError(
            "map_x and map_y must have as many independent parts (blocks or probes); got "
            f"{maps[0]._units} and {maps[1]._units}."
        )
    if isinstance(maps[0], Nystrom):
        if maps[0].n_landmarks != maps[1].n_landmarks:
            raise InvalidParameterError(
                "map_x and map_y must take their landmarks from the same rows; got "
                f"{maps[0].n_landmarks} and {maps[1].n_landmarks} landmarks."
            )
        if state.n < maps[0].n_features:
            raise InvalidParameterError(
                f"the state holds {state.n} rows, fewer than the {maps[0].n_features} landmarks "
                "and probes of its Nyström maps, which must be rows of the same sample."
            )
    for index, feature_map, name in zip(indices, maps, ("x", "y"), strict=True):
        check_int_in_range(index, name=name, low=0, high=len(state.dims) - 1)
        if state.dims[index] != feature_map.n_features:
            raise ShapeError(
                f"representation {name}={index} of the state has {state.dims[index]} columns, "
                f"but its map gives {feature_map.n_features}."
            )


def _squared_frobenius(A):
    return float(np.vdot(A, A))
