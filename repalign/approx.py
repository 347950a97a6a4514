"""RBF kernel measures at scale from random features, as mergeable statistics (docs/design.md §4).

An exact RBF CKA needs n×n Gram matrices. Here each representation is mapped to a few thousand
columns whose linear kernel approximates its RBF kernel k(x, y) = exp(−‖x − y‖²/(2σ²)):

    RandomFourierFeatures   φ(x) = sqrt(2/m) cos(Wᵀx + b)       unbiased: E φ(x)ᵀφ(y) = k(x, y)
    Nystrom                 φ(x) = K(Z, Z)^{-1/2} k(Z, x)       biased low: K̂ ≼ K

The columns of every representation go through one `repalign.stats.GramState` (one pass over the
rows, O(D²) memory, merged across workers with ``+``), and `approximate_products` reads KA, CKA,
HSIC and their kernel products for any pair from the state's cross moments, never from the data.
Each estimate carries a standard error: the jackknife over the independent parts of the
approximation (blocks of random features, groups of landmarks). MMD² between two samples is a
difference of mean embeddings, `MeanEmbedding`, also a mergeable sum.

The recipe of a job: one map per representation (`RandomFourierFeatures` with the job's seed, or
`Nystrom` on the rows `sample_landmarks` picks), ``state.add_block([map.transform(rows), ...])``
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

NYSTROM_GROUPS = 4
"""Disjoint groups of landmarks, the default of `Nystrom`."""

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
        Random features per representation, or landmarks for Nyström.
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

    biased = False

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

    def _kernel_product(self, cross, other):
        """⟨K̂, L̂⟩ from cross = ΦᵀΨ, as a function of the blocks kept.

        The mean of ‖Φₖᵀ Ψₗ‖² = ⟨ΦₖΦₖᵀ, ΨₗΨₗᵀ⟩ over kept pairs k ≠ l: a product of two
        independent unbiased kernel estimates, so unbiased for ⟨K, L⟩ (centred if cross is).
        """
        energies = _block_energies(cross, self.blocks, other.blocks)

        def estimate(kept):
            sub = energies[np.ix_(kept, kept)]
            return (sub.sum() - np.trace(sub)) / (len(kept) * (len(kept) - 1))

        return estimate


def _block_energies(cross, rows, cols):
    """‖C_kl‖²_F for every block (k, l) of a matrix cut into rows × cols blocks."""
    blocked = cross.reshape(rows, cross.shape[0] // rows, cols, cross.shape[1] // cols)
    return np.einsum("aibj,aibj->ab", blocked, blocked)


def sample_landmarks(n_rows, n_landmarks, seed):
    """Sorted indices of ``n_landmarks`` of ``n_rows`` rows, drawn without replacement.

    Drawn with ``numpy.random.default_rng(seed)``: the same arguments give the same rows, so a
    job that reads its store in shards can pick its Nyström landmarks before reading.
    """
    n_rows = _check_at_least(n_rows, name="n_rows", low=1)
    n_landmarks = check_int_in_range(
        n_landmarks, name="n_landmarks", low=1, high=n_rows, why=" (the number of rows)"
    )
    seed = _check_at_least(seed, name="seed", low=0)
    return np.sort(np.random.default_rng(seed).choice(n_rows, n_landmarks, replace=False))


class Nystrom:
    """Nyström features of the RBF kernel from landmark rows Z, split into disjoint groups.

        φ(x) = K(Z, Z)^{-1/2} k(Z, x),   φ(x)ᵀφ(y) = k(x, Z) K(Z, Z)⁺ k(Z, y) = K̂(x, y)

    K̂ is the kernel projected onto the span of the landmarks, so K̂ ≼ K: **Nyström is biased**.
    The kernel is underestimated, and CKA, a ratio, inherits a bias of either sign; more
    landmarks shrink it. The standard error that `approximate_products` reports is the jackknife
    over the ``groups`` groups (landmark i in group i mod groups): their spread and, in
    quadrature, the jackknife's estimate of the bias, (G − 1)(θ̄₍.₎ − θ̂), which assumes a bias
    falling as 1/landmarks. Measured against exact RBF CKA (tests/test_approx.py, 200 samples of
    n = 800, 128 landmarks): value ± t₀.₉₇₅,₃ · std_err covered the exact value in all of them,
    where the spread alone covered none of the weakly related pairs. It is conservative when the
    bias falls faster than 1/landmarks, and about 2 standard errors when it falls more slowly
    (a weakly related pair at n = 6,000 and 1,024 landmarks: error 1.8e-3, std_err 9.6e-4).

    `transform` returns the kernel columns k(Z, x), not φ(x): the whitening K(Z, Z)^{-1/2} is
    linear, so it is applied to the accumulated moments, Φ̃ᵀΨ̃ = Tᵀ (C̃ᵀD̃) T'. The same state
    then gives the approximation from all landmarks and, for the error, from all groups but one.

    Eigenvalue floor: T Tᵀ = (K(Z, Z) + ε·tr K(Z, Z)·I)⁻¹ with ε = `EIGENVALUE_FLOOR` (1e-10,
    and tr K(Z, Z) = n_landmarks), through a Cholesky factor. The floor makes the whitening exist
    when landmarks repeat, and it damps the directions of K(Z, Z) below it, whose rounding errors
    an exact inverse would amplify; it changes K̂ by a relative O(ε·n_landmarks/λ) in a direction
    of eigenvalue λ.

    Parameters
    ----------
    landmarks : array-like of shape (n_landmarks, dim)
        Rows of the representation, e.g. ``X[sample_landmarks(len(X), 1024, seed)]``; at least
        one per group.
    sigma : float
        Bandwidth σ > 0 (resolve ``"median"`` first with `repalign.median_sigma`).
    groups : int, default=4
        Disjoint groups of landmarks, at least 2.

    References
    ----------
    Williams & Seeger (2001). Using the Nyström Method to Speed Up Kernel Machines. NIPS.
    """

    biased = True

    def __init__(self, landmarks, sigma, *, groups=NYSTROM_GROUPS):
        self.groups = _check_at_least(groups, name="groups", low=2)
        landmarks = check_representation(landmarks, name="landmarks", min_rows=self.groups)
        self.landmarks = np.asarray(landmarks, dtype=np.float64)
        self.sigma = _check_bandwidth(sigma)
        self.n_features = self.landmarks.shape[0]
        self._whitenings = {}

    def transform(self, X):
        """Kernel columns k(Z, x) of the rows of X: shape (n_rows, n_landmarks), float64.

        Parameters
        ----------
        X : array-like of shape (n_rows, dim)
        """
        return _rbf_cross(_check_rows(X, self.landmarks.shape[1]), self.landmarks, self.sigma)

    @property
    def _units(self):
        return self.groups

    def _kernel_product(self, cross, other):
        """⟨K̂, L̂⟩ from cross = CᵀD (kernel columns), as a function of the groups kept."""

        def estimate(kept):
            rows, cols = self._columns(kept), other._columns(kept)
            whitened = self._whitening(kept).T @ cross[np.ix_(rows, cols)] @ other._whitening(kept)
            return _squared_frobenius(whitened)

        return estimate

    def _columns(self, kept):
        return np.flatnonzero(np.isin(np.arange(self.n_features) % self.groups, kept))

    def _whitening(self, kept):
        """T with T Tᵀ = (K(Z, Z) + ε·tr K(Z, Z)·I)⁻¹ over the landmarks of the kept groups.

        T = R⁻ᵀ from the Cholesky factor R Rᵀ of the floored Gram matrix.
        """
        if kept not in self._whitenings:
            columns = self._columns(kept)
            gram = self._landmark_gram[np.ix_(columns, columns)]
            floored = gram + EIGENVALUE_FLOOR * np.trace(gram) * np.eye(len(columns))
            factor = np.linalg.cholesky(floored)
            self._whitenings[kept] = solve_triangular(factor, np.eye(len(columns)), lower=True).T
        return self._whitenings[kept]

    @cached_property
    def _landmark_gram(self):
        return _rbf_cross(self.landmarks, self.landmarks, self.sigma)


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

    Nyström: the products of the approximation K̂ from all landmarks, ⟨K̂, L̂⟩ = ‖Φ̃ᵀΨ̃‖²_F.
    Biased low (see `Nystrom`).

    Standard errors: the delete-one jackknife over the B blocks (or landmark groups),

        se² = (B − 1)/B · Σₖ (θ₍₋ₖ₎ − θ̄₍.₎)²

    where θ₍₋ₖ₎ is the same estimate without unit k. The ratios are smooth functions of
    U-statistics of the independent blocks, for which the jackknife is consistent; in
    expectation it overestimates the variance of the estimate from B − 1 units (Efron & Stein
    1981). It was chosen over the spread of
    per-group estimates, std/sqrt(groups), because it needs no estimate from a fraction of the
    features (whose ratio bias is larger) and has B − 1 degrees of freedom rather than
    groups − 1. Measured on a synthetic pair (random features, 20 to 40 seeds, n = 2,000 to
    20,000): the mean standard error was within 20% of the actual spread, and varied by ±13%
    between seeds with B = 16 (±28% with B = 8, the reason for the default). So |error| within
    2 se is about a 90% statement, 3 se about 98%. For Nyström, which is biased, the standard
    error also holds the jackknife's estimate of the bias, (B − 1)(θ̄₍.₎ − θ̂), in quadrature
    (see `Nystrom`).

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
    estimators = {}
    for r, s, suffix in ((0, 1, "kl"), (0, 0, "kk"), (1, 1, "ll")):
        cross = moments.cross(r, s)
        raw = cross + state.n * np.outer(means[r], means[s])  # Σ xyᵀ = Σ x̃ỹᵀ + n x̄ȳᵀ
        estimators[f"centered_{suffix}"] = maps[r]._kernel_product(cross, maps[s])
        estimators[f"raw_{suffix}"] = maps[r]._kernel_product(raw, maps[s])

    def measures(kept):
        values = {name: estimator(kept) for name, estimator in estimators.items()}
        values["ka"] = values["raw_kl"] / np.sqrt(values["raw_kk"] * values["raw_ll"])
        values["cka"] = values["centered_kl"] / np.sqrt(
            values["centered_kk"] * values["centered_ll"]
        )
        values["hsic"] = values["centered_kl"] / (state.n - 1) ** 2
        return values

    units = map_x._units
    full = measures(tuple(range(units)))
    for suffix, index in (("kk", x), ("ll", y)):
        centered, raw = full[f"centered_{suffix}"], full[f"raw_{suffix}"]
        # Centred features 1e-10 of the raw ones are rounding (constant rows leave ~1e-15).
        if not centered > 1e-20 * raw:
            raise ZeroVarianceError(
                f"CKA is undefined: the approximate centred kernel of representation {index} "
                f"has no variation (its self product is {centered:.3g}, the raw one {raw:.3g})."
            )
    replicates = [measures(tuple(u for u in range(units) if u != left)) for left in range(units)]
    return ApproximateProducts(
        n=state.n,
        **{
            name: Estimate(
                float(value),
                _jackknife_error([r[name] for r in replicates], value if map_x.biased else None),
            )
            for name, value in full.items()
        },
    )


def _jackknife_error(replicates, full=None):
    """The delete-one jackknife standard error of the ``replicates``; with the estimate from every
    unit, ``full``, also the jackknife's estimate of its bias, (U − 1)(θ̄₍.₎ − θ̂), in quadrature."""
    replicates = np.asarray(replicates)
    units = len(replicates)
    spread = (units - 1) / units * np.sum((replicates - replicates.mean()) ** 2)
    bias = 0.0 if full is None else (units - 1) * (replicates.mean() - full)
    return float(np.sqrt(spread + bias**2))


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


def cka_nystrom(X, Y, *, n_landmarks=1024, sigma="median", seed=0):
    """RBF CKA of two paired representations from Nyström features.

    The landmarks are the rows ``sample_landmarks(n_samples, n_landmarks, seed)`` of each
    representation (the same samples on both sides); the rest is as in `cka_rff`, with a
    `Nystrom` map per representation. Biased; the standard error holds the spread over the
    landmark groups and the jackknife's estimate of the bias (see `Nystrom`).

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
    n_landmarks : int, default=1024
        At most n_samples, at least 4 (one per group).
    sigma : float or "median", default="median"
    seed : int, default=0

    Returns
    -------
    Approximation
        With ``n_features`` the number of landmarks.
    """
    X, Y = check_pair(X, Y)
    sigma = check_sigma(sigma)
    rows = sample_landmarks(X.shape[0], n_landmarks, seed)
    maps = [
        Nystrom(A[rows], resolve_sigma(A, sigma, name=name)) for A, name in ((X, "X"), (Y, "Y"))
    ]
    cka = approximate_products(_accumulate(maps, (X, Y)), 0, 1, *maps).cka
    return Approximation(cka.value, cka.std_err, len(rows), seed)


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
            "map_x and map_y must have as many independent parts (blocks or groups); got "
            f"{maps[0]._units} and {maps[1]._units}."
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
