"""Standard errors of the linear-kernel measures by the delete-one-group jackknife
(docs/theory.md §2.11).

The rows are cut into G contiguous groups (`group_bounds`) and a `repalign.stats.GramState` is
kept per group; their sum is the job's statistic. The statistic without group g is the total
minus group g's state, so every linear-kernel value θ can be recomputed without each group,
θ₍₋g₎, exactly as it is computed from the whole statistic (`moment_value`). Then

    std_err = sqrt((G − 1)/G · Σ_g (θ₍₋g₎ − θ̄)²),   θ̄ = (1/G) Σ_g θ₍₋g₎,

the delete-one-group jackknife estimate of the standard error (Efron & Stein 1981; Shao & Tu
1995, §2.1). It holds for any smooth function of the moments, so for KA, CKA and HSIC by every
estimator, and for Procrustes, CCA and SVCCA. A 95% interval is value ± t₀.₉₇₅,G−1 · std_err.

For Procrustes, CCA and SVCCA, whose θ₍₋g₎ would each need a new SVD and eigendecomposition,
θ₍₋g₎ is replaced by its first-order expansion about the whole statistic, the linear jackknife
(Shao & Tu 1995, §2.1.2; `repalign.measures.spectral_gradients`). It leaves out the measures'
curvature across the groups, which the noise singular values of a cross matrix keep at a few
percent of the std_err at any n (docs/theory.md §2.11). The cost: G + 1 moment matrices of
memory; the rows are read and multiplied once, as without it.
"""

from collections import defaultdict
from itertools import pairwise

import numpy as np

from repalign.errors import RepalignError
from repalign.measures.alignment import kernel_measure
from repalign.measures.cca import svcca_components
from repalign.measures.moments import moment_value, over_pairs
from repalign.measures.spectra import feature_spectra, principal_axes
from repalign.measures.spectral_gradients import canonical_gradient, procrustes_gradient

JACKKNIFE_GROUPS = 16
"""The groups of a job or `repalign.pairwise` that asks for the jackknife."""
BY_BLOCKS = {("ka", None), ("cka", "biased"), ("hsic", "biased")}
"""The (measure, estimator) pairs whose delete-one values come from `DeleteOneProducts`: the
linear-kernel products of each pair's blocks, without the whole statistic of each group."""
LINEARISED = ("procrustes", "cca", "svcca")
"""The measures whose delete-one values are first-order expansions (`linearised_changes`)."""


def group_bounds(n, groups):
    """Row ranges [(start, stop)] of ``groups`` contiguous groups of n rows, sizes differing by
    at most one."""
    if not 2 <= groups <= n:
        raise ValueError(f"the jackknife needs 2 to n = {n} groups; got {groups}.")
    edges = [n * g // groups for g in range(groups + 1)]
    return list(pairwise(edges))


def rows_by_group(bounds, start, blocks):
    """``(group, rows)`` for each group of ``bounds`` that the row block ``blocks`` (one array
    per representation, rows ``start`` on) overlaps, ``rows`` its part of the block."""
    stop = start + len(blocks[0])
    for group, (low, high) in enumerate(bounds):
        first, last = max(low, start), min(high, stop)
        if first < last:
            yield group, [B[first - start : last - start] for B in blocks]


def add_rows_by_group(states, bounds, start, blocks):
    """Add the row block ``blocks`` (rows ``start`` on) to the `GramState` of each group of
    ``bounds`` it overlaps (`rows_by_group`)."""
    for group, rows in rows_by_group(bounds, start, blocks):
        states[group].add_block(rows)


def total_of(groups):
    """The `GramState` of all the groups' rows: one new state, the others added in place."""
    total = groups[0] + groups[1]
    for group in groups[2:]:
        total += group
    return total


def jackknife_std_errs(total, groups, configs, pairs, index, axes):
    """{(label, a, b): std_err} of the linear-kernel ``configs`` of ``pairs`` (`jackknife_std_err`
    of their delete-one values).

    ``total`` is the `GramState` of all rows, ``groups`` the states of its groups, ``index``
    maps a name to its position in the states, ``axes(k)`` gives representation k's principal
    axes in ``total``. One delete-one statistic is held at a time. A value that cannot be
    computed without some group has no std_err (None).
    """
    by_blocks = [c for c in configs if (c.name, c.estimator) in BY_BLOCKS]
    linearised = [c for c in configs if c.name in LINEARISED]
    configs = [c for c in configs if c not in by_blocks and c not in linearised]
    estimates = defaultdict(list)
    if linearised:
        estimates.update(linearised_changes(total, groups, linearised, pairs, index, axes))
    for group in groups:
        if by_blocks:
            products = DeleteOneProducts(total, group)
            for a, b in pairs:
                pair = products.of(index[a], index[b])
                for config in by_blocks:
                    try:
                        value = kernel_measure(pair, config.name, config.estimator)
                    except RepalignError:
                        value = np.nan
                    estimates[config.label, a, b].append(value)
        if not configs:
            continue
        rest = total - group
        axes = {}

        def axes_of(k, rest=rest, axes=axes):
            if k not in axes:
                axes[k] = principal_axes(rest, k)
            return axes[k]

        for a, b in pairs:
            for config in configs:
                try:
                    value = moment_value(config, rest, index[a], index[b], axes_of)
                except RepalignError:
                    value = np.nan
                estimates[config.label, a, b].append(value)
    return {key: jackknife_std_err(values) for key, values in estimates.items()}


def linearised_changes(total, groups, configs, pairs, index, axes):
    """{(label, a, b): [ℓ_g]}: for each group, the first-order change of each config's value
    when the group's rows are taken out, ℓ_g = ⟨∇θ, C₍₋g₎⟩ up to a constant common to all
    groups (`repalign.measures.spectral_gradients`), where C₍₋g₎ are the pair's centred blocks
    without the group. The gradient is taken once per pair, at the whole statistic; each group
    then costs inner products with its blocks. NaN where there is no finite gradient. A
    representation with itself scores 1 on any rows: no change. The pairs are taken side by
    side (`repalign.measures.moments.over_pairs`)."""
    without = GroupSums(total, groups, {index[name] for pair in pairs for name in pair})

    def changes_of(pair):
        a, b = pair
        i, j = index[a], index[b]
        if i == j:
            return {(config.label, a, b): [0.0] * len(groups) for config in configs}
        spectra = feature_spectra(total, i, j, axes)
        changes = {}
        for config in configs:
            try:
                gradient = moment_gradient(config, spectra)
            except np.linalg.LinAlgError:
                gradient = None
            terms = None if gradient is None else _stored_terms(gradient, i, j)
            if terms is None:
                changes[config.label, a, b] = [np.nan] * len(groups)
            else:
                changes[config.label, a, b] = _first_order_changes(groups, terms, without).tolist()
        return changes

    return {
        key: change
        for changes in over_pairs(changes_of, pairs, configs, total, index, axes)
        for key, change in changes.items()
    }


def moment_gradient(config, spectra):
    """The `MomentGradient` of a Procrustes, CCA or SVCCA ``config`` at ``spectra``; None where
    the value is not differentiable."""
    if not min(spectra.total_variances()) > 0:
        return None  # a constant representation: no value
    if config.name == "procrustes":
        return procrustes_gradient(spectra)
    if config.name == "cca":
        return canonical_gradient(spectra, *spectra.ranks, squared=config.squared)
    return canonical_gradient(spectra, *svcca_components(spectra, config.variance), squared=False)


def _stored_terms(gradient, i, j):
    """[(r, s, Wᵀ)], r ≤ s, with ⟨W, block (r, s) as a `GramState` stores it⟩ the gradient's
    inner product with the symmetric moments of the pair i ≠ j: the diagonal blocks hold their
    upper triangle only, so W folds G's lower triangle onto the upper. Wᵀ is kept C-ordered,
    to be read against the transposed view of the Fortran-ordered block (the same memory
    order: ten times faster than W against the block). A diagonal block's gradient c·I stays
    the number c. None if the gradient is not finite."""
    first, second = min(i, j), max(i, j)
    xy = gradient.xy if i < j else gradient.xy.T
    blocks = [(i, i, gradient.xx), (first, second, xy), (j, j, gradient.yy)]
    if not all(np.isfinite(G).all() for _, _, G in blocks):
        return None
    terms = []
    for r, s, G in blocks:
        if r == s and np.ndim(G) == 2:
            G = np.triu(G + G.T, 1) + np.diag(np.diag(G))
        terms.append((r, s, G if np.ndim(G) == 0 else np.ascontiguousarray(G.T)))
    return terms


def _first_order_changes(groups, terms, without):
    """[Σ ⟨G, C₍₋g₎⟩ over the pair's blocks] for each group g, less Σ ⟨G, S⟩ of the total, the
    same for every group: with S, s and n the shifted blocks, shifted sums and rows of the
    total less ``groups[g]``'s (`GroupSums` ``without``), C₍₋g₎ = S − s sᵀ/n, so the change
    is −⟨G, S_g⟩ − sᵣᵀ G sₛ / n per block. The second term, for all groups at once, is one
    product of G with the groups' sums; a diagonal block's c·I reads only its trace."""
    changes = np.zeros(len(groups))
    for r, s, Wt in terms:
        sums_r, sums_s = without.sums[r], without.sums[s]
        if np.ndim(Wt) == 0:
            changes -= Wt * np.array([np.trace(group.upper_block(r, r)) for group in groups])
            changes -= Wt * np.einsum("kg,kg->g", sums_r, sums_r) / without.rows
            continue
        # W holds G folded onto the upper triangle when r = s: sᵀ W s is then sᵀ G s
        changes -= [float(np.einsum("ij,ij->", Wt, group.upper_block(r, s).T)) for group in groups]
        changes -= np.einsum("kg,kg->g", sums_s, Wt @ sums_r) / without.rows
    return changes


class GroupSums:
    """For representations ``members`` of ``total``: ``sums[k]``, the (dₖ × G) shifted column
    sums of the total less each group's, and ``rows``, the total's rows less each group's."""

    def __init__(self, total, groups, members):
        self.rows = np.array([total.n - group.n for group in groups], dtype=np.float64)
        self.sums = {
            k: total.shifted_sums(k)[:, None]
            - np.column_stack([group.shifted_sums(k) for group in groups])
            for k in members
        }


class DeleteOneProducts:
    """The linear-kernel products of pairs of representations of the statistic ``total`` minus
    ``group``, read from each pair's blocks of the two states: the statistic without the group is
    never formed whole, nor moved to its means (O(D²) passes per group and centring).

    For representations i, j with shifts c, block S = Σ (xᵢ − cᵢ)(xⱼ − cⱼ)ᵀ, shifted sums sᵢ, sⱼ
    and n rows (each the total's less the group's):

        C = S − sᵢsⱼᵀ/n   (Σ x̃ᵢx̃ⱼᵀ of the rows centred at their means mₖ = cₖ + sₖ/n),
        ‖Σ xᵢxⱼᵀ‖²_F = ‖C + n mᵢmⱼᵀ‖²_F = ‖C‖²_F + 2n mᵢᵀCmⱼ + n²‖mᵢ‖²‖mⱼ‖²,

    the centred and raw products ⟨HKH, HLH⟩ and ⟨K, L⟩ of `FeatureProducts`. C is formed
    entry by entry, as `repalign.stats.GramState.pair` forms it; the raw product's terms are
    those of a sum of nonnegative parts and the cross term they bound, so nothing cancels.
    """

    def __init__(self, total, group):
        self.total, self.group = total, group
        self.n = total.n - group.n
        self._self = {}

    def of(self, i, j):
        """The products of the pair (i, j), as `kernel_measure` reads them."""
        for k in (i, j):
            if k not in self._self:
                self._self[k] = self._products(k, k)
        return _PairProducts(self.n, self._self[i], self._products(i, j), self._self[j])

    def _products(self, i, j):
        """(centred, raw) squared Frobenius norms of block (i, j)."""
        first, second = min(i, j), max(i, j)
        # Cᵀ, from the transposed blocks: C-ordered, as the outer product and einsum read fastest
        # (the states are Fortran-ordered for dsyrk)
        Ct = self.total.upper_block(first, second).T - self.group.upper_block(first, second).T
        sums = [self.total.shifted_sums(k) - self.group.shifted_sums(k) for k in (first, second)]
        shifts = (self.total.shifts[first], self.total.shifts[second])
        means = [c + s / self.n for c, s in zip(shifts, sums, strict=True)]
        Ct -= np.outer(sums[1], sums[0] / self.n)
        if first == second:
            # a diagonal block stores its upper triangle, so Cᵀ holds C's lower one and its
            # diagonal: each entry below the diagonal stands for two
            lower, diagonal, mean = np.tril(Ct, -1), np.diag(Ct), means[0]
            centered = 2.0 * float(np.einsum("ij,ij->", lower, lower)) + float(diagonal @ diagonal)
            across = 2.0 * float(mean @ lower @ mean) + float((diagonal * mean) @ mean)
        else:
            centered = float(np.einsum("ij,ij->", Ct, Ct))
            across = float(means[1] @ Ct @ means[0])
        raw = (
            centered
            + 2.0 * self.n * across
            + self.n**2 * float(means[0] @ means[0]) * float(means[1] @ means[1])
        )
        return centered, raw


class _PairProducts:
    """`kernel_measure`'s view of one pair's products: r, s ∈ {0, 1} name X and Y."""

    def __init__(self, n, first, cross, second):
        self.n = n
        self._products = {(0, 0): first, (0, 1): cross, (1, 0): cross, (1, 1): second}

    def centered(self, r, s):
        return self._products[r, s][0]

    def raw(self, r, s):
        return self._products[r, s][1]


def jackknife_std_err(estimates):
    """sqrt((G − 1)/G · Σ (θ₍₋g₎ − θ̄)²) of the G delete-one estimates; None if any is not
    finite."""
    values = np.asarray(estimates, dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    groups = len(values)
    return float(np.sqrt((groups - 1) / groups * np.sum((values - values.mean()) ** 2)))
