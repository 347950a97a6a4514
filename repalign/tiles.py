"""Exact RBF kernel products of many representations, streamed in b×b tiles (docs/design.md §4).

For M representations of the same n samples, with RBF Gram matrices K₁, …, K_M, every product
of `repalign.measures.kernel_products` (and so KA, CKA and HSIC) is a function of

    Pₘₘ' = ⟨Kₘ, Kₘ'⟩_F = Σᵢⱼ Kₘ[i, j] Kₘ'[i, j]     the M×M matrix of inner products
    sₘ   = Kₘ 1                                    row sums, length n each
    dₘ   = diag(Kₘ)                                diagonals, length n each (ones for RBF)

With K, L two of the Kₘ, s, t their row sums, d, e their diagonals, T_K = 1ᵀK1 = 1ᵀs,
T_L = 1ᵀL1 = 1ᵀt and H = I − 11ᵀ/n:

    raw       ⟨K, L⟩      = P
    centered  ⟨HKH, HLH⟩  = P − (2/n) sᵀt + T_K T_L/n²
    lange     ⟨K', L'⟩    = ⟨HKH, HLH⟩ − aᵀb,   K' = HKH with its diagonal set to 0,
                            aᵢ = (HKH)ᵢᵢ = dᵢ − 2sᵢ/n + T_K/n²,  bᵢ = eᵢ − 2tᵢ/n + T_L/n²
    song      HSIC_u (Song et al. 2012, eq. (5)) of K̃ = K − diag(d), L̃ = L − diag(e), from
                Tr(K̃L̃) = P − dᵀe,   1ᵀK̃1 = T_K − 1ᵀd,   1ᵀK̃L̃1 = (s − d)ᵀ(t − e)

(the centred form uses Tr(HKHHLH) = Tr(KL) − (2/n) 1ᵀKL1 + (1ᵀK1)(1ᵀL1)/n² for symmetric K, L).
P, s and d are sums over the entries of the Grams, so they are accumulated one tile
Kₘ[I, J] at a time, for all M representations at once, and states built from disjoint sets of
tiles add up. The Grams are symmetric: a job visits only the tiles I ≤ J of one partition of
the rows into blocks; an off-diagonal tile also stands for its mirror Kₘ[J, I], so it counts
twice in P and adds its column sums to s[J]; a diagonal tile counts once.

Cost: about n²·Σₘ dₘ flops in float64 GEMMs and M·n²/2 exponentials (symmetry halves both);
memory O(M·b²) for one tile of every kernel (8·M·b² bytes) plus O(M·n) for s and d. Never an
n×n matrix.
"""

import operator
import sys

import numpy as np

from repalign.errors import InvalidParameterError, RepalignError, RowMismatchError, ShapeError
from repalign.measures.kernel_products import song_hsic
from repalign.measures.kernels import resolve_sigma
from repalign.validation import check_int_in_range, check_representation, check_sigma

BLOCK_ROWS = 1024
"""Default rows per block of `tiled_state`: a tile of M kernels then takes M × 8 MiB."""


def tiled_state(arrays, *, sigma="median", block_rows=BLOCK_ROWS):
    """Accumulate in-memory representations tile by tile, as the all-pairs job does.

    The rows are cut into blocks of ``block_rows`` (the last one shorter) and every tile I ≤ J
    is added once. Each representation is shifted by its exact column mean, the centring that
    `repalign.measures.kernels` uses for its Gram matrices.

    Parameters
    ----------
    arrays : sequence of array-like of shapes (n_samples, n_features_m)
        Paired representations: row i of each describes sample i.
    sigma : float or "median", default="median"
        RBF bandwidth of every representation, or each one's median heuristic
        (`repalign.median_sigma`).
    block_rows : int, default=BLOCK_ROWS
        Rows per block; a tile of all kernels takes 8·M·block_rows² bytes.

    Returns
    -------
    RbfTileState
        Complete: ``state.products(i, j)`` gives the products of any two representations.
    """
    sigma = check_sigma(sigma)
    block_rows = check_int_in_range(block_rows, name="block_rows", low=1, high=sys.maxsize)
    if not arrays:
        raise ShapeError("arrays must hold at least one representation; got none.")
    names = [f"arrays[{m}]" for m in range(len(arrays))]
    arrays = [check_representation(A, name=name) for A, name in zip(arrays, names, strict=True)]
    n = arrays[0].shape[0]
    for A, name in zip(arrays, names, strict=True):
        if A.shape[0] != n:
            raise RowMismatchError(
                f"arrays must have one row per sample each; got {names[0]} with {n} rows "
                f"and {name} with {A.shape[0]}."
            )
    state = RbfTileState(
        [resolve_sigma(A, sigma, name=name) for A, name in zip(arrays, names, strict=True)],
        n,
        shifts=[A.mean(axis=0, dtype=np.float64) for A in arrays],
    )
    blocks = [slice(start, min(start + block_rows, n)) for start in range(0, n, block_rows)]
    for a, rows_i in enumerate(blocks):
        for rows_j in blocks[a:]:
            state.add_tile(rows_i, [A[rows_i] for A in arrays], rows_j, [A[rows_j] for A in arrays])
    return state


class RbfTileState:
    """Sums over tiles of M RBF Gram matrices: Σ Kₘ∘Kₘ', Kₘ1 and diag(Kₘ).

        Kₘ[i, j] = exp(−‖xᵢ − xⱼ‖² / (2σₘ²)),   ‖u − v‖² = ‖u‖² + ‖v‖² − 2uᵀv  on shifted rows

    Tiles are added with `add_tile`, states holding disjoint tiles are merged with ``+``, and
    once every tile I ≤ J of one partition of the rows has been added exactly once
    (`is_complete`), `products` gives the kernel products of any pair.

    Parameters
    ----------
    sigmas : sequence of float
        The bandwidth σₘ > 0 of each representation, already resolved (a median heuristic needs
        the data, or a pilot sample of it).
    n : int
        Number of samples: the side of every Gram matrix.
    shifts : sequence of ndarray of shapes (n_features_m,), optional
        Subtracted from each representation's rows before distances are computed; no shift by
        default. The kernel does not depend on it, but ‖u‖² + ‖v‖² − 2uᵀv loses digits to
        cancellation on rows far from the origin: a pilot mean keeps it accurate.
        States add up only when their sigmas and shifts are identical.

    Notes
    -----
    Blocks of any float dtype are shifted into float64 and every tile is computed and summed
    in float64, so a float32 input gives the products of its exact float64 values. Squared
    distances are clipped at 0 and are exactly 0 on the global diagonal, as in
    `repalign.rbf_gram`. The centred and unbiased products are differences of terms of size
    n²·mean(K)·mean(L); when the kernels barely vary (σ far from the scale of the data) they
    lose relative accuracy, exactly as the explicit-Gram products do. Identical rows at two
    different indices get a kernel value within rounding of 1, not exactly 1, as there.
    """

    def __init__(self, sigmas, n, *, shifts=None):
        self.sigmas = tuple(float(sigma) for sigma in sigmas)
        self.n = int(n)
        if shifts is None:
            shifts = [0.0] * len(self.sigmas)
        self.shifts = [np.asarray(shift, dtype=np.float64) for shift in shifts]
        size = len(self.sigmas)
        self._inner = np.zeros((size, size))
        self._row_sums = np.zeros((size, self.n))
        self._diagonals = np.zeros((size, self.n))
        self._tiles = set()  # (start_i, stop_i, start_j, stop_j) with I before J

    def add_tile(self, rows_i, blocks_i, rows_j, blocks_j):
        """Add the tile Kₘ[I, J] of every representation m, and its mirror when I ≠ J.

            P += w · Σ_{i∈I, j∈J} Kₘ[i, j] Kₘ'[i, j],   w = 1 if I = J else 2
            sₘ[I] += Kₘ[I, J] 1,   and sₘ[J] += Kₘ[I, J]ᵀ 1 if I ≠ J
            dₘ[I] += diag(Kₘ[I, I])                       if I = J

        Parameters
        ----------
        rows_i, rows_j : slice or int
            The global rows I and J of the two blocks: a slice, or the first row (the blocks'
            length gives the end). I and J are equal (a diagonal tile) or disjoint, in either
            order.
        blocks_i, blocks_j : sequence of ndarray of shapes (len(I), n_features_m), (len(J), ...)
            One array per representation, holding its rows I (rows J), any float dtype.

        Raises
        ------
        ShapeError
            Not one block per representation, or blocks with different numbers of rows.
        InvalidParameterError
            A range that is not its blocks' rows within [0, n), or I and J overlapping without
            being equal.
        RepalignError
            The tile, or its mirror, was added before.
        """
        range_i = self._row_range(rows_i, blocks_i, "i")
        range_j = self._row_range(rows_j, blocks_j, "j")
        if range_j < range_i:
            range_i, range_j, blocks_i, blocks_j = range_j, range_i, blocks_j, blocks_i
        on_diagonal = range_i == range_j
        if not on_diagonal and range_j[0] < range_i[1]:
            raise InvalidParameterError(
                f"tile rows {range_i} and {range_j} overlap: the two blocks of a tile must be "
                "the same rows or disjoint ones."
            )
        if range_i + range_j in self._tiles:
            raise RepalignError(
                f"the tile of rows {range_i} × {range_j} was already added: each tile I ≤ J "
                "counts once."
            )
        tiles = self._kernel_tiles(blocks_i, blocks_j, on_diagonal)
        flat = tiles.reshape(len(tiles), -1)
        self._inner += (1.0 if on_diagonal else 2.0) * (flat @ flat.T)
        self._row_sums[:, slice(*range_i)] += tiles.sum(axis=2)
        if on_diagonal:
            self._diagonals[:, slice(*range_i)] += np.diagonal(tiles, axis1=1, axis2=2)
        else:
            self._row_sums[:, slice(*range_j)] += tiles.sum(axis=1)
        self._tiles.add(range_i + range_j)

    def __add__(self, other):
        """The state of both sets of tiles, which must be disjoint."""
        if (self.n, self.sigmas) != (other.n, other.sigmas) or not all(
            np.array_equal(a, b) for a, b in zip(self.shifts, other.shifts, strict=True)
        ):
            raise InvalidParameterError(
                "RbfTileState: only states with the same n, sigmas and shifts add up; got "
                f"n={self.n}, sigmas={self.sigmas} and n={other.n}, sigmas={other.sigmas} "
                "(or different shifts)."
            )
        shared = self._tiles & other._tiles
        if shared:
            first = min(shared)
            raise RepalignError(
                f"RbfTileState: the states share {len(shared)} tiles, the first of rows "
                f"{first[:2]} × {first[2:]}; each tile I ≤ J counts once."
            )
        total = RbfTileState(self.sigmas, self.n, shifts=self.shifts)
        total._inner = self._inner + other._inner
        total._row_sums = self._row_sums + other._row_sums
        total._diagonals = self._diagonals + other._diagonals
        total._tiles = self._tiles | other._tiles
        return total

    @property
    def covered_pairs(self):
        """Pairs i ≤ j in the tiles added, with repeats: n(n + 1)/2 once complete.

        A tile I × J holds |I|·|J| pairs, a diagonal one |I|(|I| + 1)/2.
        """
        return sum(
            (stop_i - start_i) * (stop_i - start_i + 1) // 2
            if start_i == start_j
            else (stop_i - start_i) * (stop_j - start_j)
            for start_i, stop_i, start_j, stop_j in self._tiles
        )

    def is_complete(self):
        """Whether the tiles cover the upper triangle i ≤ j exactly once.

        True when the row ranges of the tiles cut [0, n) into contiguous disjoint blocks and
        every one of the B(B + 1)/2 tiles I ≤ J of these B blocks has been added (tiles are
        never added twice).
        """
        blocks = sorted({tile[:2] for tile in self._tiles} | {tile[2:] for tile in self._tiles})
        stops = [0] + [stop for _, stop in blocks]
        partition = stops[-1] == self.n and all(
            start == stop for (start, _), stop in zip(blocks, stops, strict=False)
        )
        return partition and len(self._tiles) == len(blocks) * (len(blocks) + 1) // 2

    def products(self, i, j):
        """The kernel products of representations i and j (0 and 1 in the result).

        Returns
        -------
        TileProducts
            With the methods ``raw``, ``centered``, ``song`` and ``lange`` of
            `repalign.measures.kernel_products.GramProducts`.

        Raises
        ------
        RepalignError
            The tiles added do not cover the upper triangle exactly once (`is_complete`).
        """
        if not self.is_complete():
            raise RepalignError(
                f"the tiles added do not cover the upper triangle of the {self.n}×{self.n} "
                "Gram matrices exactly once with one set of row blocks: they hold "
                f"{self.covered_pairs:,} of the {self.n * (self.n + 1) // 2:,} pairs i ≤ j "
                f"(counting repeats) in {len(self._tiles)} tiles."
            )
        pair = [i, j]
        return TileProducts(
            self.n, self._inner[np.ix_(pair, pair)], self._row_sums[pair], self._diagonals[pair]
        )

    def _row_range(self, rows, blocks, side):
        """(start, stop) of the global rows of ``blocks``, checked against ``rows``."""
        if len(blocks) != len(self.sigmas):
            raise ShapeError(
                f"blocks_{side} must hold one block per representation ({len(self.sigmas)}); "
                f"got {len(blocks)}."
            )
        lengths = {block.shape[0] for block in blocks}
        if len(lengths) != 1:
            raise ShapeError(
                f"blocks_{side} must hold the same rows of every representation; got blocks "
                f"of {sorted(lengths)} rows."
            )
        length = lengths.pop()
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.n)
        else:
            start = operator.index(rows)
            stop, step = start + length, 1
        if step != 1 or stop - start != length or not 0 <= start < stop <= self.n:
            raise InvalidParameterError(
                f"rows_{side}={rows!r} must name the {length} rows of blocks_{side}, "
                f"contiguous and within [0, {self.n})."
            )
        return start, stop

    def _kernel_tiles(self, blocks_i, blocks_j, on_diagonal):
        """Kₘ[I, J] of every representation, stacked: shape (M, |I|, |J|), float64."""
        tiles = np.empty((len(self.sigmas), blocks_i[0].shape[0], blocks_j[0].shape[0]))
        for tile, A, B, shift, sigma in zip(
            tiles, blocks_i, blocks_j, self.shifts, self.sigmas, strict=True
        ):
            U = np.subtract(A, shift, dtype=np.float64)
            V = U if on_diagonal else np.subtract(B, shift, dtype=np.float64)
            _rbf_exponents(U, V, sigma, out=tile)
            if on_diagonal:
                np.fill_diagonal(tile, 0.0)
            np.exp(tile, out=tile)
        return tiles


class TileProducts:
    """The four kernel products of two representations, from the sums of `RbfTileState`.

    The same methods as `repalign.measures.kernel_products.GramProducts`, with r, s ∈ {0, 1}
    the two representations, so that the ratios of `repalign.measures.alignment` apply
    unchanged. The identities are those of the module docstring; each costs O(n).

    Parameters
    ----------
    n : int
    inner : ndarray of shape (2, 2)
        ⟨Kᵣ, Kₛ⟩_F.
    row_sums, diagonals : ndarray of shape (2, n)
        Kᵣ 1 and diag(Kᵣ).
    """

    def __init__(self, n, inner, row_sums, diagonals):
        self.n = n
        self._inner = inner
        self._row_sums = row_sums
        self._diagonals = diagonals
        self._totals = row_sums.sum(axis=1)
        self._centred_diagonals = diagonals - 2.0 * row_sums / n + self._totals[:, None] / n**2

    def raw(self, r, s):
        """⟨Kᵣ, Kₛ⟩."""
        return self._inner[r, s]

    def centered(self, r, s):
        """⟨HKᵣH, HKₛH⟩ = ⟨Kᵣ, Kₛ⟩ − (2/n) (Kᵣ1)ᵀ(Kₛ1) + (1ᵀKᵣ1)(1ᵀKₛ1)/n²."""
        n = self.n
        return (
            self._inner[r, s]
            - 2.0 / n * (self._row_sums[r] @ self._row_sums[s])
            + self._totals[r] * self._totals[s] / n**2
        )

    def lange(self, r, s):
        """⟨K'ᵣ, K'ₛ⟩ = ⟨HKᵣH, HKₛH⟩ − Σᵢ (HKᵣH)ᵢᵢ (HKₛH)ᵢᵢ."""
        return self.centered(r, s) - self._centred_diagonals[r] @ self._centred_diagonals[s]

    def song(self, r, s):
        """HSIC_u of Kᵣ and Kₛ, from Tr(K̃ᵣK̃ₛ), 1ᵀK̃1 and 1ᵀK̃ᵣK̃ₛ1 (K̃ = K − diag K)."""
        d_r, d_s = self._diagonals[r], self._diagonals[s]
        return song_hsic(
            self.n,
            trace=self._inner[r, s] - d_r @ d_s,
            sum_r=self._totals[r] - d_r.sum(),
            sum_s=self._totals[s] - d_s.sum(),
            cross_sum=(self._row_sums[r] - d_r) @ (self._row_sums[s] - d_s),
        )


def _rbf_exponents(U, V, sigma, *, out):
    """−‖uᵢ − vⱼ‖²/(2σ²) = (⟨uᵢ, vⱼ⟩ − ‖uᵢ‖²/2 − ‖vⱼ‖²/2)/σ² into ``out``.

    Rounding can leave values above 0 (negative squared distances): they are set to 0.
    """
    scale = 1.0 / (sigma * sigma)
    np.matmul(U, V.T * scale, out=out)
    out -= (0.5 * scale) * np.einsum("ij,ij->i", U, U)[:, None]
    out -= (0.5 * scale) * np.einsum("ij,ij->i", V, V)[None, :]
    np.minimum(out, 0.0, out=out)
