"""Linear-kernel measures run at n = 10⁶, d = 512 in bounded memory (no n×n matrix).

tracemalloc sees every numpy allocation; the inputs are made before tracing starts, so the
peak is what the measure itself allocates. An n×n float64 Gram at this n would need 8 TB, and
a float64 copy of one input 4 GiB.
"""

import tracemalloc

import numpy as np
import pytest

import repalign

LIMIT = 256 * 2**20  # well under the 1 GiB of the issue


@pytest.fixture(scope="module")
def million_rows():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1_000_000, 512), dtype=np.float32)
    Y = X[:, :256] @ rng.standard_normal((256, 512)).astype(np.float32) / 16
    Y += rng.standard_normal(Y.shape, dtype=np.float32)
    return X, Y


@pytest.mark.parametrize(
    "measure",
    [lambda X, Y: repalign.cka(X, Y, estimator="song"), repalign.cca],
    ids=["cka-song", "cca"],
)
def test_million_rows_in_bounded_memory(million_rows, measure):
    X, Y = million_rows
    tracemalloc.start()
    try:
        value = measure(X, Y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0.0 < value < 1.0
    assert peak < LIMIT, f"peak {peak / 2**20:.0f} MiB"
