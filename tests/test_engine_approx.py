"""Random-feature RBF measures from the engine, against the exact RBF values at n = 20,000."""

import numpy as np
import pytest

from jobs.alignment import run_alignment
from repalign.spec import parse_spec
from repalign.store import write_representation

pytestmark = pytest.mark.slow  # whole jobs in process: `make check` leaves them out

N = 20_000


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    """A related pair of representations and their exact RBF CKA, from streamed tiles."""
    path = tmp_path_factory.mktemp("approx-store")
    rng = np.random.default_rng(7)
    latent = rng.standard_normal((N, 4))
    for name, width in (("a.x", 12), ("b.x", 20)):
        values = np.tanh(latent @ rng.standard_normal((4, width))) + 0.3 * rng.standard_normal(
            (N, width)
        )
        write_representation(path, name, np.arange(N), values.astype(np.float32), shard_rows=6_000)
    result = run_alignment(job(path, [{"name": "cka", "kernel": "rbf"}]), quiet=True)
    return path, value(result)


def job(path, measures):
    content = {"store": str(path), "out": str(path / "out"), "measures": measures}
    return parse_spec({**content, "executor": "local"})


def value(result):
    (row,) = [r for r in result.table.to_pylist() if r["rep_a"] != r["rep_b"]]
    return row["value"], row["std_err"]


@pytest.mark.parametrize(
    ("approx", "sizes", "bias"),
    [
        # The ratio of debiased RFF products keeps a small positive bias: on this pair, about
        # +0.005 to +0.013 (6 seeds each at 1,024 and 2,048 features), against errors of
        # 0.01 to 0.04. Nyström's probes estimate what its landmarks miss without bias; its
        # CKA, a ratio of unbiased products, keeps a bias of about std_err² / value, a few
        # hundredths of the std_err here.
        ("rff", (128, 512, 1024), 0.01),
        ("nystrom", (64, 256, 1024), 0.0),
    ],
)
def test_random_features_are_within_their_reported_error(exact, approx, sizes, bias):
    path, (truth, _) = exact
    mean_errors, mean_spreads = [], []
    for size in sizes:
        errors, spreads = [], []
        for seed in (1, 2, 3):
            measure = {
                "name": "cka",
                "kernel": "rbf",
                "approx": approx,
                "features": size,
                "seed": seed,
            }
            estimate, std_err = value(run_alignment(job(path, [measure]), quiet=True))
            assert abs(estimate - truth) <= 3 * std_err + bias, (size, seed, estimate, truth)
            errors.append(abs(estimate - truth))
            spreads.append(std_err)
        mean_errors.append(np.mean(errors))
        mean_spreads.append(np.mean(spreads))
    # the reported error shrinks with more features, and so does the actual one (over seeds)
    assert mean_spreads == sorted(mean_spreads, reverse=True), mean_spreads
    assert mean_errors[-1] < mean_errors[0], mean_errors
