"""The all-pairs engine against the in-memory library, on a real store: its passes in process
(tests/test_executors.py shows Ray gives the same tables bit for bit), and on a real Ray for
what only Ray does (actors that die, a driver that dies)."""

import threading
import time

import numpy as np
import psutil
import pytest

import repalign
from jobs import alignment
from jobs.alignment import run_alignment, write_result
from jobs.passes import moments as moments_pass
from jobs.passes import rows
from repalign.errors import MisalignedError
from repalign.spec import parse_spec
from repalign.store import open_store, write_representation

pytestmark = pytest.mark.slow  # whole jobs in process: `make check` leaves them out

N = 2000  # two tiles of the exact RBF pass (1,024 rows each), the second one short
WIDTHS = {"m0.a": 5, "m1.a": 9, "m2.a": 5, "m3.a": 12, "m4.a": 3, "m5.a": 7}
SHARDS = {"m0.a": 500, "m1.a": 777, "m2.a": N, "m3.a": 313, "m4.a": 1200, "m5.a": 1000}
K = 5
EVERY_MEASURE = [
    {"name": "ka"},
    {"name": "cka"},
    {"name": "cka", "estimator": "song"},
    {"name": "cka", "estimator": "lange"},
    {"name": "hsic"},
    {"name": "hsic", "estimator": "unbiased"},
    {"name": "procrustes"},
    {"name": "cca"},
    {"name": "svcca"},
    {"name": "ka", "kernel": "rbf"},
    {"name": "cka", "kernel": "rbf"},
    {"name": "cka", "kernel": "rbf", "estimator": "song"},
    {"name": "cka", "kernel": "rbf", "estimator": "lange"},
    {"name": "hsic", "kernel": "rbf", "estimator": "unbiased"},
    {"name": "mutual_knn", "k": K},
    {"name": "cknna", "k": K},
    {"name": "mmd2"},
    {"name": "mmd2", "estimator": "biased"},
    {"name": "mmd2", "estimator": "linear"},
    {"name": "mmd2", "kernel": "linear", "estimator": "biased"},
]
LIBRARY = {
    "ka": repalign.kernel_alignment,
    "cka": repalign.cka,
    "hsic": repalign.hsic,
    "procrustes": repalign.procrustes,
    "cca": repalign.cca,
    "svcca": repalign.svcca,
    "mutual_knn": repalign.mutual_knn,
    "cknna": repalign.cknna,
    "mmd2": repalign.mmd2,
}


def make_store(path, widths, shards, n=N, seed=0):
    """Related representations (a shared latent), uncentred, float32, uneven shards."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6))
    arrays = {}
    for name, width in widths.items():
        values = latent @ rng.standard_normal((6, width)) + rng.standard_normal((n, width)) + 1.5
        arrays[name] = values.astype(np.float32)
        write_representation(path, name, np.arange(n), arrays[name], shard_rows=shards[name])
    return arrays


def library_value(arrays, row):
    options = {}
    if row["measure"] in ("ka", "cka", "hsic", "mmd2"):
        options["kernel"] = row["kernel"]
    if row["estimator"]:
        options["estimator"] = row["estimator"]
    if row["measure"] in ("mutual_knn", "cknna"):
        options["k"] = K
    return LIBRARY[row["measure"]](arrays[row["rep_a"]], arrays[row["rep_b"]], **options)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine-store")
    return path, make_store(path, WIDTHS, SHARDS)


@pytest.fixture(scope="module")
def library_values():
    """The library's value of each (configuration, pair) of `store`, computed once for the
    module's tests: each is an n×n computation."""
    return {}


def spec(path, measures, **extra):
    """A job spec, in process unless ``extra`` names another executor."""
    content = {"store": str(path), "out": str(path / "out"), "measures": measures}
    return parse_spec({**content, "executor": "local", **extra})


def assert_matches_library(table, arrays, known=None):
    """Check every computed value of ``table`` against the library; ``known`` keeps the
    library's values between calls on the same ``arrays``."""
    known = {} if known is None else known
    checked = 0
    for row in table.to_pylist():
        if row["status"] == "ok":
            key = tuple(row[c] for c in ("measure", "kernel", "estimator", "rep_a", "rep_b"))
            if key not in known:
                known[key] = library_value(arrays, row)
            # float32 input, float64 accumulation: the design asks for 1e-6 relative
            assert row["value"] == pytest.approx(known[key], rel=1e-6, abs=1e-9), row
            checked += 1
    return checked


def test_every_measure_equals_the_library(store, library_values):
    path, arrays = store
    # four of the six (one shard, uneven shards, two of equal width), to keep the library's
    # n×n references few
    names = ["m0.a", "m1.a", "m2.a", "m3.a"]
    result = run_alignment(spec(path, EVERY_MEASURE, actors=2, representations=names), quiet=True)
    rows = result.table.to_pylist()
    assert len(rows) == len(EVERY_MEASURE) * 10  # 4 representations: 10 pairs with diagonal
    checked = assert_matches_library(result.table, arrays, library_values)
    missing = [r for r in rows if r["status"] != "ok"]
    # MMD² compares samples of one space: only the pairs of equal widths have a value
    assert all(r["measure"] == "mmd2" and "different widths" in r["reason"] for r in missing)
    assert checked == len(rows) - len(missing)
    assert checked > 170
    reads = result.summary["reads_per_row"]
    assert set(reads) == {"moments", "rbf", "neighbors", "mmd"}, reads
    # one pass over the rows; exact RBF: each of the two row blocks is in two of the three
    # tiles (0, 0), (0, 1), (1, 1)
    assert reads["moments"] == 1.0 and reads["rbf"] == 2.0


@pytest.mark.parametrize("slots", [1, 3])
def test_any_number_of_slots_gives_the_library_values(store, library_values, slots):
    path, arrays = store
    measures = [
        {"name": "cka", "estimator": "song"},
        {"name": "cca"},
        {"name": "cka", "kernel": "rbf"},
        {"name": "cknna", "k": K},
    ]
    result = run_alignment(spec(path, measures, actors=slots), quiet=True)
    assert assert_matches_library(result.table, arrays, library_values) == 4 * 21


def test_a_tiled_statistic_equals_one_state(store, monkeypatch):
    """Also: each representation's principal axes (SVCCA) are computed once per job, not
    once per tile that holds it."""
    path, arrays = store
    measures = [{"name": "ka"}, {"name": "cka", "estimator": "lange"}, {"name": "svcca"}]
    whole = run_alignment(spec(path, measures), quiet=True)
    decomposed = []
    principal_axes = moments_pass.principal_axes
    monkeypatch.setattr(
        moments_pass, "principal_axes", lambda s, k: decomposed.append(k) or principal_axes(s, k)
    )
    tiled = run_alignment(spec(path, measures, tile_bytes=2_000), quiet=True)
    tiles = moments_pass.statistic_tiles(open_store(path), list(arrays), 2_000)
    groups = len({tuple(group) for group, _ in tiles})
    assert len(tiles) == groups * (groups + 1) // 2 > 2
    assert len(decomposed) == len(arrays)
    # every row is read once per tile that holds its representation: once per group
    assert whole.summary["reads_per_row"] == {"moments": 1.0}
    assert tiled.summary["reads_per_row"] == {"moments": float(groups)}
    assert tiled.summary["pass_seconds"]["moments"] > 0
    assert tiled.state is None  # a tiled statistic is not saved for incremental runs
    np.testing.assert_allclose(
        tiled.table.column("value").to_numpy(), whole.table.column("value").to_numpy(), rtol=1e-12
    )


def test_degenerate_representations_are_missing_with_reasons(tmp_path):
    arrays = make_store(tmp_path, {"good.a": 4, "good.b": 6}, {"good.a": 700, "good.b": 700}, n=800)
    nan = arrays["good.a"].copy()
    nan[[3, 50]] = np.nan
    write_representation(tmp_path, "bad.nan", np.arange(800), nan)
    write_representation(tmp_path, "bad.constant", np.arange(800), np.full((800, 3), 2.0))
    zero_rows = arrays["good.b"].copy()
    zero_rows[10] = 0
    write_representation(tmp_path, "bad.zero", np.arange(800), zero_rows)
    arrays["bad.zero"] = zero_rows
    measures = [{"name": "cka"}, {"name": "cca"}, {"name": "mutual_knn", "k": K}]
    result = run_alignment(spec(tmp_path, measures), quiet=True)
    rows = result.table.to_pylist()
    reasons = {
        (r["measure"], r["rep_a"], r["rep_b"]): r["reason"] for r in rows if r["status"] != "ok"
    }
    for measure in ("cka", "cca", "mutual_knn"):
        for other in ("bad.zero", "good.a", "good.b"):
            pair = tuple(sorted(("bad.nan", other), key=[r["rep_a"] for r in rows].index))
            assert "bad.nan holds NaN or Inf in 2 rows" in reasons[(measure, *pair)]
    assert "bad.constant is constant" in reasons[("cka", "bad.constant", "good.a")]
    assert (
        "rows of zero norm (the first is row 10)" in reasons[("mutual_knn", "bad.zero", "good.a")]
    )
    assert ("cka", "bad.zero", "good.a") not in reasons  # zero rows only matter for cosines
    assert result.summary["missing_representations"] == {
        "bad.nan": "bad.nan holds NaN or Inf in 2 rows"
    }
    assert result.summary["constant_representations"] == {
        "bad.constant": "bad.constant is constant (zero variance)"
    }
    assert assert_matches_library(result.table, arrays) > 0
    ok = {(r["measure"], r["rep_a"], r["rep_b"]) for r in rows if r["status"] == "ok"}
    assert ("cka", "good.a", "good.b") in ok and ("mutual_knn", "good.a", "good.b") in ok


def test_an_incremental_run_computes_only_the_new_blocks(tmp_path):
    widths = {"old.a": 4, "old.b": 7, "old.c": 3, "old.d": 5}
    arrays = make_store(tmp_path, widths, dict.fromkeys(widths, 400), n=1200)
    measures = [{"name": "cka", "estimator": "song"}, {"name": "procrustes"}, {"name": "ka"}]
    first = run_alignment(spec(tmp_path, measures), quiet=True)
    write_result(first, tmp_path / "first")
    assert first.summary["blocks_computed"] == 10
    more = make_store(
        tmp_path, {"new.x": 6, "new.y": 2}, {"new.x": 300, "new.y": 1200}, n=1200, seed=1
    )
    arrays.update(more)
    incremental = run_alignment(
        spec(tmp_path, measures), quiet=True, incremental_from=tmp_path / "first"
    )
    full = run_alignment(spec(tmp_path, measures), quiet=True)
    assert incremental.summary["blocks_computed"] == 2 * 4 + 3  # new × old, and new × new
    assert full.summary["blocks_computed"] == 21

    def by_pair(result):
        return {
            (r["measure"], *sorted((r["rep_a"], r["rep_b"]))): r["value"]
            for r in result.table.to_pylist()
        }

    expected = by_pair(full)
    got = by_pair(incremental)
    assert got.keys() == expected.keys()

    # the same rows in the same order, though it computed (old.a, new.x), not (new.x, old.a)
    def layout(result):
        return [(r["measure"], r["rep_a"], r["rep_b"]) for r in result.table.to_pylist()]

    assert layout(incremental) == layout(full)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-10), key
    assert assert_matches_library(incremental.table, arrays) == 3 * 21


def test_an_incremental_run_refuses_a_changed_representation(tmp_path):
    make_store(tmp_path, {"a.x": 3, "b.x": 4}, {"a.x": 100, "b.x": 100}, n=300)
    first = run_alignment(spec(tmp_path, [{"name": "cka"}]), quiet=True)
    write_result(first, tmp_path / "first")
    write_representation(
        tmp_path, "a.x", np.arange(300), np.ones((300, 3)) * np.arange(300)[:, None], overwrite=True
    )
    with pytest.raises(repalign.errors.RepalignError, match=r"a\.x changed since the earlier run"):
        run_alignment(
            spec(tmp_path, [{"name": "cka"}]), quiet=True, incremental_from=tmp_path / "first"
        )


def test_a_misaligned_store_is_refused(tmp_path):
    write_representation(tmp_path, "a.x", np.arange(10), np.eye(10))
    write_representation(tmp_path, "b.x", np.arange(10)[::-1], np.eye(10))
    write_representation(tmp_path, "c.x", np.arange(8), np.eye(8))
    with pytest.raises(MisalignedError, match="repalign align") as refused:
        run_alignment(spec(tmp_path, [{"name": "cka"}]), quiet=True)
    assert "b.x lists other sample ids, or another order, than a.x" in str(refused.value)
    assert "c.x has 8 rows where a.x has 10" in str(refused.value)


def actor_processes():
    """The accumulator actors of this test session's Ray (its workers descend from us)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "ray::Accumulator" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:  # gone, or a zombie, since we listed it
            pass
    return found


def test_killing_an_actor_mid_job_gives_the_identical_table(ray_session, tmp_path, monkeypatch):
    widths = {f"m{i}.a": 48 for i in range(6)}
    make_store(tmp_path, widths, dict.fromkeys(widths, 5000), n=40_000)
    monkeypatch.setattr(rows, "UNIT_BYTES", 200 * 6 * 48 * 4)  # 200-row units: many of them
    measures = [{"name": "cka", "estimator": "song"}, {"name": "procrustes"}]
    reference = run_alignment(spec(tmp_path, measures, actors=2), quiet=True)
    # every unit checkpoints, so that the test can see the job is under way before it kills
    monkeypatch.setattr(alignment, "CHECKPOINT_SECONDS", 0.0)
    results = {}
    on_ray = spec(tmp_path, measures, actors=2, executor="ray")
    job = threading.Thread(target=lambda: results.update(r=run_alignment(on_ray, quiet=True)))
    job.start()
    checkpoints = tmp_path / "out" / ".checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(checkpoints.glob("*/slot-*.pkl")):
        time.sleep(0.02)
    victims = actor_processes()
    assert victims, "no actor process seen while the job ran"
    victims[0].kill()
    job.join(timeout=300)
    assert results["r"].summary["actor_replays"] >= 1
    values = results["r"].table.column("value").to_pylist()
    assert values == reference.table.column("value").to_pylist()


CRASHING_DRIVER = """
import sys
import ray
from jobs import alignment
from jobs.passes import moments as moments_pass
from jobs.passes import rows
from repalign.spec import parse_spec

ray.init(address=sys.argv[2], log_to_driver=False)
rows.UNIT_BYTES = 200 * 6 * 48 * 4
alignment.CHECKPOINT_SECONDS = 0.0  # save after every unit
spec = parse_spec({"store": sys.argv[1], "out": sys.argv[1] + "/out", "actors": 2,
                   "measures": [{"name": "cka", "estimator": "song"}, {"name": "procrustes"}]})
alignment.run_alignment(spec, quiet=True)
"""


def test_a_job_run_again_after_its_driver_died_resumes_from_checkpoints(
    ray_session, tmp_path, monkeypatch
):
    import os
    import signal
    import subprocess
    import sys

    widths = {f"m{i}.a": 48 for i in range(6)}
    make_store(tmp_path, widths, dict.fromkeys(widths, 5000), n=40_000)
    monkeypatch.setattr(rows, "UNIT_BYTES", 200 * 6 * 48 * 4)
    measures = [{"name": "cka", "estimator": "song"}, {"name": "procrustes"}]
    address = ray_session.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "-c", CRASHING_DRIVER, str(tmp_path), address],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    checkpoints = tmp_path / "out" / ".checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(checkpoints.glob("*/slot-*.pkl"))) < 2:
        time.sleep(0.05)
    time.sleep(0.5)
    driver.send_signal(signal.SIGKILL)  # the driver dies mid-pass, as a crash would
    driver.wait()
    assert list(checkpoints.glob("*/slot-*.pkl")), "no checkpoint was written before the kill"
    # run again in process: the slots' checkpoints are the same whichever executor wrote them
    resumed = run_alignment(spec(tmp_path, measures, actors=2), quiet=True)
    assert resumed.summary["units_resumed"] > 0
    assert not checkpoints.exists()  # a finished job leaves no checkpoints
    fresh = run_alignment(spec(tmp_path, measures, actors=2), quiet=True)
    assert fresh.summary["units_resumed"] == 0
    assert resumed.table.column("value").to_pylist() == fresh.table.column("value").to_pylist()


def test_rows_read_per_row_counts_overlaps_once_as_distinct_rows():
    reads = alignment.RowReads()
    assert reads.per_row() == 0.0
    for key, start, stop in [("a", 0, 10), ("a", 5, 15), ("a", 20, 30), ("b", 0, 10), ("a", 0, 10)]:
        reads.add(key, start, stop)
    # 50 rows read; distinct: a has 0–15 and 20–30 (25 rows), b 0–10 (10 rows)
    assert reads.per_row() == 50 / 35
