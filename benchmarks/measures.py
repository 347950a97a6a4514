"""Benchmark: linear CKA from repalign against the n×n Gram form and the machine's GEMM rate.

For n = 2,000 / 8,000 / 20,000 paired float32 rows of width d = 512 (Y a noisy linear map of
X), this measures, in one run:

1. ``repalign.cka(X, Y, kernel="linear", estimator=...)`` for the "biased" and "song"
   estimators (best of 3), and its peak traced allocation (tracemalloc, in a separate untimed
   call; BLAS work buffers are not seen).
2. The same CKA from a plain float64 n×n-Gram implementation written here (K = X Xᵀ,
   L = Y Yᵀ, centred or zero-diagonal in place), best of 3, or a single run at n = 20,000.
   The two must agree to a relative difference below 1e-6, else the script exits with 1.
3. Reference multiplies: Bᵀ B for the n×(d_x + d_y + 2) float64 block B = [X, ‖x‖², Y, ‖y‖²]
   that the library accumulates (its block has one more column of ones), as a general GEMM
   and as the SYRK the library calls, and the float64 GEMM Xᵀ Y of the input shapes, best of
   3 each, timed in rounds interleaved with the library calls of item 1.

Everything is reported as ratios (library/GEMM, Gram/library); on a shared machine the
seconds are context only. Progress goes to stderr, the markdown report to stdout.

Then, against the careful numpy loop (issue 13, "the library at numpy speed"), on the same kind
of data (float32, width 512):

4. Per pair, at n = 8,000 and 64,000: each linear measure of the library for one pair in
   memory (`repalign.cka` and its estimators, `kernel_alignment`, `hsic`, `procrustes`, `cca`,
   `svcca`) against the careful numpy per-pair function `careful_cka` (cast to float64, centre
   each column, ‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F)), interleaved round by round, best of
   `SPEED_REPEATS`. The target is ≤ 1.1× for `repalign.cka`.
5. All pairs of 8 representations at n = 8,000: `repalign.pairwise(..., measures=["cka"])`
   against the careful loop `careful_loop` (each representation centred once, ‖XcᵀXc‖_F once
   each, ‖XcᵀYc‖²_F per pair), and the per-pair functions (careful and `repalign.cka`) called
   for every pair. Target ≤ 1.0×.

Run from the repository root:

    .venv/bin/python benchmarks/measures.py          # everything (several minutes)
    .venv/bin/python benchmarks/measures.py numpy    # items 4 and 5 only
"""

import datetime
import os
import platform
import sys
import time
import tracemalloc
from functools import partial

import numpy as np
import scipy
from machine import cpu_model, total_memory_gib
from scipy.linalg.blas import dsyrk
from threadpoolctl import threadpool_info

import repalign

SEED = 20250
SIZES = (2_000, 8_000, 20_000)
WIDTH = 512
NOISE = 1.0
ESTIMATORS = ("biased", "song")
REPEATS = 3
SINGLE_GRAM_RUN_FROM = 20_000
TOLERANCE = 1e-6


SPEED_SIZES = (8_000, 64_000)
PAIRWISE_SIZE = 8_000
PAIRWISE_REPRESENTATIONS = 8
SPEED_REPEATS = 3
SIBLINGS = {
    "cka": repalign.cka,
    "cka song": partial(repalign.cka, estimator="song"),
    "cka lange": partial(repalign.cka, estimator="lange"),
    "kernel_alignment": repalign.kernel_alignment,
    "hsic": repalign.hsic,
    "procrustes": repalign.procrustes,
    "cca": repalign.cca,
    "svcca": repalign.svcca,
}


def main():
    print_machine()
    if sys.argv[1:] == ["numpy"]:
        numpy_speed()
        return
    references, results = [], []
    for n in SIZES:
        X, Y = make_representations(n)
        timings = time_fast_paths(X, Y)
        references.append(timings)
        for estimator in ESTIMATORS:
            results.append(measure_gram_form(X, Y, estimator, timings))
    print_reference_table(references)
    print_result_table(results)
    failures = [r for r in results if not r["rel_diff"] < TOLERANCE]
    if failures:
        for r in failures:
            log(f"DISAGREEMENT n={r['n']} {r['estimator']}: rel. diff {r['rel_diff']:.2e}")
        sys.exit(1)
    numpy_speed()


def numpy_speed():
    """Items 4 and 5 of the module docstring: per pair, then all pairs."""
    rows = [time_siblings(*make_representations(n)) for n in SPEED_SIZES]
    print_sibling_table(rows)
    print_pairwise_table(time_pairwise(PAIRWISE_SIZE))
    disagreements = [r for r in rows if not r["cka_rel_diff"] < TOLERANCE]
    if disagreements:
        log(f"DISAGREEMENT of repalign.cka and careful_cka: {disagreements}")
        sys.exit(1)


def careful_cka(X, Y):
    """The careful numpy per-pair CKA: float64, centred columns,
    ‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F)."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    X -= X.mean(axis=0)
    Y -= Y.mean(axis=0)
    return np.linalg.norm(X.T @ Y) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def careful_loop(arrays):
    """The careful numpy loop over all pairs: each representation centred once, ‖XcᵀXc‖_F
    once each, ‖XcᵀYc‖²_F per pair. {(a, b): CKA} for a < b."""
    centred = []
    for X in arrays:
        Xc = X.astype(np.float64)
        Xc -= Xc.mean(axis=0)
        centred.append(Xc)
    norms = [np.linalg.norm(Xc.T @ Xc) for Xc in centred]
    return {
        (a, b): np.linalg.norm(centred[a].T @ centred[b]) ** 2 / (norms[a] * norms[b])
        for a in range(len(arrays))
        for b in range(a + 1, len(arrays))
    }


def best_of_rounds(calls, repeats):
    """Best seconds and last value of each call, the calls interleaved round by round."""
    seconds, values = dict.fromkeys(calls, float("inf")), {}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            values[name] = call()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds, values


def time_siblings(X, Y):
    n = X.shape[0]
    log(f"n={n}: careful numpy per pair and the library's linear measures")
    calls = {"careful": partial(careful_cka, X, Y)}
    calls.update({name: partial(function, X, Y) for name, function in SIBLINGS.items()})
    seconds, values = best_of_rounds(calls, SPEED_REPEATS)
    rel_diff = abs(values["cka"] - values["careful"]) / values["careful"]
    return {"n": n, "seconds": seconds, "cka_rel_diff": rel_diff}


def time_pairwise(n):
    rng = np.random.default_rng(SEED)
    arrays = [
        rng.standard_normal((n, WIDTH), dtype=np.float32) for _ in range(PAIRWISE_REPRESENTATIONS)
    ]
    names = [f"model{m}.layer" for m in range(len(arrays))]
    log(f"n={n}: all pairs of {len(arrays)} representations")
    pairs = [(a, b) for a in range(len(arrays)) for b in range(a + 1, len(arrays))]
    calls = {
        "careful loop": partial(careful_loop, arrays),
        "careful per pair": lambda: {(a, b): careful_cka(arrays[a], arrays[b]) for a, b in pairs},
        "repalign.cka per pair": lambda: {
            (a, b): repalign.cka(arrays[a], arrays[b]) for a, b in pairs
        },
        "repalign.pairwise": lambda: repalign.pairwise(dict(zip(names, arrays, strict=True))),
    }
    seconds, values = best_of_rounds(calls, REPEATS)
    table = {
        (names.index(r["rep_a"]), names.index(r["rep_b"])): r["value"]
        for r in values["repalign.pairwise"].to_pylist()
    }
    rel_diff = max(abs(table[p] - v) / v for p, v in values["careful loop"].items())
    return {"n": n, "count": len(arrays), "seconds": seconds, "rel_diff": rel_diff}


def print_sibling_table(rows):
    print(f"### One pair in memory against careful numpy (width {WIDTH}, float32 input)\n")
    print(f"Best of {SPEED_REPEATS}, interleaved; ratio = seconds / careful numpy's seconds.\n")
    print("| n | careful numpy (s) | " + " | ".join(SIBLINGS) + " | CKA rel. diff |")
    print("|---:|---:|" + "---:|" * len(SIBLINGS) + "---:|")
    for r in rows:
        careful = r["seconds"]["careful"]
        cells = " | ".join(f"{r['seconds'][name] / careful:.2f}×" for name in SIBLINGS)
        print(f"| {r['n']:,} | {careful:.3f} | {cells} | {r['cka_rel_diff']:.1e} |")
    print()


def print_pairwise_table(r):
    seconds = r["seconds"]
    loop = seconds["careful loop"]
    print(
        f"### All pairs of {r['count']} representations × {WIDTH} at n = {r['n']:,} "
        f"(linear CKA, best of {REPEATS}, interleaved)\n"
    )
    print("| contender | seconds | / careful loop |")
    print("|:---|---:|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.3f} | {value / loop:.2f}× |")
    print(
        f"\nLargest relative difference of the table from the careful loop: {r['rel_diff']:.1e}\n"
    )


def log(message):
    print(message, file=sys.stderr, flush=True)


def print_machine():
    blas = [
        f"{lib['internal_api']} {lib['version']} ({lib['prefix']}, {lib['architecture']}, "
        f"{lib['num_threads']} threads)"
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    ]
    print("### Machine\n")
    print(f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    from report import command_line

    print(f"- command: {command_line()}")
    print(
        f"- CPU: {cpu_model()}, nproc {len(os.sched_getaffinity(0))}, "
        f"memory {total_memory_gib():.1f} GiB, {platform.machine()}"
    )
    print(f"- OPENBLAS_CORETYPE: {os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"- BLAS: {'; '.join(blas)}")
    print(
        f"- versions: Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, repalign {repalign.__version__}"
    )
    print(
        f"- data: seed {SEED}, d_x = d_y = {WIDTH}, float32, Y = X W/√d + {NOISE}·noise; "
        f"best of {REPEATS} runs, Gram form single run for n ≥ {SINGLE_GRAM_RUN_FROM:,}\n"
    )


def make_representations(n):
    """X standard normal, Y = X W/√d + noise, both (n, WIDTH) float32."""
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((n, WIDTH), dtype=np.float32)
    W = rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / np.float32(np.sqrt(WIDTH))
    Y = X @ W + np.float32(NOISE) * rng.standard_normal((n, WIDTH), dtype=np.float32)
    return X, Y


def time_fast_paths(X, Y):
    """Best-of-REPEATS seconds of the library calls and the reference multiplies.

    The reference multiplies are Bᵀ B, as GEMM and as SYRK, with B = [X, ‖x‖², Y, ‖y‖²] in
    float64, and Xᵀ Y. The calls are interleaved round by round, so that a burst of load
    from other users of the machine hits the library and its references alike.
    """
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    B = np.hstack([X64, squared_norms(X64), Y64, squared_norms(Y64)])
    # A distinct copy keeps numpy from recognising Bᵀ B and calling SYRK instead of GEMM.
    B_twin = B.copy()
    calls = {
        "gemm_BtB": lambda: B.T @ B_twin,
        # Bᵀ of a C-ordered B is Fortran-ordered, so dsyrk reads it without a copy.
        "syrk_BtB": lambda: dsyrk(1.0, B.T, trans=0),
        "gemm_XtY": lambda: X64.T @ Y64,
        **{
            estimator: partial(repalign.cka, X, Y, kernel="linear", estimator=estimator)
            for estimator in ESTIMATORS
        },
    }
    log(f"n={X.shape[0]}: library and reference multiplies, B is {B.shape}")
    seconds = dict.fromkeys(calls, float("inf"))
    values = {}
    for _ in range(REPEATS):
        for name, call in calls.items():
            start = time.perf_counter()
            values[name] = call()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return {
        "B_shape": B.shape,
        "seconds": seconds,
        "library_values": {estimator: values[estimator] for estimator in ESTIMATORS},
    }


def squared_norms(A):
    return np.einsum("ij,ij->i", A, A)[:, None]


def measure_gram_form(X, Y, estimator, timings):
    """Time the Gram form once or REPEATS times and compare it with the library's timings."""
    n = X.shape[0]
    repeats = 1 if n >= SINGLE_GRAM_RUN_FROM else REPEATS
    log(f"n={n}: Gram {estimator}, {repeats} run(s)")
    gram_time = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        gram_value = gram_cka(X, Y, estimator)
        gram_time = min(gram_time, time.perf_counter() - start)
    library_peak = peak_traced_bytes(
        partial(repalign.cka, X, Y, kernel="linear", estimator=estimator)
    )
    seconds = timings["seconds"]
    library_time = seconds[estimator]
    library_value = timings["library_values"][estimator]
    return {
        "n": n,
        "estimator": estimator,
        "library_time": library_time,
        "library_peak_mib": library_peak / 2**20,
        "gram_time": gram_time,
        "gram_repeats": repeats,
        "library_value": library_value,
        "rel_diff": abs(library_value - gram_value) / abs(gram_value),
        "per_gemm_BtB": library_time / seconds["gemm_BtB"],
        "per_syrk_BtB": library_time / seconds["syrk_BtB"],
        "per_gemm_XtY": library_time / seconds["gemm_XtY"],
    }


def peak_traced_bytes(function):
    """Peak bytes allocated through Python's allocators (numpy arrays included) by one call."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def gram_cka(X, Y, estimator):
    """CKA from the two n×n float64 Gram matrices, transformed in place (2·8n² bytes)."""
    K = linear_gram(X)
    L = linear_gram(Y)
    products = biased_hsic_products if estimator == "biased" else song_hsic_products
    kl, kk, ll = products(K, L)
    return kl / np.sqrt(kk * ll)


def linear_gram(A):
    A64 = A.astype(np.float64)
    return A64 @ A64.T


def biased_hsic_products(K, L):
    """⟨HKH, HLH⟩, ⟨HKH, HKH⟩, ⟨HLH, HLH⟩ after centring K and L in place."""
    center_in_place(K)
    center_in_place(L)
    return np.vdot(K, L), np.vdot(K, K), np.vdot(L, L)


def center_in_place(G):
    """G ← H G H for a symmetric G: subtract row and column means, add back the grand mean."""
    means = G.mean(axis=0)
    G -= means[:, None]
    G -= means[None, :]
    G += means.mean()


def song_hsic_products(K, L):
    """HSIC_u(K, L), HSIC_u(K, K), HSIC_u(L, L) after zeroing the diagonals of K and L in place."""
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    k_rows, l_rows = K.sum(axis=1), L.sum(axis=1)
    return (
        unbiased_hsic(K, L, k_rows, l_rows),
        unbiased_hsic(K, K, k_rows, k_rows),
        unbiased_hsic(L, L, l_rows, l_rows),
    )


def unbiased_hsic(K, L, k_rows, l_rows):
    """Song et al. (2012): [Tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)).

    K, L are the zero-diagonal K̃, L̃; both are symmetric, so Tr(K̃L̃) = ⟨K̃, L̃⟩ and
    1ᵀK̃L̃1 = (K̃1)ᵀ(L̃1), the product of their row sums.
    """
    n = K.shape[0]
    trace = np.vdot(K, L)
    sums = k_rows.sum() * l_rows.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (k_rows @ l_rows)
    return (trace + sums - cross) / (n * (n - 3))


def print_reference_table(references):
    print("### Reference multiplies (float64, best of 3)\n")
    print("| n | B shape | GEMM BᵀB (s) | SYRK BᵀB (s) | GEMM XᵀY (s) | GEMM BᵀB GFLOP/s |")
    print("|---:|:---|---:|---:|---:|---:|")
    for r in references:
        n, width = r["B_shape"]
        seconds = r["seconds"]
        gflops = 2 * n * width * width / seconds["gemm_BtB"] / 1e9
        print(
            f"| {n:,} | {n:,}×{width} | {seconds['gemm_BtB']:.3f} | {seconds['syrk_BtB']:.3f} "
            f"| {seconds['gemm_XtY']:.3f} | {gflops:.0f} |"
        )
    print()


def print_result_table(results):
    print("### Linear CKA: library vs n×n Gram form\n")
    print(
        "| n | estimator | library (s) | Gram (s) | Gram runs | speed-up Gram/library "
        "| library / GEMM BᵀB | library / SYRK BᵀB | library / GEMM XᵀY "
        "| library peak traced (MiB) | CKA | rel. diff vs Gram |"
    )
    print("|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['n']:,} | {r['estimator']} | {r['library_time']:.3f} | {r['gram_time']:.3f} "
            f"| {r['gram_repeats']} | {r['gram_time'] / r['library_time']:.1f}× "
            f"| {r['per_gemm_BtB']:.2f} | {r['per_syrk_BtB']:.2f} | {r['per_gemm_XtY']:.2f} "
            f"| {r['library_peak_mib']:.1f} | {r['library_value']:.6f} | {r['rel_diff']:.1e} |"
        )
    print()


if __name__ == "__main__":
    main()
