"""The Lemma 1 interval the engine attaches to exact RBF kernel alignment (jobs.alignment)."""

import numpy as np
import pytest

import repalign
from jobs.alignment import run_alignment
from jobs.passes.rbf import LEMMA1_DELTA
from repalign.bounds import lemma1_interval
from repalign.spec import parse_spec
from repalign.store import write_representation
from tests import reference
from tests.test_engine import make_store

pytestmark = pytest.mark.slow  # whole jobs in process: `make check` leaves them out

WIDTHS = {"m0.a": 5, "m1.a": 9, "m2.a": 3}


def run(path, measures):
    content = {"store": str(path), "out": str(path / "out"), "measures": measures}
    spec = parse_spec({**content, "executor": "local"})
    return run_alignment(spec, quiet=True)


def brute_interval(arrays, row, sigma):
    """lemma1_interval from explicit n×n RBF Grams of the stored (float32) values."""
    X, Y = (np.asarray(arrays[row[side]], dtype=np.float64) for side in ("rep_a", "rep_b"))
    sigmas = [repalign.median_sigma(A) if sigma == "median" else sigma for A in (X, Y)]
    K, L = (reference.gram(A, "rbf", s) for A, s in zip((X, Y), sigmas, strict=True))
    n = K.shape[0]
    a, b, c = (np.sum(P * Q) / n**2 for P, Q in ((K, L), (K, K), (L, L)))
    return lemma1_interval(a, b, c, n, delta=LEMMA1_DELTA)


def check_intervals(rows, arrays, sigma):
    """Each exact RBF KA row holds its value and the brute-force interval; returns how many
    of them are vacuous."""
    vacuous = 0
    for row in rows:
        assert row["status"] == "ok"
        assert row["lower"] <= row["value"] <= row["upper"]
        expected = brute_interval(arrays, row, sigma)
        # float32 input, float64 tiles on shifted rows against explicit float64 Grams: the
        # V-statistics agree to ~1e-12 relative, and the interval is a smooth function of them
        assert row["lower"] == pytest.approx(expected.lower, rel=1e-9, abs=1e-12)
        assert row["upper"] == pytest.approx(expected.upper, rel=1e-9)
        vacuous += expected.vacuous
    return vacuous


def test_exact_rbf_ka_carries_the_lemma1_interval(tmp_path):
    n = 1500  # r = sqrt(32 ln(120)/n) ≈ 0.32: the intervals are not all [0, 1]
    arrays = make_store(tmp_path, WIDTHS, dict.fromkeys(WIDTHS, 700), n=n)
    measures = [{"name": "ka", "kernel": "rbf"}, {"name": "cka", "kernel": "rbf"}, {"name": "ka"}]
    result = run(tmp_path, measures)
    rows = result.table.to_pylist()
    exact_ka = [r for r in rows if (r["measure"], r["kernel"]) == ("ka", "rbf")]
    assert len(exact_ka) == 6  # 3 representations: 6 pairs with the diagonal
    vacuous = check_intervals(exact_ka, arrays, "median")
    assert any(r["lower"] > 0 for r in exact_ka)  # informative at this n
    # every other row (RBF CKA, linear KA) has no interval
    others = [r for r in rows if (r["measure"], r["kernel"]) != ("ka", "rbf")]
    assert len(others) == 2 * 6
    assert all(r["lower"] is None and r["upper"] is None for r in others)
    assert result.summary["lemma1"] == {"delta": 0.05, "intervals": 6, "vacuous": vacuous}
    assert result.table.schema.field("lower").type == "double"


def test_random_feature_ka_has_no_interval(tmp_path):
    make_store(tmp_path, WIDTHS, dict.fromkeys(WIDTHS, 400), n=400)
    measure = {"name": "ka", "kernel": "rbf", "approx": "rff", "features": 64}
    result = run(tmp_path, [measure])
    rows = result.table.to_pylist()
    assert all(r["status"] == "ok" and r["lower"] is None for r in rows)
    assert result.summary["lemma1"] == {"delta": 0.05, "intervals": 0, "vacuous": 0}


def test_small_n_gives_vacuous_intervals_and_missing_pairs_none(tmp_path):
    n = 120  # r = sqrt(32 ln(120)/120) ≈ 1.24 ≥ 1
    arrays = make_store(tmp_path, {"m0.a": 4, "m1.a": 6}, {"m0.a": 50, "m1.a": 120}, n=n)
    write_representation(tmp_path, "m2.constant", np.arange(n), np.ones((n, 3), np.float32))
    result = run(tmp_path, [{"name": "ka", "kernel": "rbf", "sigma": 4.0}])
    rows = result.table.to_pylist()
    computed = [r for r in rows if r["status"] == "ok"]
    assert len(computed) == 3 and check_intervals(computed, arrays, 4.0) == 3
    assert all((r["lower"], r["upper"]) == (0.0, 1.0) for r in computed)
    missing = [r for r in rows if r["status"] != "ok"]
    assert len(missing) == 3  # every pair of the constant representation
    assert all(r["lower"] is None and r["upper"] is None for r in missing)
    assert result.summary["lemma1"] == {"delta": 0.05, "intervals": 3, "vacuous": 3}
