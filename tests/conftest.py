import numpy as np
import pytest


def paired_data(seed, n, dx, dy, *, dtype=np.float64, offset=3.0):
    """Two related, uncentred representations: Y is a noisy linear map of X plus a shift."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dx)) * rng.uniform(0.5, 2.0, dx) + offset
    Y = X @ rng.standard_normal((dx, dy)) + 0.5 * rng.standard_normal((n, dy)) - offset
    return X.astype(dtype), Y.astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session, limited to this machine's 2 cores."""
    import os

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
