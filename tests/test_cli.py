"""The command line, run as a user runs it."""

import subprocess
import sys

import pytest

from repalign import __version__


def repalign(*args):
    return subprocess.run(
        [sys.executable, "-m", "repalign", *args], capture_output=True, text=True, timeout=600
    )


def test_help_lists_the_commands():
    result = repalign("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_version():
    assert repalign("--version").stdout.strip() == f"repalign {__version__}"


def test_unknown_command_fails_with_usage():
    result = repalign("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.fixture(scope="module")
def demo_output():
    result = repalign("demo")
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse_tables(output):
    """{title: {pair: [values]}} from the demo's printed tables."""
    tables, current = {}, None
    for line in output.splitlines():
        if line.endswith("measures"):
            current = tables.setdefault(line, {})
        elif current is not None and " ~ " in line:
            pair, values = line[: line.rindex(" ~ ") + 3], line[line.rindex(" ~ ") + 3 :]
            other, *numbers = values.split()
            current[pair + other] = [float(v) for v in numbers]
    return tables


def test_demo_prints_every_pair_and_measure(demo_output):
    for header in ("KA", "CKA song", "CKA rbf", "Procrustes", "SVCCA", "CKNNA", "dist. align."):
        assert header in demo_output
    tables = parse_tables(demo_output)
    assert set(tables) == {"Kernel measures", "Geometry measures"}
    for rows in tables.values():
        assert len(rows) == 10  # every unordered pair of five representations
        assert all(len(values) == 6 for values in rows.values())


def test_demo_values_make_sense(demo_output):
    """PCA is a linear map of the pixels; the shuffled control is aligned with nothing."""
    kernel = parse_tables(demo_output)["Kernel measures"]
    geometry = parse_tables(demo_output)["Geometry measures"]
    assert kernel["pixels ~ pca-16"][1] > 0.98  # linear CKA
    assert geometry["pixels ~ pca-16"][1] == 1.0  # CCA of a linear map of the data
    assert abs(kernel["pixels ~ shuffled-pixels"][1]) < 0.05
    assert geometry["pixels ~ shuffled-pixels"][3] < 0.05  # mutual kNN
