"""`repalign.pairwise`: the job's long table, in process, equal to the per-pair library calls."""

import numpy as np
import pytest

import repalign
from repalign.errors import NonFiniteError, NotNumericError, RowMismatchError, ShapeError
from repalign.registry import RESULT_SCHEMA
from repalign.spec import SpecError
from repalign.store import open_store, write_representation

N = 300
WIDTHS = {"a.l1": 8, "b.l1": 12, "c.l1": 8}  # two of one width, for MMD²
K = 5

LIBRARY = {
    "ka:linear": lambda X, Y: repalign.kernel_alignment(X, Y),
    "cka:linear:biased": lambda X, Y: repalign.cka(X, Y),
    "cka:linear:song": lambda X, Y: repalign.cka(X, Y, estimator="song"),
    "cka:linear:lange": lambda X, Y: repalign.cka(X, Y, estimator="lange"),
    "hsic:linear:biased": lambda X, Y: repalign.hsic(X, Y),
    "hsic:linear:unbiased": lambda X, Y: repalign.hsic(X, Y, estimator="unbiased"),
    "procrustes:linear": lambda X, Y: repalign.procrustes(X, Y),
    "cca:linear": lambda X, Y: repalign.cca(X, Y),
    "svcca:linear": lambda X, Y: repalign.svcca(X, Y, variance=0.9),
    "ka:rbf": lambda X, Y: repalign.kernel_alignment(X, Y, kernel="rbf"),
    "cka:rbf:biased": lambda X, Y: repalign.cka(X, Y, kernel="rbf"),
    "mutual_knn:linear": lambda X, Y: repalign.mutual_knn(X, Y, k=K),
    "cknna:linear": lambda X, Y: repalign.cknna(X, Y, k=K),
    "mmd2:rbf:unbiased": lambda X, Y: repalign.mmd2(X, Y),
}
"""Each configuration's label -> its per-pair library call, written out by hand."""

MEASURES = [
    "ka",
    "cka",
    {"name": "cka", "estimator": "song"},
    "cka:linear:lange",
    "hsic",
    "hsic:linear:unbiased",
    "procrustes",
    "cca",
    {"name": "svcca", "variance": 0.9},
    "ka:rbf",
    "cka:rbf",
    f"mutual_knn,k={K}",
    {"name": "cknna", "k": K},
    "mmd2",
]

# Tolerance. The table's linear values come from one moment matrix of all the representations
# and the library's from one per pair: the same float64 algebra, summed in other orders (row
# blocks of other sizes, other column means by a last bit). Each moment differs by at most
# n·ε·Σ|terms| (Higham §4.2; tests/reference.py `rounding`), here 300·2.2e-16 ≈ 7e-14 of its
# scale. The measures are ratios of sums of those moments and, for Procrustes, CCA and SVCCA,
# eigen- and singular values of d×d blocks, whose relative sensitivity is bounded by the
# condition number of the covariances: `make_arrays` keeps it below 10 (asserted), so the
# values agree to about 10·7e-14 < 1e-12. The RBF, k-NN and MMD² values come from the very
# library functions the test calls, and agree to the last bit.
TOLERANCE = 1e-12


def make_arrays(seed=0):
    """Paired float32 representations sharing a latent factor, far from the origin (mean 3)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((N, 4))
    arrays = {}
    for name, width in WIDTHS.items():
        values = (
            0.5 * latent @ rng.standard_normal((4, width)) + rng.standard_normal((N, width)) + 3
        )
        arrays[name] = values.astype(np.float32)
    return arrays


@pytest.fixture(scope="module")
def arrays():
    arrays = make_arrays()
    for X in arrays.values():
        centred = X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)
        assert np.linalg.cond(centred.T @ centred) < 10  # the premise of TOLERANCE
    return arrays


@pytest.fixture(scope="module")
def table(arrays):
    return repalign.pairwise(arrays, measures=MEASURES)


def label(row):
    return ":".join(p for p in (row["measure"], row["kernel"], row["estimator"]) if p)


def test_every_value_equals_the_per_pair_library_call(arrays, table):
    assert table.schema == RESULT_SCHEMA
    rows = table.to_pylist()
    pairs = len(WIDTHS) * (len(WIDTHS) + 1) // 2
    assert len(rows) == len(MEASURES) * pairs
    assert {label(row) for row in rows} == set(LIBRARY)
    for row in rows:
        X, Y = arrays[row["rep_a"]], arrays[row["rep_b"]]
        if X.shape[1] != Y.shape[1] and row["measure"] == "mmd2":
            assert row["status"] == "missing"
            assert "different widths (8 and 12)" in row["reason"] or "(12 and 8)" in row["reason"]
            continue
        assert row["status"] == "ok", row
        assert row["n"] == N
        expected = LIBRARY[label(row)](X, Y)
        assert row["value"] == pytest.approx(expected, rel=TOLERANCE, abs=0.0), row


def test_a_store_gives_the_same_table_as_its_arrays(tmp_path, arrays, table):
    for name, X in arrays.items():  # names already in the store's (sorted) order
        write_representation(tmp_path, name, np.arange(N), X, shard_rows=128)
    assert repalign.pairwise(str(tmp_path), measures=MEASURES).equals(table)
    assert repalign.pairwise(open_store(tmp_path), measures=MEASURES).equals(table)


PAIR = ("a.l1", "d.l1")


def test_a_constant_representation_is_missing_but_for_mmd2(arrays):
    given = dict(arrays, **{"d.l1": np.full((N, 8), 2.5, dtype=np.float32)})
    rows = repalign.pairwise(given, measures=["cka", "procrustes", "mmd2"]).to_pylist()
    for row in rows:
        if "d.l1" in (row["rep_a"], row["rep_b"]) and row["measure"] != "mmd2":
            assert (row["status"], row["reason"]) == ("missing", "d.l1 is constant (zero variance)")
    mmd = [
        r for r in rows if r["measure"] == "mmd2" and {r["rep_a"], r["rep_b"]} == {"a.l1", "d.l1"}
    ]
    assert mmd[0]["status"] == "ok" and mmd[0]["value"] > 0


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        (lambda X: np.where(np.arange(N)[:, None] == 7, np.nan, X), NonFiniteError, "row 7"),
        (lambda X: X[:-1], RowMismatchError, f"{N - 1}"),
        (lambda X: X[:, 0], ShapeError, "2-D"),
        (lambda X: np.full(X.shape, "x"), NotNumericError, "real numbers"),
    ],
)
def test_bad_input_is_refused_naming_it(arrays, bad, error, words):
    given = dict(arrays, **{"b.l1": bad(arrays["b.l1"])})
    with pytest.raises(error, match=words) as caught:
        repalign.pairwise(given, measures=["cka"])
    assert "b.l1" in str(caught.value)


def test_non_finite_rows_of_a_store_are_refused_naming_them(tmp_path, arrays):
    X = arrays["a.l1"].copy()
    X[200, 3] = np.inf
    write_representation(tmp_path, "a.l1", np.arange(N), X, shard_rows=128)
    write_representation(tmp_path, "b.l1", np.arange(N), arrays["b.l1"], shard_rows=128)
    with pytest.raises(NonFiniteError, match=r"a\.l1 .* row 200, column 3"):
        repalign.pairwise(tmp_path, measures=["cka"])


@pytest.mark.parametrize(
    "measure",
    ["nonsense", {"name": "cka", "estimator": "unbiased"}, "cka:rbf,approx=rff", ["cka", "cka"]],
)
def test_measures_a_job_would_refuse_or_only_a_job_computes_are_refused(arrays, measure):
    measures = measure if isinstance(measure, list) else [measure]
    with pytest.raises(SpecError, match="measures"):
        repalign.pairwise(arrays, measures=measures)
