"""`repalign.blas_threads`: per-pair work side by side, one BLAS thread each, and values that do
not depend on the machine's thread count (docs/design.md §4, "Threads")."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import repalign
from repalign.blas_threads import blas_threads, map_over_blas_threads


def _blas_threads_now():
    return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


def test_items_run_side_by_side_with_one_blas_thread_each_and_come_back_in_order():
    meeting = threading.Barrier(2, timeout=10)  # broken unless two items run at once
    seen = []

    def work(item):
        meeting.wait()
        seen.append(_blas_threads_now())
        return item * item

    with threadpool_limits(limits=2, user_api="blas"):
        assert map_over_blas_threads(work, range(6)) == [k * k for k in range(6)]
        assert blas_threads() == 2  # restored
    assert seen == [1] * 6


def test_one_blas_thread_means_one_item_at_a_time():
    threads = set()

    def work(item):
        threads.add(threading.get_ident())
        return item

    with threadpool_limits(limits=1, user_api="blas"):
        assert map_over_blas_threads(work, range(4)) == [0, 1, 2, 3]
    assert threads == {threading.get_ident()}


def test_an_error_in_an_item_reaches_the_caller():
    def work(item):
        if item == 3:
            raise ValueError("item 3")
        return item

    with threadpool_limits(limits=2, user_api="blas"), pytest.raises(ValueError, match="item 3"):
        map_over_blas_threads(work, range(5))


@pytest.mark.parametrize("jackknife", [None, 4])
def test_the_table_does_not_depend_on_the_blas_thread_count(jackknife):
    rng = np.random.default_rng(7)
    shared = rng.standard_normal((1200, 6))
    arrays = {
        f"m{k}.l": shared @ rng.standard_normal((6, width)) + rng.standard_normal((1200, width))
        for k, width in enumerate([160, 256, 200, 160])  # wide enough for BLAS to thread
    }
    measures = ["cka", "ka", "procrustes", "cca", {"name": "svcca", "variance": 0.9}]
    tables = []
    for limit in (1, 2):
        with threadpool_limits(limits=limit, user_api="blas"):
            tables.append(repalign.pairwise(arrays, measures, jackknife=jackknife))
    assert tables[0].equals(tables[1])
    assert tables[0].num_rows == 5 * 10
