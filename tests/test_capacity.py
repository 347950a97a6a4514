"""The capacity model (benchmarks/capacity.py) against the engine whose costs it predicts."""

import importlib.util
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import jobs.alignment
from jobs.passes import moments, rows
from repalign import blocks
from repalign.stats import default_tile_bytes
from repalign.store import format as store_format


def _load_capacity():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "capacity.py"
    spec = importlib.util.spec_from_file_location("capacity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


capacity = _load_capacity()
RATES = capacity.calibrated_rates(50e9, storage_bytes=10e9, network_bytes=1.25e9)


def engine_tiles(dims, state_bytes):
    """`jobs.passes.moments.statistic_tiles` itself, on a stub store that only knows widths;
    returned as index lists, like `capacity.tiles`."""
    names = [f"rep{i}" for i in range(len(dims))]
    store = {name: SimpleNamespace(dim=d) for name, d in zip(names, dims, strict=True)}
    index = {name: i for i, name in enumerate(names)}
    return [
        ([index[a] for a in group_a], [index[b] for b in group_b])
        for group_a, group_b in moments.statistic_tiles(store, names, state_bytes)
    ]


def test_constants_are_the_engines():
    assert capacity.UNIT_BYTES == rows.UNIT_BYTES
    assert capacity.STATE_BYTES == default_tile_bytes(8 * 2**30)  # workers of 8 GiB
    assert capacity.CHECKPOINT_SECONDS == jobs.alignment.CHECKPOINT_SECONDS
    assert capacity.PILOT_ROWS == rows.PILOT_ROWS
    assert capacity.BLOCK_BYTES == blocks.BLOCK_BYTES
    assert capacity.ROW_GROUP_BYTES == store_format.ROW_GROUP_BYTES


@pytest.mark.parametrize("width", [1, 100, 512, 4096, 8192, 14336, 10**6])
@pytest.mark.parametrize("representations", [1, 7, 14])
def test_unit_and_block_rows_are_the_engines(width, representations):
    expected = rows.unit_rows(width, representations)
    assert capacity.unit_rows(width, representations) == expected
    assert capacity.block_rows(width) == blocks.block_rows(width)
    assert capacity.row_group_rows(width) == store_format.row_group_rows(width)


@pytest.mark.parametrize(
    "dims, state_bytes",
    [
        ((512,) * 16, capacity.STATE_BYTES),  # fits: one tile
        ((1024,) * 1000, capacity.STATE_BYTES),  # the headline job: 143 groups
        ((1024,) * 30, 8 * 2**20),  # 1 representation per group
        (tuple(np.random.default_rng(0).integers(1, 400, 60).tolist()), 2**22),  # mixed widths
    ],
)
def test_tiles_are_the_engines(dims, state_bytes):
    assert capacity.tiles(dims, state_bytes) == engine_tiles(dims, state_bytes)


@pytest.mark.parametrize(
    "dims, state_bytes",
    [
        ((1024,) * 1000, capacity.STATE_BYTES),
        (tuple(np.random.default_rng(1).integers(1, 400, 60).tolist()), 2**22),
    ],
)
def test_flops_are_a_direct_count_of_the_engines_tiles(dims, state_bytes):
    n = 12_345
    expected = 0
    for group_a, group_b in engine_tiles(dims, state_bytes):
        members = set(group_a) | set(group_b)  # a diagonal tile holds its group once
        D = sum(dims[i] + 1 for i in members) + 1
        expected += n * D * (D + 1)
    assert capacity.job_flops(dims, n, state_bytes) == expected  # integers: exact


def test_headline_geometry():
    """1,000 × 1,024: 8.4 TB untiled; groups of 7 (7·1,025 ≤ 8,192 < 8·1,025), so 143 groups,
    10,296 tiles, and the tiling about doubles the SYRK work (2(1 − 1/G) for equal groups)."""
    dims = (1024,) * 1000
    D = capacity.state_width(dims)
    assert D == 1_025_001
    assert 8 * D**2 == pytest.approx(8.4e12, rel=0.01)
    assert len(capacity.groups(dims)) == 143
    assert len(capacity.tiles(dims)) == 143 * 144 // 2
    overhead = capacity.job_flops(dims, 1, capacity.STATE_BYTES) / (D * (D + 1))
    assert overhead == pytest.approx(2 * (1 - 1 / 143), rel=0.01)  # unequal last group, ±1s


@pytest.mark.parametrize("units, workers", [(1, 1), (5, 2), (99, 2), (86, 64), (10, 64)])
def test_busiest_slot_deals_units_as_run_units(units, workers):
    rows, n = 100, units * 100 - 37  # the last unit is short
    starts = list(range(0, n, rows))
    slots = [starts[s :: min(workers, len(starts))] for s in range(min(workers, len(starts)))]
    sizes = [sum(min(rows, n - start) for start in slot) for slot in slots]
    busiest = int(np.argmax(sizes))
    assert capacity.busiest_slot(n, rows, workers) == (len(slots[busiest]), sizes[busiest])


def test_compute_term_is_linear_in_n_and_inverse_in_workers():
    dims = (1024,) * 40

    def compute(n, workers):
        return capacity.predict(capacity.Job(dims, n, workers), RATES)["terms"]["compute"]

    base = compute(10**6, 8)
    assert compute(2 * 10**6, 8) == pytest.approx(2 * base, rel=1e-12)
    assert compute(10**6, 16) == pytest.approx(base / 2, rel=1e-12)
    assert compute(10**7, 64) == pytest.approx(base * 10 / 8, rel=1e-12)
    flops = capacity.job_flops(dims, 10**6)
    assert base == pytest.approx(flops / (8 * RATES.syrk_flops), rel=1e-12)


def test_io_is_capped_by_shared_storage():
    job = capacity.Job((512,) * 8, 10**6, 64)
    free = capacity.predict(job, replace(RATES, storage_bytes=math.inf))["terms"]["io"]
    capped = capacity.predict(job, replace(RATES, storage_bytes=1e9))["terms"]["io"]
    assert free == pytest.approx(8 * 512 * 4 * 10**6 / (64 * RATES.read_bytes), rel=1e-12)
    assert capped == pytest.approx(8 * 512 * 4 * 10**6 / 1e9, rel=1e-12)


def test_tree_receives_merges_every_partial_into_worker_zero():
    for workers in (1, 2, 3, 7, 8, 64, 100):
        holds = [{w} for w in range(workers)]
        step = 1
        while step < workers:  # brute force: explicit sets of partials
            for i in range(0, workers - step, 2 * step):
                holds[i] |= holds[i + step]
            step *= 2
        assert holds[0] == set(range(workers))
        assert capacity.tree_receives(workers).sum() == workers - 1


@pytest.mark.parametrize("workers", [2, 3, 8, 64, 256, 1000, 1024])
def test_reduction_volumes(workers):
    S = 8.0 * 8209**2
    tree = capacity.reduction(S, 1, workers, "tree")
    assert tree["worker_in"].max() == math.ceil(math.log2(workers)) * S  # O(log W)·8D²
    assert tree["worker_in"].sum() == (workers - 1) * S
    assert tree["driver_in"] == S
    flat = capacity.reduction(S, 1, workers, "flat")
    assert flat["driver_in"] == workers * S  # everything into one node
    scatter = capacity.reduction(S, 1, workers, "scatter")
    assert scatter["worker_in"].max() == pytest.approx((workers - 1) / workers * S)
    # many tiles: rotating tree roots spread the receives evenly, like the scatter
    tiled = capacity.reduction(S, 10 * workers, workers, "tree")
    assert tiled["worker_in"].max() == pytest.approx(10 * (workers - 1) * S)
    with pytest.raises(ValueError, match="scheme must be"):
        capacity.reduction(S, 1, workers, "ring")


def test_predicted_part1_is_within_a_third_of_the_recorded_runs():
    """The recorded 16 × 512 job at n = 200,000 on 2 actors took 166–202 s (RESULTS.md); at
    50 GFLOP/s per core (the CPU-time rate measured on this machine was 51–55) the model must
    land within a third of both, or it has lost a term."""
    p = capacity.predict(capacity.Job((512,) * 16, 200_000, 2), RATES)
    assert 202.4 / 1.33 < p["total"] < 165.7 * 1.33
