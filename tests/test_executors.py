"""Where a job's passes run (`jobs.engine`, `jobs.alignment.choose_executor`): in this process
or on Ray, with the same table; and the rule that chooses (docs/design.md §4, "Executors")."""

import math
import subprocess
import sys
import threading

import numpy as np
import pytest

from jobs import engine
from jobs.alignment import LOCAL_MAX_WORK, choose_executor, elementwise_work, run_alignment
from jobs.engine import run_units
from jobs.tasks import MomentTask
from repalign.spec import parse_spec
from tests.test_engine import EVERY_MEASURE, SHARDS, WIDTHS, make_store

pytestmark = pytest.mark.slow  # whole jobs in process: `make check` leaves them out

NAMES = ["m0.a", "m1.a", "m2.a", "m3.a"]  # one shard, uneven shards, two of equal width


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("executors-store")
    return path, make_store(path, WIDTHS, SHARDS, n=1500)


def job(path, executor, slots, measures=EVERY_MEASURE, **options):
    content = {"store": str(path), "out": str(path / f"out-{executor}-{slots}"), **options}
    content.update(measures=measures, representations=NAMES, executor=executor, actors=slots)
    return run_alignment(parse_spec(content), quiet=True)


@pytest.fixture(scope="module")
def local_tables(store):
    path, _ = store
    return {slots: job(path, "local", slots) for slots in (1, 2)}


@pytest.mark.parametrize("slots", [1, 2])
def test_ray_gives_the_local_table_bit_for_bit_at_the_same_slot_count(
    ray_session, store, local_tables, slots
):
    """Every measure kind (moments, rbf tiles, random features, neighbours, MMD tiles)."""
    path, _ = store
    on_ray = job(path, "ray", slots)
    assert on_ray.summary["executor"] == "ray" and on_ray.summary["nodes"]
    local = local_tables[slots]
    assert local.summary["executor"] == "local" and local.summary["nodes"] == []
    assert on_ray.table.equals(local.table)


def test_ray_gives_the_local_jackknife_bit_for_bit(ray_session, store):
    """The groups' states travel from the actors and merge as the plain state does."""
    path, _ = store
    measures = [{"name": "cka"}, {"name": "procrustes"}]
    tables = [job(path, executor, 2, measures, jackknife=4).table for executor in ("local", "ray")]
    assert tables[0].equals(tables[1])
    missing = sum(status != "ok" for status in tables[0]["status"].to_pylist())
    assert tables[0]["std_err"].null_count == missing < tables[0].num_rows


def test_the_driver_counts_the_state_bytes_it_takes_and_the_owners_those_they_add(
    ray_session, store
):
    """Each slot's actor returns one GramState, whose arrays are the (D + 1)² float64 matrix,
    the shifts and the column offsets; in process, nothing moves."""
    path, _ = store
    widths = [WIDTHS[name] for name in NAMES]
    width = sum(d + 1 for d in widths) + 1
    state = 8 * width**2 + 8 * sum(widths) + 8 * (len(widths) + 1)
    task = MomentTask(path, NAMES, [np.zeros(d) for d in widths])
    units = [(start, start + 100) for start in range(0, 1500, 100)]
    options = dict(description="m", quiet=True)
    for slots in (1, 2):
        on_ray = run_units(task, units, slots=slots, executor="ray", **options)
        assert on_ray.bytes_received == slots * state
    assert run_units(task, units, slots=2, executor="local", **options).bytes_received == 0
    # a job's moments pass hands its states to the pass's owner, not to the driver: its 1,500
    # rows are one unit, so the owner adds one slot's state, on the one node of the local Ray,
    # and sends back only the values, a few hundred bytes per pair at most
    summary = job(path, "ray", 2, measures=[{"name": "cka"}]).summary
    assert summary["bytes_reduced"] == state
    assert summary["max_bytes_received_per_node"] == 0
    assert 0 < summary["bytes_to_driver"] < 200 * summary["pairs"] < state
    local = job(path, "local", 2, measures=[{"name": "cka"}]).summary
    assert local["bytes_to_driver"] == local["bytes_reduced"] == 0


def test_slot_counts_agree_to_rounding(local_tables):
    """Other slot counts add the same rows' states in another order: the values agree to the
    rounding of that order, far below 1e-12 relative for these sums of n = 1,500 rows."""
    one, two = (local_tables[s].table.to_pylist() for s in (1, 2))
    assert [r["status"] for r in one] == [r["status"] for r in two]
    assert sum(r["status"] == "ok" for r in one) > 150
    for a, b in zip(one, two, strict=True):
        if a["status"] == "ok":
            assert b["value"] == pytest.approx(a["value"], rel=1e-12, abs=1e-12), a


def test_a_store_without_saved_pilot_means_gives_the_same_table(store, tmp_path):
    """A job shifts each representation by its pilot mean: read from the file a writer saves,
    or, for a store written before writers saved it, computed from the first rows. The same
    bits either way, for the moments pass and the MMD pass, the two that shift."""
    import shutil

    path, _ = store
    older = tmp_path / "older-store"
    shutil.copytree(path, older, ignore=shutil.ignore_patterns("out-*"))
    for saved in older.glob("*/_pilot_mean.npy"):
        saved.unlink()
    measures = [m for m in EVERY_MEASURE if m["name"] in ("cka", "procrustes", "mmd2")]
    tables = [job(folder, "local", 1, measures=measures).table for folder in (path, older)]
    assert tables[0].equals(tables[1])


def test_a_local_job_starts_no_ray(store):
    """Run in a fresh process: the job's table is written without ray ever imported."""
    path, _ = store
    code = (
        "import sys; from jobs.alignment import run_alignment; from repalign.spec import "
        f"parse_spec; spec = parse_spec({{'store': {str(path)!r}, 'out': {str(path / 'fresh')!r},"
        " 'measures': [{'name': 'cka'}, {'name': 'cka', 'kernel': 'rbf'}]}); "
        "result = run_alignment(spec, quiet=True); "
        "print(result.summary['executor'], 'ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["local", "False"]


def test_local_checkpoints_resume_to_the_same_state(store, tmp_path, monkeypatch):
    """A pass that dies in one slot resumes from each slot's checkpoint: the same state. The
    slots are threads; slot 0 finishes its 7 units, slot 1 dies at its last of 8. Every unit
    is saved: no interval, and no bound on the share of time saves take."""
    monkeypatch.setattr(engine, "CHECKPOINT_SHARE", math.inf)
    path, _ = store
    task = MomentTask(path, NAMES, [np.zeros(WIDTHS[name]) for name in NAMES])
    units = [(start, start + 100) for start in range(0, 1500, 100)]
    first, second = engine.slot_units(task, units, 2)
    assert (len(first), len(second)) == (7, 8)
    options = dict(slots=2, executor="local", description="m", quiet=True)
    whole = run_units(task, units, **options)
    load = task.load

    def dies_at_the_last_unit_of_slot_1(unit):  # read ahead, it fails when the unit is due
        if unit == second[-1]:
            raise KeyboardInterrupt
        return load(unit)

    monkeypatch.setattr(task, "load", dies_at_the_last_unit_of_slot_1)
    with pytest.raises(KeyboardInterrupt):
        run_units(task, units, checkpoints=tmp_path, checkpoint_seconds=0.0, **options)
    monkeypatch.setattr(task, "load", load)
    resumed = run_units(task, units, checkpoints=tmp_path, checkpoint_seconds=0.0, **options)
    assert resumed.resumed == 7 + 7
    np.testing.assert_array_equal(resumed.state.moments, whole.state.moments)


def test_local_slots_are_threads_with_the_cores_shared_out(store, monkeypatch):
    """Two slots run side by side, each with BLAS on half the cores, as two actors would."""
    from threadpoolctl import threadpool_info

    path, _ = store
    task = MomentTask(path, NAMES, [np.zeros(WIDTHS[name]) for name in NAMES])
    accumulate_into, seen = task.accumulate_into, []

    def records_its_thread(state, blocks):
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        seen.append((threading.current_thread().name, blas))
        return accumulate_into(state, blocks)

    monkeypatch.setattr(task, "accumulate_into", records_its_thread)
    monkeypatch.setattr(engine, "machine_cpus", lambda: 4)
    units = [(start, start + 100) for start in range(0, 1500, 100)]
    run_units(task, units, slots=2, executor="local", description="m", quiet=True)
    assert len({name for name, _ in seen}) == 2
    assert all(blas and set(blas) == {2} for _, blas in seen)


def test_a_slot_reads_its_next_unit_while_it_computes_and_adds_the_same_state(store, monkeypatch):
    """A row task's next unit is loaded on the slot's reader thread while the slot computes;
    the states are added in the same order, so the sum is the one of plain ``compute``."""
    path, _ = store
    task = MomentTask(path, NAMES, [np.zeros(WIDTHS[name]) for name in NAMES])
    units = [(start, start + 100) for start in range(0, 1500, 100)]
    options = dict(slots=2, executor="local", description="m", quiet=True)
    load, loads = task.load, []

    def records_its_thread(unit):
        loads.append((unit, threading.current_thread().name))
        return load(unit)

    monkeypatch.setattr(task, "load", records_its_thread)
    ahead = run_units(task, units, **options)
    read_ahead = sorted(unit for unit, thread in loads if thread.startswith("reader"))
    assert sorted(unit for unit, _ in loads) == units  # each unit read once
    firsts = {run[0] for run in engine.slot_units(task, units, 2)}
    assert read_ahead == sorted(set(units) - firsts)  # all but each slot's first

    class ComputeOnly:  # the same task without load/accumulate: nothing is read ahead
        def __init__(self, task):
            self.rows, self.compute = task.rows, task.compute
            self.dealt_in_runs = task.dealt_in_runs  # so that each slot adds the same units

    plain = run_units(ComputeOnly(MomentTask(path, NAMES, task.shifts)), units, **options)
    np.testing.assert_array_equal(ahead.state.moments, plain.state.moments)


@pytest.mark.parametrize(
    ("given", "address", "environment", "measures", "expected"),
    [
        ("ray", None, None, [{"name": "cka"}], ("ray", "the spec asks")),
        ("local", "10.0.0.1:6379", None, [{"name": "cka"}], ("local", "the spec asks")),
        (None, "10.0.0.1:6379", None, [{"name": "cka"}], ("ray", "a Ray cluster was given")),
        (None, None, "10.0.0.1:6379", [{"name": "cka"}], ("ray", "a Ray cluster was given")),
        (None, None, None, [{"name": "cka"}], ("local", "no Ray cluster")),
        (None, None, None, [{"name": "cka", "kernel": "rbf"}], ("ray", "over 3e+09")),
    ],
)
def test_the_rule_that_chooses_the_executor(
    monkeypatch, given, address, environment, measures, expected
):
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # no Ray in this process
    if environment is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", environment)
    content = {"store": "s", "out": "o", "measures": measures}
    if given is not None:
        content["executor"] = given
    n, dims = 20_000, [64] * 20  # exact RBF: 20 · 20,000² / 2 = 4e9 kernel entries
    executor, reason = choose_executor(parse_spec(content), n, dims, address)
    assert (executor, expected[1] in reason) == (expected[0], True), reason


def test_element_wise_work_counts_each_pass_once():
    spec = parse_spec(
        {
            "store": "s",
            "out": "o",
            "measures": [
                {"name": "cka"},
                {"name": "ka", "kernel": "rbf"},
                {"name": "cka", "kernel": "rbf"},
                {"name": "mutual_knn"},
            ],
        }
    )
    n, dims = 1000, [8, 8, 8]
    # rbf once for both of its configurations (one pass of kernel tiles), neighbours once
    assert elementwise_work(spec.measures, n, dims) == 3 * n * n / 2 + 3 * n * n
    assert elementwise_work(spec.measures[:1], n, dims) == 0  # the moments are a SYRK
    assert LOCAL_MAX_WORK > 0


@pytest.mark.parametrize(("environment", "given", "joined"), [
    (None, None, "local"),  # its own Ray, not the cluster that `ray start` last started here
    ("127.0.0.1:6379", None, "127.0.0.1:6379"),
    ("127.0.0.1:6379", "10.0.0.1:6379", "10.0.0.1:6379"),
])  # fmt: skip
def test_a_job_joins_only_a_named_ray_cluster(monkeypatch, environment, given, joined):
    import ray

    from jobs import ray_slots

    if environment is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", environment)
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: calls.append(options["address"]))
    ray_slots.start_ray(given)
    assert calls == [joined]
