from pathlib import Path

import numpy as np
import pytest

from tests.servers import MissingSystemPackage, postgres_bindir, postgres_server

SERVER_FIXTURES = {"ray_session", "ray_address", "postgres_url"}
SLOWEST_MODULES = (
    "test_service",
    "test_stitching_job",
    "test_multinode",
    "test_mlflow_server",
    "test_engine_approx",
    "test_cli",
    "test_engine",
    "test_executors",
    "test_approx",
    "test_run_cli",
    "test_terminal",
    "test_submit_checks",
    "test_zoo",
    "test_tracking",
    "test_job_page",
    "test_page",
    "test_store",
    "test_align",
    "test_tiles",
    "test_api_security",
    "test_memory",
)
"""Modules by the time their tests take (`make test` prints the slowest tests), longest first.
`make test` gives whole modules to its two pytest-xdist workers in this order, the rest after
them, so that both finish at about the same time; a stale order costs balance, nothing else."""


def pytest_collection_modifyitems(items):
    """Mark `slow` every test that uses the session's Ray or PostgreSQL (`make check` leaves
    them out); other slow tests carry the mark themselves. Then put the modules in
    `SLOWEST_MODULES` order (tests within a module keep theirs)."""
    for item in items:
        if SERVER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rpartition(".")[2], len(rank)))


def paired_data(seed, n, dx, dy, *, dtype=np.float64, offset=3.0):
    """Two related, uncentred representations: Y is a noisy linear map of X plus a shift."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dx)) * rng.uniform(0.5, 2.0, dx) + offset
    Y = X @ rng.standard_normal((dx, dy)) + 0.5 * rng.standard_normal((n, dy)) - offset
    return X.astype(dtype), Y.astype(dtype)


@pytest.fixture(scope="session", autouse=True)
def no_mlflow_store_in_the_repository():
    """Jobs without a tracking URI log to mlflow.db in their working folder (MLflow's default):
    a test that runs one must run it in a temporary folder, not here."""
    root = Path(__file__).resolve().parent.parent
    before = {name: (root / name).exists() for name in ("mlflow.db", "mlruns")}
    yield
    made = [name for name, existed in before.items() if (root / name).exists() and not existed]
    assert not made, f"a test made {made} in {root}: run its job in a temporary folder"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session, limited to this machine's 2 cores; its own
    (``address="local"``), never a cluster that a test started with ``ray start``."""
    import os

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_session):
    """The address of the session's Ray, for job processes to join (``--ray-address``) rather
    than each starting a Ray of its own, which takes seconds."""
    return ray_session.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory):
    """An MLflow SQLite store whose tables are made, to copy where a test needs a fresh one:
    MLflow takes seconds to make them (its schema migrations), copying the file does not."""
    from repalign.tracking import prepare_store

    path = tmp_path_factory.mktemp("mlflow-store") / "mlflow.db"
    prepare_store(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url():
    """A SQLAlchemy URL to a throwaway PostgreSQL server shared by the whole test session.

    Skipped where PostgreSQL is not installed; `make test` installs it, so CI runs these tests
    (and tests/test_servers.py fails there if the server does not work).
    """
    try:
        postgres_bindir()
    except MissingSystemPackage as e:
        pytest.skip(f"no PostgreSQL server binaries, which .ci/system-packages installs: {e}")
    with postgres_server() as url:
        yield url
