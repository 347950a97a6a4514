"""The mergeable second-moment statistic behind every linear-kernel measure (docs/design.md §4).

For M representations of one set of samples, each row i contributes the vector

    zᵢ = [x¹ᵢ − c¹, ‖x¹ᵢ − c¹‖², …, xᴹᵢ − cᴹ, ‖xᴹᵢ − cᴹ‖², 1]

and the state keeps ``Σᵢ zᵢzᵢᵀ``: one symmetric (D+1)×(D+1) matrix, D = Σₖ (dₖ + 1). Its last
row holds the column sums and n. The shifts cᵏ are fixed per job (a pilot mean) and only keep
the sums well conditioned; any other centring (the exact mean, or none) is recovered from the
state without touching the data again, by the affine map of `GramState.pair`.

Everything that the linear kernel needs is a block of this matrix: Xᵀ Y (‖XᵀY‖² = ⟨K, L⟩_F,
Kornblith et al. 2019), the centring terms, and the squared-norm columns that the unbiased
HSIC of Song et al. (2012) needs (Σ‖xᵢ‖²‖yᵢ‖², Xᵀ‖y‖²). The state is a plain sum over rows, so
row blocks can be processed anywhere and merged with ``+``.

Cost: O(n·D²) time in one SYRK per row block, O(D²) memory, independent of n. A block's
products are float64, or float32 with ``precision="float32"`` (half the time; the blocks are
still added in float64, docs/design.md §4, "Precision").
"""

import numpy as np
from scipy.linalg.blas import dsyrk, ssyrk

from repalign.blocks import BLOCK_BYTES, row_slices

STATES_PER_WORKER = 4
"""Second-moment states one worker of a job may hold at once: an actor's running sum and its
unit's part, the sum's copy in the object store until the tile's owner takes it, and an
owner's sum (docs/design.md §4, "Owners")."""


def default_tile_bytes(memory_bytes):
    """The largest state of one tile of the statistic, for workers of ``memory_bytes`` each
    (a spec's ``tile_bytes`` when it has none): a `STATES_PER_WORKER`-th of their memory.
    Beyond it the job tiles the statistic (`jobs.passes.moments.statistic_tiles`), and
    `repalign.preflight` plans with it."""
    return memory_bytes // STATES_PER_WORKER


def moment_matrix_bytes(dims):
    """Bytes of the float64 moment matrix of representations of widths ``dims``: 8·(D + 1)²,
    D = Σₖ (dₖ + 1)."""
    return 8 * (sum(d + 1 for d in dims) + 1) ** 2


PRECISIONS = ("float64", "float32")
FLOAT32_BLOCK_ROWS = 4096
"""Most rows one float32 block sums before its product joins the float64 state: a block's
entries carry at most about b·ε₃₂ relative rounding (docs/design.md §4, "Precision")."""


class MomentRows:
    """The layout of the rows z = [x¹ − c¹, ‖x¹ − c¹‖², …, xᴹ − cᴹ, ‖xᴹ − cᴹ‖², 1] of a list of
    representation widths and shifts, and how a block of them is built.

    Parameters
    ----------
    dims : sequence of int
        Width dₖ of each representation.
    shifts : sequence of ndarray, optional
        The shift cᵏ subtracted from each representation's rows before accumulation; zeros by
        default. States can only be added when their shifts are identical.
    precision : {"float64", "float32"}
        The type each block's rows and products are computed in; the state accumulates the
        blocks in float64 either way (docs/design.md §4, "Precision").
    """

    def __init__(self, dims, shifts=None, precision="float64"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}.")
        self.dims = tuple(int(d) for d in dims)
        if shifts is None:
            shifts = [np.zeros(d) for d in self.dims]
        self.shifts = [np.asarray(c, dtype=np.float64).copy() for c in shifts]
        self.precision = precision
        self.offsets = np.concatenate([[0], np.cumsum([d + 1 for d in self.dims])])

    @property
    def width(self):
        """Side of the moment matrix, D + 1."""
        return int(self.offsets[-1]) + 1

    def row_blocks(self, n):
        """Slices that cut n rows into the blocks `add_block` takes: `repalign.blocks.row_slices`
        for the same working-set bytes in either precision (twice the rows in float32). In
        float32, at least as many rows as the state is wide (its float32 rows then take at most
        half the state's bytes) and at most `FLOAT32_BLOCK_ROWS`: each float32 block's product
        is added to the float64 state, a pass over (D + 1)², so fewer, longer blocks add fewer
        passes (and ssyrk runs faster on them)."""
        if self.precision == "float64":
            return row_slices(n, self.width)
        # row_slices counts 8-byte entries
        float32_bytes = max(BLOCK_BYTES * 2, 8 * self.width * self.width)
        return row_slices(n, self.width, block_bytes=float32_bytes, max_rows=FLOAT32_BLOCK_ROWS)

    def _same_layout(self, other):
        return (
            self.dims == other.dims
            and self.precision == other.precision
            and all(np.array_equal(a, b) for a, b in zip(self.shifts, other.shifts, strict=True))
        )

    def _rows(self, blocks):
        """The rows z of a block, in the state's precision, shape (rows, D + 1).

        In float32 each entry is the float64 x − c rounded once to float32, and its squared
        norm is summed in float32 from those entries.
        """
        rows = blocks[0].shape[0]
        Z = np.empty((rows, self.width), dtype=self.precision)
        for k, (block, shift) in enumerate(zip(blocks, self.shifts, strict=True)):
            start, stop = self.offsets[k], self.offsets[k + 1] - 1
            U = Z[:, start:stop]
            np.subtract(block, shift, out=U)
            np.einsum("ij,ij->i", U, U, out=Z[:, stop])
        Z[:, -1] = 1.0
        return Z


class GramState(MomentRows):
    """Σ zzᵀ over the rows seen so far, for a fixed list of representation widths and shifts
    (`MomentRows`), accumulated in float64.

    ``upper``, if given, is the state's matrix itself (Fortran order, its upper triangle and
    diagonal read), taken without a copy; else the state starts at zero rows.
    """

    def __init__(self, dims, shifts=None, precision="float64", *, upper=None):
        super().__init__(dims, shifts, precision)
        if upper is None:
            # Upper triangle only, Fortran order, so that dsyrk accumulates into it in place.
            # Zeroed by hand: numpy asks Linux for huge pages on what `empty` allocates, not on
            # what `zeros` does, whose first touch then faults 4 KB pages (16 states of width
            # 4,105: 1.78 s against 0.50 s here).
            upper = np.empty((self.width, self.width), order="F")
            upper.fill(0.0)
        self._upper = upper
        self._moved = {}  # centre (bool) -> full moment matrix moved to it; see `pair`

    @classmethod
    def from_arrays(cls, arrays, *, center=True, precision="float64"):
        """Accumulate in-memory arrays (rows paired), block by block.

        With ``center=True`` the shifts are the exact column means (one cheap extra pass),
        which keeps every centred quantity accurate.
        """
        shifts = [_column_means(A) for A in arrays] if center else None
        state = cls([A.shape[1] for A in arrays], shifts, precision)
        for rows in state.row_blocks(arrays[0].shape[0]):
            state.add_block([A[rows] for A in arrays])
        return state

    @classmethod
    def from_moments(cls, dims, shifts, moments):
        """A state from a saved moment matrix (`moments`) and the shifts it was built with."""
        width = MomentRows(dims).width
        if moments.shape != (width, width):
            raise ValueError(f"moments of shape {moments.shape} do not fit widths {dims}.")
        return cls(dims, shifts, upper=np.asfortranarray(np.triu(moments)))

    @property
    def n(self):
        """Number of rows accumulated."""
        return round(self._upper[-1, -1])

    def add_block(self, blocks):
        """Add one row block: a list with one (rows, dₖ) array per representation.

        float64: one dsyrk into the state. float32: one ssyrk of the block, whose upper triangle
        is then added to the float64 state.
        """
        Z = self._rows(blocks)
        # Zᵀ of a C-ordered Z is Fortran-ordered: the syrk reads it without a copy.
        if self.precision == "float64":
            self._upper = dsyrk(1.0, Z.T, beta=1.0, c=self._upper, trans=0, overwrite_c=True)
        else:
            self._upper += ssyrk(1.0, Z.T, trans=0)
        self._moved.clear()

    def __add__(self, other):
        total = GramState(self.dims, self.shifts, self.precision, upper=self._upper.copy(order="F"))
        total += other
        return total

    def __iadd__(self, other):
        """Add ``other`` in place: no new D×D matrix (an actor adds one per unit)."""
        if not self._same_layout(other):
            raise ValueError(
                "GramState: only states with the same widths and shifts (and precision) add up."
            )
        np.add(self._upper, other._upper, out=self._upper)
        self._moved.clear()
        return self

    def __sub__(self, other):
        """The state of the rows summed here but not in ``other``, a state of some of them (a
        jackknife's statistic without one group, `repalign.measures.jackknife`)."""
        if not self._same_layout(other):
            raise ValueError("GramState: only states with the same widths and shifts subtract.")
        upper = np.asfortranarray(self._upper - other._upper)
        return GramState(self.dims, self.shifts, self.precision, upper=upper)

    @property
    def moments(self):
        """The full symmetric moment matrix Σ zzᵀ, shape (D+1, D+1): a new array."""
        return symmetric_from_upper(self._upper)

    def stored_moments(self):
        """Σ zzᵀ as stored, a view: its upper triangle and diagonal, the strict lower triangle
        not set. `from_moments` takes it back, without the symmetric copy `moments` makes (at
        D = 4,105: 0.18 s, and 134 MB)."""
        return self._upper

    def mean(self, k):
        """Column means of representation k."""
        start, stop = self.offsets[k], self.offsets[k + 1] - 1
        return self.shifts[k] + self._upper[start:stop, -1] / self._upper[-1, -1]

    def upper_block(self, i, j):
        """Σ (xᵢ − cᵢ)(xⱼ − cⱼ)ᵀ over the rows, the (dᵢ × dⱼ) block of the shifted moments of
        representations i ≤ j, as stored: a view, whose lower triangle is not set when i = j
        (`symmetric_from_upper` completes it)."""
        if i > j:
            raise ValueError(f"GramState.upper_block: i ≤ j, not {i} > {j}.")
        rows, cols = (slice(self.offsets[k], self.offsets[k + 1] - 1) for k in (i, j))
        return self._upper[rows, cols]

    def shifted_sums(self, k):
        """Σ (xₖ − cₖ) over the rows: representation k's column sums about its shift."""
        return self._upper[self.offsets[k] : self.offsets[k + 1] - 1, -1]

    def pair(self, i, j, *, center):
        """Moments of representations i and j, centred at their means or not centred at all.

        Returns the `PairMoments` of [x, ‖x‖², y, ‖y‖², 1] where x, y are the rows of i and j,
        either minus their exact column means (``center=True``) or raw (``center=False``).
        The first call for either centring moves the whole matrix to it once (O(D²)) and keeps
        the result, so that every later pair is a view: an all-pairs job pays O(D²), not
        O(D²) per pair. The kept matrices are dropped when rows are added.
        """
        if center not in self._moved:
            targets = [self.mean(k) if center else np.zeros(d) for k, d in enumerate(self.dims)]
            deltas = [t - c for t, c in zip(targets, self.shifts, strict=True)]
            self._moved[center] = _reshift(self.moments, self.dims, deltas)
        M = self._moved[center]
        return PairMoments(M, *(slice(self.offsets[k], self.offsets[k + 1] - 1) for k in (i, j)))

    def extended(self, border):
        """The state of these representations followed by ``border``'s new ones.

        ``border`` (a `BorderState` over this state's representations, with the same shifts,
        then new ones) holds the rows of the moment matrix that involve a new representation;
        this state supplies the old-by-old block, which is not recomputed.
        """
        old = len(self.dims)
        if (
            border.dims[:old] != self.dims
            or border.n != self.n
            or not all(
                np.array_equal(a, b) for a, b in zip(self.shifts, border.shifts[:old], strict=False)
            )
        ):
            raise ValueError("GramState.extended: the border must extend this state's layout.")
        full = GramState(border.dims, border.shifts)
        cut, rows = int(self.offsets[-1]), border.rows_matrix
        # Upper triangles, written in place: old × old and old × 1, then the border's rows.
        full._upper[:cut, :cut] = np.triu(self._upper[:cut, :cut])
        full._upper[:cut, -1] = self._upper[:cut, -1]
        full._upper[-1, -1] = self._upper[-1, -1]
        full._upper[:cut, cut:-1] = rows[:, :cut].T
        full._upper[cut:-1, cut:-1] = np.triu(rows[:, cut:-1].T)
        full._upper[cut:-1, -1] = rows[:, -1]
        return full


class BorderState(MomentRows):
    """The rows of Σ zzᵀ that involve the representations from ``first_new`` on: Z_newᵀ Z,
    a (D_new × (D + 1)) float64 matrix, accumulated by one rectangular GEMM per row block, so
    that adding representations to an existing state costs n·D_new·D instead of n·D²/2
    (`GramState.extended`). It holds no D×D matrix.
    """

    def __init__(self, dims, shifts, first_new, precision="float64"):
        super().__init__(dims, shifts, precision)
        self.first_new = first_new
        self._new = slice(int(self.offsets[first_new]), int(self.offsets[-1]))
        self.rows_matrix = np.zeros((self._new.stop - self._new.start, self.width))
        self.n = 0

    def add_block(self, blocks):
        Z = self._rows(blocks)
        self.rows_matrix += Z[:, self._new].T @ Z
        self.n += len(Z)

    def __iadd__(self, other):
        if not self._same_layout(other) or self.first_new != other.first_new:
            raise ValueError("BorderState: only borders of the same layout add up.")
        self.rows_matrix += other.rows_matrix
        self.n += other.n
        return self

    def __add__(self, other):
        total = BorderState(self.dims, self.shifts, self.first_new, self.precision)
        total.rows_matrix, total.n = self.rows_matrix.copy(), self.n
        total += other
        return total


def symmetric_from_upper(upper):
    """The symmetric matrix whose upper triangle and diagonal are those of ``upper`` (its strict
    lower triangle is not read): a new C-ordered array.

    Copied in column panels of `SYMMETRIC_PANEL`: each panel's part above the diagonal goes to
    its place and, transposed, to the mirror place, whose rows are then a short contiguous run.
    One whole-matrix transposed add instead (``full += full.T``) walks memory with a stride of
    a row per element: for D = 4,105 it took 1.17 s against 0.045 s this way.
    """
    size = upper.shape[0]
    full = np.empty((size, size), order="F")
    for start in range(0, size, SYMMETRIC_PANEL):
        stop = min(start + SYMMETRIC_PANEL, size)
        above = upper[:start, start:stop]
        full[:start, start:stop] = above
        full[start:stop, :start] = above.T
        block = np.triu(upper[start:stop, start:stop])
        full[start:stop, start:stop] = block + np.triu(block, 1).T
    return full.T  # the same symmetric matrix, C-ordered


SYMMETRIC_PANEL = 256
"""Columns per panel of `symmetric_from_upper`: 256 float64 rows of a panel fit in L2."""


def _column_means(A):
    total = np.zeros(A.shape[1])
    for rows in row_slices(A.shape[0], A.shape[1]):
        total += A[rows].sum(axis=0, dtype=np.float64)
    return total / A.shape[0]


def _reshift(M, dims, deltas):
    """Moments after moving each representation's shift by δ, i.e. z' = T z, written over ``M``.

    For one representation, u' = u − δ and ‖u'‖² = ‖u‖² − 2δᵀu + ‖δ‖², an affine map of
    [u, ‖u‖², 1]; the new moments are T M Tᵀ. T is identity plus a few rank-one pieces, so it is
    applied as row operations (T M), then the same as column operations ((T M) Tᵀ), in place:
    O(D²) instead of a dense O(D³) product. Each norm row (column) is moved before its
    representation's rows (columns), whose old values it needs; the last row and column, of
    the constant 1, are moved by neither.
    """
    start = 0
    for d, delta in zip(dims, deltas, strict=True):
        u, norm = slice(start, start + d), start + d
        M[norm] += (delta @ delta) * M[-1] - 2.0 * (delta @ M[u])
        M[u] -= np.outer(delta, M[-1])
        start += d + 1
    start = 0
    for d, delta in zip(dims, deltas, strict=True):
        u, norm = slice(start, start + d), start + d
        M[:, norm] += (delta @ delta) * M[:, -1] - 2.0 * (M[:, u] @ delta)
        M[:, u] -= np.outer(M[:, -1], delta)
        start += d + 1
    return M


class PairMoments:
    """Named blocks of the moment matrix of [x₀, a₀, x₁, a₁, 1] for a pair of representations.

    Representation 0 is x, representation 1 is y; aᵣ = ‖xᵣ‖² per row. Methods take the indices
    r, s in {0, 1}, so that one formula serves ⟨K, L⟩, ⟨K, K⟩ and ⟨L, L⟩ alike.

    Parameters
    ----------
    M : ndarray
        A symmetric moment matrix whose last row and column belong to the constant 1.
    x, y : slice
        The feature columns of each representation in ``M``; its squared norm is the column
        right after them.
    """

    def __init__(self, M, x, y):
        self._M = M
        self._features = (x, y)
        self._norms = (x.stop, y.stop)
        self.n = M[-1, -1]

    def cross(self, r, s):
        """Σᵢ xᵣᵢ xₛᵢᵀ, i.e. Xᵣᵀ Xₛ."""
        return self._M[self._features[r], self._features[s]]

    def norm_products(self, r, s):
        """Σᵢ ‖xᵣᵢ‖² ‖xₛᵢ‖²."""
        return self._M[self._norms[r], self._norms[s]]

    def feature_sums(self, r):
        """Xᵣᵀ 1."""
        return self._M[self._features[r], -1]

    def norm_sum(self, r):
        """Σᵢ ‖xᵣᵢ‖²."""
        return self._M[self._norms[r], -1]

    def features_times_norms(self, r, s):
        """Xᵣᵀ aₛ = Σᵢ xᵣᵢ ‖xₛᵢ‖²."""
        return self._M[self._features[r], self._norms[s]]
