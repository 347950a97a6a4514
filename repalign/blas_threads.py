"""Work on many small dense matrices, spread over the threads BLAS would use.

LAPACK's SVD and symmetric eigensolvers gain little from a second BLAS thread at the sizes of
one representation's features (at d = 512 on two cores: the SVD 1.0×, `eigh` 1.4×), while two
decompositions side by side keep both cores busy. So the per-pair spectral values of an
all-pairs statistic and the jackknife's gradients are computed one item per thread, with one
BLAS thread each (docs/design.md §4, "Threads"): measured 1.6× (gradients) to 1.9× (values)
faster at 8 × 512 on two cores. With one BLAS thread each, an item's rounding does not depend
on the machine's thread count either.
"""

from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_info, threadpool_limits


def map_over_blas_threads(function, items):
    """``[function(item) for item in items]``, in order, computed by as many threads as BLAS
    would use now (one where BLAS has one thread, as in a Ray worker of one CPU), each with one
    BLAS thread. ``function`` must only read what the items share."""
    items = list(items)
    threads = min(len(items), blas_threads())
    with threadpool_limits(limits=1, user_api="blas"):
        if threads <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(threads, thread_name_prefix="blas") as pool:
            return list(pool.map(function, items))


def blas_threads():
    """The most threads any loaded BLAS would use now (1 if none reports)."""
    pools = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(pools, default=1)
