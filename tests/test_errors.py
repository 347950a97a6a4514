"""Bad input gets a clear error naming the input and the problem, never a wrong number."""

import re

import numpy as np
import pytest

import repalign
from repalign import errors

rng = np.random.default_rng(0)
X = rng.standard_normal((30, 4))
Y = rng.standard_normal((30, 3))

PAIRED = {
    "kernel_alignment": repalign.kernel_alignment,
    "cka": repalign.cka,
    "hsic": repalign.hsic,
    "procrustes": repalign.procrustes,
    "procrustes_distance": repalign.procrustes_distance,
    "cca": repalign.cca,
    "svcca": repalign.svcca,
    "mutual_knn": repalign.mutual_knn,
    "cknna": repalign.cknna,
    "distance_alignment": repalign.distance_alignment,
}
EVERY = {**PAIRED, "mmd2": lambda A, B: repalign.mmd2(A, B[:, :1] if B.shape[1] != 1 else B)}


def with_nan(A, row=5, column=1, value=np.nan):
    A = A.copy()
    A[row, column] = value
    return A


@pytest.mark.parametrize("name", PAIRED)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_is_refused_with_its_position(name, value):
    with pytest.raises(errors.NonFiniteError, match=r"Y holds NaN or infinite .* row 5, column 1"):
        PAIRED[name](X, with_nan(Y, value=value))


def test_non_finite_in_float32_and_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(errors.NonFiniteError, match="X holds NaN"):
        repalign.cka(with_nan(X).astype(np.float32), Y)
    with pytest.raises(errors.NonFiniteError, match="X holds NaN"):
        repalign.cka(torch.tensor(with_nan(X)), Y)


def test_mmd_non_finite():
    with pytest.raises(errors.NonFiniteError, match="X holds NaN"):
        repalign.mmd2(with_nan(X), X)


@pytest.mark.parametrize("name", PAIRED)
def test_mismatched_rows(name):
    with pytest.raises(errors.RowMismatchError, match=r"X.shape=\(30, 4\), Y.shape=\(29, 3\)"):
        PAIRED[name](X, Y[:-1])


@pytest.mark.parametrize(
    ("call", "rows"),
    [
        (lambda A, B: repalign.hsic(A, B, estimator="unbiased"), 4),
        (lambda A, B: repalign.cka(A, B, estimator="song"), 4),
        (lambda A, B: repalign.cknna(A, B, k=1), 4),
        (repalign.cka, 2),
        (repalign.kernel_alignment, 2),
        (repalign.procrustes, 2),
    ],
)
def test_too_few_rows(call, rows):
    with pytest.raises(errors.TooFewRowsError, match=f"at least {rows} rows here; got {rows - 1}"):
        call(X[: rows - 1], Y[: rows - 1])
    call(X[:rows], Y[:rows])  # the minimum itself is fine


def test_mmd_too_few_rows():
    with pytest.raises(errors.TooFewRowsError, match="Y must have at least 2 rows"):
        repalign.mmd2(X, X[:1])


@pytest.mark.parametrize("measure", [repalign.mutual_knn, repalign.cknna])
@pytest.mark.parametrize("k", [30, 31, 0, -1])
def test_k_out_of_range(measure, k):
    with pytest.raises(errors.InvalidParameterError, match=f"k must be between 1 and 29.*k={k}"):
        measure(X, Y, k=k)


@pytest.mark.parametrize("k", [2.5, "3", True])
def test_k_must_be_an_integer(k):
    with pytest.raises(errors.InvalidParameterError, match="k must be an integer"):
        repalign.mutual_knn(X, Y, k=k)


@pytest.mark.parametrize("name", PAIRED)
def test_zero_variance(name):
    constant = np.full((30, 3), 2.5)
    with pytest.raises(errors.ZeroVarianceError, match="Y has zero variance"):
        PAIRED[name](X, constant)


def test_mmd_accepts_a_constant_sample_but_not_a_zero_median():
    """A point mass is a distribution; only the median heuristic can fail on it."""
    constant = np.zeros((30, 4))
    assert repalign.mmd2(X, constant, sigma=1.0) > 0
    with pytest.raises(errors.ZeroVarianceError, match="median heuristic gives sigma=0"):
        repalign.mmd2(constant, constant)


def test_zero_norm_row_for_cosine_neighbours():
    Z = X.copy()
    Z[7] = 0
    with pytest.raises(errors.ZeroVarianceError, match=r"X has 1 rows of zero norm .* row 7"):
        repalign.mutual_knn(Z, Y)


@pytest.mark.parametrize("bad", [np.array([["a", "b"], ["c", "d"]]), X.astype(complex)])
@pytest.mark.parametrize("name", EVERY)
def test_non_numeric(name, bad):
    with pytest.raises(errors.NotNumericError, match="X must hold real numbers"):
        EVERY[name](bad, Y)
    with pytest.raises(TypeError):  # NotNumericError is a TypeError too
        EVERY[name](bad, Y)


def test_ragged_input_is_not_numeric():
    with pytest.raises(errors.NotNumericError, match="X must be a numeric 2-D array"):
        repalign.cka([[1.0, 2.0], [3.0]], Y[:2])


@pytest.mark.parametrize("shape", [(30,), (30, 2, 2), ()])
@pytest.mark.parametrize("name", EVERY)
def test_not_two_dimensional(name, shape):
    bad = np.ones(shape)
    with pytest.raises(errors.ShapeError, match=r"X must be 2-D .* shape " + re.escape(str(shape))):
        EVERY[name](bad, Y)


def test_one_dimensional_input_gets_a_hint():
    with pytest.raises(errors.ShapeError, match=r"reshape\(-1, 1\)"):
        repalign.cka(X[:, 0], Y)


def test_no_columns():
    with pytest.raises(errors.ShapeError, match="at least one feature"):
        repalign.cka(np.ones((30, 0)), Y)


@pytest.mark.parametrize("sigma", [0, -1.0, np.nan, np.inf, "mean", True, None])
def test_bad_sigma(sigma):
    with pytest.raises(errors.RepalignError, match="sigma"):
        repalign.cka(X, Y, kernel="rbf", sigma=sigma)
    with pytest.raises(errors.RepalignError, match="sigma"):
        repalign.mmd2(X, X, sigma=sigma)
    with pytest.raises(errors.RepalignError, match="sigma"):
        repalign.rbf_gram(X, sigma=sigma)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: repalign.cka(X, Y, kernel="poly"), r"kernel='poly' is not supported"),
        (lambda: repalign.kernel_alignment(X, Y, kernel="RBF"), r"kernel='RBF'"),
        (lambda: repalign.hsic(X, Y, kernel=None), r"kernel=None"),
        (lambda: repalign.cka(X, Y, estimator="unbiased"), r"'biased', 'song', 'lange'"),
        (lambda: repalign.hsic(X, Y, estimator="song"), r"'biased', 'unbiased'"),
        (lambda: repalign.mmd2(X, X, estimator="quadratic"), r"estimator='quadratic'"),
        (lambda: repalign.mmd2(X, X, kernel="laplace"), r"kernel='laplace'"),
    ],
)
def test_unknown_option(call, message):
    with pytest.raises(errors.UnknownOptionError, match=message):
        call()


def test_mmd_needs_one_space_and_equal_rows_for_linear():
    with pytest.raises(errors.ShapeError, match="same number of features"):
        repalign.mmd2(X, Y)
    with pytest.raises(errors.RowMismatchError, match="'linear' estimator pairs the rows"):
        repalign.mmd2(X, X[:20], estimator="linear")
    assert np.isfinite(repalign.mmd2(X, X[:20]))  # other estimators take unequal sizes


@pytest.mark.parametrize("variance", [0, -0.1, 1.5, "all", np.nan])
def test_svcca_variance(variance):
    with pytest.raises(errors.InvalidParameterError, match="variance must be"):
        repalign.svcca(X, Y, variance=variance)


def test_every_error_is_a_value_error():
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, ValueError), name


def test_unbiased_estimates_are_returned_negative_not_clipped():
    rng = np.random.default_rng(3)
    values = [
        repalign.hsic(
            rng.standard_normal((10, 2)), rng.standard_normal((10, 2)), estimator="unbiased"
        )
        for _ in range(50)
    ]
    assert min(values) < 0
