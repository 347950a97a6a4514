"""Exact RBF products from b×b tiles (repalign.tiles) against explicit n×n Gram matrices."""

import itertools
import time
import tracemalloc

import numpy as np
import pytest

import repalign
from repalign.errors import InvalidParameterError, RepalignError, RowMismatchError, ShapeError
from repalign.measures.kernel_products import GramProducts
from repalign.tiles import RbfTileState, tiled_state
from tests.conftest import paired_data
from tests.reference import gram

PRODUCTS = ("raw", "centered", "song", "lange")

# The tiled sums and the n×n sums differ in summation order only (about 1e-14 relative was
# measured); the margin covers the cancellation in the centred and unbiased products.
RTOL = 1e-10


def representations(n, dtype=np.float64):
    """Three paired, uncentred representations of widths 5, 17 and 40."""
    X, Y = paired_data(0, n, 5, 17, dtype=dtype)
    W = np.random.default_rng(1).standard_normal((5, 40))
    Z = np.tanh(X.astype(np.float64) @ W / 4) + 2.0
    return [X, Y, Z.astype(dtype)]


def tile_args(arrays, block_rows):
    """The add_tile arguments of every tile I ≤ J of blocks of ``block_rows`` rows."""
    n = arrays[0].shape[0]
    blocks = [slice(start, min(start + block_rows, n)) for start in range(0, n, block_rows)]
    return [
        (rows_i, [A[rows_i] for A in arrays], rows_j, [A[rows_j] for A in arrays])
        for a, rows_i in enumerate(blocks)
        for rows_j in blocks[a:]
    ]


def empty_state(arrays):
    return RbfTileState(
        [repalign.median_sigma(A) for A in arrays],
        arrays[0].shape[0],
        shifts=[A.mean(axis=0, dtype=np.float64) for A in arrays],
    )


def assert_same_products(actual, expected, rtol):
    for name, r, s in itertools.product(PRODUCTS, (0, 1), (0, 1)):
        got, want = getattr(actual, name)(r, s), getattr(expected, name)(r, s)
        assert got == pytest.approx(want, rel=rtol), f"{name}({r}, {s})"


@pytest.mark.parametrize(
    ("n", "block_rows", "dtype", "sigma"),
    [
        (501, 64, np.float64, "median"),
        (1100, 173, np.float32, "median"),
        (1100, 1100, np.float64, 6.0),  # one diagonal tile
        (2003, 700, np.float64, 6.0),
    ],
)
def test_products_equal_those_of_explicit_gram_matrices(n, block_rows, dtype, sigma):
    arrays = representations(n, dtype)
    state = tiled_state(arrays, sigma=sigma, block_rows=block_rows)
    sigmas = [repalign.median_sigma(A) if sigma == "median" else sigma for A in arrays]
    grams = [gram(A, "rbf", s) for A, s in zip(arrays, sigmas, strict=True)]
    assert state.n == n
    for i, j in itertools.combinations_with_replacement(range(3), 2):
        products = state.products(i, j)
        assert products.n == n
        assert_same_products(products, GramProducts(grams[i], grams[j]), RTOL)


def test_measures_from_tiles_equal_the_in_memory_measures():
    arrays = representations(1100, np.float32)
    state = tiled_state(arrays, block_rows=256)

    def ratio(product):
        return product(0, 1) / np.sqrt(product(0, 0) * product(1, 1))

    for i, j in itertools.combinations(range(3), 2):
        p, X, Y = state.products(i, j), arrays[i], arrays[j]
        tiled = {
            "KA": ratio(p.raw),
            "CKA biased": ratio(p.centered),
            "CKA song": ratio(p.song),
            "CKA lange": ratio(p.lange),
            "HSIC biased": p.centered(0, 1) / (p.n - 1) ** 2,
            "HSIC unbiased": p.song(0, 1),
        }
        in_memory = {
            "KA": repalign.kernel_alignment(X, Y, kernel="rbf"),
            "CKA biased": repalign.cka(X, Y, kernel="rbf"),
            "CKA song": repalign.cka(X, Y, kernel="rbf", estimator="song"),
            "CKA lange": repalign.cka(X, Y, kernel="rbf", estimator="lange"),
            "HSIC biased": repalign.hsic(X, Y, kernel="rbf"),
            "HSIC unbiased": repalign.hsic(X, Y, kernel="rbf", estimator="unbiased"),
        }
        for name, value in in_memory.items():
            assert tiled[name] == pytest.approx(value, rel=RTOL), (name, i, j)


@pytest.mark.parametrize("seed", [0, 1])
def test_merging_disjoint_tile_sets_in_any_order_gives_the_same_products(seed):
    arrays = representations(700)
    args = tile_args(arrays, 96)
    whole = empty_state(arrays)
    for tile in args:
        whole.add_tile(*tile)
    parts = [empty_state(arrays) for _ in range(3)]
    owner = np.random.default_rng(seed).integers(0, 3, len(args))
    for (rows_i, blocks_i, rows_j, blocks_j), k in zip(args, owner, strict=True):
        if k == 2:  # the mirror tile, with rows given as start offsets
            parts[k].add_tile(rows_j.start, blocks_j, rows_i.start, blocks_i)
        else:
            parts[k].add_tile(rows_i, blocks_i, rows_j, blocks_j)
    a, b, c = parts
    assert not any(part.is_complete() for part in parts)
    # Only the order of the float64 additions differs.
    for merged in [(a + b) + c, c + (b + a), b + (a + c)]:
        assert merged.is_complete()
        for i, j in [(0, 1), (1, 2), (2, 2)]:
            assert_same_products(merged.products(i, j), whole.products(i, j), 1e-12)


def test_shifting_the_rows_does_not_change_the_products():
    arrays = representations(400)
    sigmas = [repalign.median_sigma(A) for A in arrays]
    unshifted = RbfTileState(sigmas, 400)
    shifted = RbfTileState(sigmas, 400, shifts=[A[0] + 10.0 for A in arrays])
    for tile in tile_args(arrays, 128):
        unshifted.add_tile(*tile)
        shifted.add_tile(*tile)
    # The data sit about 3 from the origin: cancellation costs a few digits without a shift.
    assert_same_products(shifted.products(0, 2), unshifted.products(0, 2), 1e-9)


def test_a_tile_added_twice_is_refused():
    arrays = representations(300)
    state = empty_state(arrays)
    args = tile_args(arrays, 100)
    for tile in args:
        state.add_tile(*tile)
    rows_i, blocks_i, rows_j, blocks_j = args[1]
    with pytest.raises(RepalignError, match=r"rows \(0, 100\) × \(100, 200\) was already added"):
        state.add_tile(rows_i, blocks_i, rows_j, blocks_j)
    with pytest.raises(RepalignError, match="already added"):
        state.add_tile(rows_j, blocks_j, rows_i, blocks_i)  # its mirror
    grams = [gram(A, "rbf", s) for A, s in zip(arrays, state.sigmas, strict=True)]
    assert_same_products(state.products(0, 1), GramProducts(grams[0], grams[1]), RTOL)


def test_merging_states_that_share_a_tile_is_refused():
    arrays = representations(300)
    args = tile_args(arrays, 100)
    first, second = empty_state(arrays), empty_state(arrays)
    for tile in args[:3]:
        first.add_tile(*tile)
    for tile in args[2:]:
        second.add_tile(*tile)
    with pytest.raises(RepalignError, match=r"share 1 tiles, the first of rows \(0, 100\)"):
        first + second


def test_a_missing_tile_is_detected():
    arrays = representations(300)
    state = empty_state(arrays)
    args = tile_args(arrays, 128)  # blocks of 128, 128 and 44 rows
    for tile in args[:-2] + args[-1:]:  # all but the tile (128, 256) × (256, 300)
        state.add_tile(*tile)
    assert not state.is_complete()
    assert state.covered_pairs == 300 * 301 // 2 - 128 * 44
    with pytest.raises(RepalignError, match=r"hold 39,518 of the 45,150 pairs i ≤ j"):
        state.products(0, 1)


def test_counting_pairs_alone_would_miss_an_overlap_that_fills_a_gap():
    arrays = representations(300)
    state = empty_state(arrays)

    def add(rows_i, rows_j):
        state.add_tile(rows_i, [A[rows_i] for A in arrays], rows_j, [A[rows_j] for A in arrays])

    A, B, C, BC = slice(0, 100), slice(100, 200), slice(200, 300), slice(100, 300)
    for rows_i, rows_j in [(A, A), (B, B), (C, C), (A, C), (A, BC)]:  # A×C twice, B×C never
        add(rows_i, rows_j)
    assert state.covered_pairs == 300 * 301 // 2
    assert not state.is_complete()


def test_tiles_that_leave_rows_out_are_not_complete():
    arrays = representations(300)
    state = empty_state(arrays)
    for tile in tile_args([A[:200] for A in arrays], 100):  # every tile of rows 0..199 only
        state.add_tile(*tile)
    assert not state.is_complete()


def test_the_diagonal_is_exactly_one_even_far_from_the_origin():
    # No shift: ‖u‖² + ‖u‖² − 2uᵀu of rows near 1e4 is off by about 1e-8, which σ = 1e-3 would
    # turn into diagonal kernel values visibly below 1.
    X = np.random.default_rng(0).standard_normal((123, 3)) + 1e4
    state = RbfTileState([1e-3], len(X))
    for tile in tile_args([X], 37):
        state.add_tile(*tile)
    # Distinct rows are far apart for this σ (their kernel underflows to 0): K = I exactly.
    assert state.products(0, 0).raw(0, 0) == len(X)


def test_kernel_values_never_exceed_one():
    # Repeated rows far from the origin: rounding makes some of their squared distances
    # negative (37 of the pairs here), which unclipped would give kernel values above 1.
    rng = np.random.default_rng(0)
    X = np.repeat(rng.standard_normal((50, 3)) + 1e4, rng.integers(1, 5, 50), axis=0)
    state = RbfTileState([1e-3], len(X))
    tiles = state._kernel_tiles([X], [X[::-1]], on_diagonal=False)
    assert tiles.max() <= 1.0


def test_tiles_with_bad_rows_are_refused():
    arrays = representations(300)
    state = empty_state(arrays)
    X, Y, Z = arrays
    rows = slice(0, 100)
    blocks = [A[rows] for A in arrays]
    with pytest.raises(ShapeError, match=r"blocks_j must hold one block per representation \(3\)"):
        state.add_tile(rows, blocks, rows, blocks[:2])
    with pytest.raises(ShapeError, match=r"same rows of every representation; got blocks of \["):
        state.add_tile(rows, [X[:100], Y[:100], Z[:99]], rows, blocks)
    with pytest.raises(InvalidParameterError, match=r"rows_i=slice\(0, 90, None\) must name"):
        state.add_tile(slice(0, 90), blocks, rows, blocks)
    with pytest.raises(InvalidParameterError, match=r"rows_j=250 must name the 100 rows"):
        state.add_tile(rows, blocks, 250, blocks)
    with pytest.raises(InvalidParameterError, match=r"\(0, 100\) and \(50, 150\) overlap"):
        state.add_tile(50, [A[50:150] for A in arrays], rows, blocks)
    assert state.covered_pairs == 0


def test_states_with_different_settings_do_not_add_up():
    arrays = representations(100)
    state = empty_state(arrays)
    other = RbfTileState([1.0, 2.0, 3.0], 100, shifts=state.shifts)
    with pytest.raises(InvalidParameterError, match="same n, sigmas and shifts add up"):
        state + other


def test_tiled_state_checks_its_input():
    X, Y = paired_data(0, 50, 3, 4)
    with pytest.raises(ShapeError, match="at least one representation; got none"):
        tiled_state([])
    with pytest.raises(RowMismatchError, match=r"arrays\[0\] with 50 rows and arrays\[1\] with 49"):
        tiled_state([X, Y[:49]])
    with pytest.raises(InvalidParameterError, match="block_rows must be between 1"):
        tiled_state([X, Y], block_rows=0)


@pytest.mark.slow
def test_memory_stays_far_below_one_gram_matrix():
    n, block_rows = 20_000, 1_000
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 16), dtype=np.float32) + 3.0
    Y = np.tanh(X @ rng.standard_normal((16, 24), dtype=np.float32) / 4) + 0.1 * X[:, :1]
    # A fixed sigma: the median heuristic works on its own subsample, not measured here.
    tracemalloc.start()
    try:
        start = time.perf_counter()
        state = tiled_state([X, Y], sigma=4.0, block_rows=block_rows)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    gram_bytes = 8 * n * n  # 3.2 GB
    tile_bytes = 8 * 2 * block_rows**2  # one tile of both kernels, 16 MB (16.5 MiB measured)
    assert peak < 2 * tile_bytes, f"peak {peak / 2**20:.0f} MiB in {seconds:.1f} s"
    assert peak < gram_bytes / 50
    p = state.products(0, 1)
    assert 0.0 < p.centered(0, 1) / np.sqrt(p.centered(0, 0) * p.centered(1, 1)) < 1.0
