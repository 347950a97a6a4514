"""Input checking, done once at the boundary of every public function.

Public measures call these checks first and hand clean arrays to private code, which trusts
them. Messages name the argument and say what was expected and what was got.
"""

import numbers

import numpy as np

from repalign.blocks import row_slices
from repalign.errors import (
    InvalidParameterError,
    NonFiniteError,
    NotNumericError,
    RowMismatchError,
    ShapeError,
    TooFewRowsError,
    UnknownOptionError,
    ZeroVarianceError,
)


def check_representation(X, *, name="X", min_rows=2, constant_ok=False, finite=True):
    """Return ``X`` as a checked 2-D numeric ndarray of shape (n_samples, n_features).

    Accepts numpy arrays, torch tensors (moved to the CPU) and anything array-like. Floating
    dtypes are kept as they are (no float64 copy of a large float32 array: measures convert
    block by block); integers and booleans are kept too and converted the same way.

    Raises
    ------
    NotNumericError
        Strings, objects that are not numbers, complex numbers.
    ShapeError
        Not 2-D, or no columns.
    TooFewRowsError
        Fewer than ``min_rows`` rows.
    NonFiniteError
        NaN or infinite values.
    ZeroVarianceError
        Every row identical, unless ``constant_ok`` (a sample from a point mass, for MMD).

    ``finite=False`` skips the NaN/Inf check, for the store, which keeps such rows as they are
    and counts them.
    """
    X = _to_numpy(X, name)
    if X.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if X.ndim == 1 else ""
        raise ShapeError(
            f"{name} must be 2-D with shape (n_samples, n_features); "
            f"got an array of shape {X.shape}{hint}."
        )
    n, d = X.shape
    if d == 0:
        raise ShapeError(f"{name} must have at least one feature; got shape {X.shape}.")
    if n < min_rows:
        raise TooFewRowsError(f"{name} must have at least {min_rows} rows here; got {n}.")
    if finite and X.dtype.kind == "f":
        _check_finite(X, name)
    if not constant_ok and n > 0:
        _check_not_constant(X, name)
    return X


def check_pair(X, Y, *, min_rows=2, names=("X", "Y"), finite=True):
    """Check two paired representations: each valid, and one row per sample in both.

    ``finite=False`` leaves the NaN/Inf check to the caller's pass of `checked_column_means`.
    """
    X = check_representation(X, name=names[0], min_rows=min_rows, finite=finite)
    Y = check_representation(Y, name=names[1], min_rows=min_rows, finite=finite)
    if X.shape[0] != Y.shape[0]:
        raise RowMismatchError(
            f"{names[0]} and {names[1]} must have one row per sample; "
            f"got {names[0]}.shape={X.shape}, {names[1]}.shape={Y.shape}."
        )
    return X, Y


def check_two_samples(X, Y):
    """Check two samples of one space (MMD): each valid, possibly constant, equal widths."""
    X = check_representation(X, name="X", min_rows=2, constant_ok=True)
    Y = check_representation(Y, name="Y", min_rows=2, constant_ok=True)
    if X.shape[1] != Y.shape[1]:
        raise ShapeError(
            "X and Y must be samples in one space, with the same number of features; "
            f"got X.shape={X.shape}, Y.shape={Y.shape}."
        )
    return X, Y


def checked_column_means(X, *, name="X"):
    """Column means of ``X`` in float64, raising `NonFiniteError` (with the first offending row
    and column) for NaN or infinite values, as `check_representation` does.

    One pass of row blocks serves both: the column sums are finite exactly when the data is
    (unless finite values overflow, which is not an error), so a measure that needs the means
    reads its input once before its products instead of twice.
    """
    total = np.zeros(X.shape[1])
    for rows in row_slices(X.shape[0], X.shape[1]):
        total += X[rows].sum(axis=0, dtype=np.float64)
    if not np.isfinite(total).all():
        _check_finite(X, name)
    return total / X.shape[0]


def check_option(value, *, name, allowed):
    """Return ``value`` if it is one of the ``allowed`` names, else raise UnknownOptionError."""
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise UnknownOptionError(f"{name}={value!r} is not supported; choose one of {choices}.")
    return value


def check_sigma(sigma):
    """Return ``sigma``: ``"median"`` or a positive finite number (the RBF bandwidth)."""
    if isinstance(sigma, str):
        return check_option(sigma, name="sigma", allowed=("median",))
    if not isinstance(sigma, numbers.Real) or isinstance(sigma, bool):
        raise InvalidParameterError(f"sigma must be a positive number or 'median'; got {sigma!r}.")
    if not (np.isfinite(sigma) and sigma > 0):
        raise InvalidParameterError(
            f"sigma must be a positive number or 'median'; got sigma={sigma!r}."
        )
    return float(sigma)


def check_int_in_range(value, *, name, low, high, why=""):
    """Return ``value`` if it is an integer with ``low <= value <= high``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be an integer; got {value!r}.")
    if not low <= value <= high:
        raise InvalidParameterError(
            f"{name} must be between {low} and {high}{why}; got {name}={value}."
        )
    return int(value)


def _to_numpy(X, name):
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor, without importing torch
        X = X.detach().cpu().numpy()
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise NotNumericError(
            f"{name} must be a numeric 2-D array; got {type(X).__name__}: {exc}"
        ) from exc
    if X.dtype.kind in "fiub":
        return X
    if X.dtype.kind == "O":
        try:
            return X.astype(np.float64)
        except (ValueError, TypeError):
            pass
    raise NotNumericError(f"{name} must hold real numbers; got an array of dtype {X.dtype}.")


def _check_finite(X, name):
    # Cheap test first: the sum of a finite array is finite unless it overflows.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(X, dtype=np.float64)):
            return
    bad_rows = []
    for rows in row_slices(X.shape[0], X.shape[1]):
        bad = ~np.isfinite(X[rows]).all(axis=1)
        bad_rows.extend(np.flatnonzero(bad) + rows.start)
    if bad_rows:
        first = bad_rows[0]
        column = int(np.flatnonzero(~np.isfinite(X[first]))[0])
        raise NonFiniteError(
            f"{name} holds NaN or infinite values: {len(bad_rows)} of {X.shape[0]} rows, "
            f"the first at row {first}, column {column}."
        )


def _check_not_constant(X, name):
    first = X[0]
    for rows in row_slices(X.shape[0], X.shape[1]):
        if not (X[rows] == first).all():
            return
    raise ZeroVarianceError(
        f"{name} has zero variance: all {X.shape[0]} rows are identical, "
        "so its alignment with anything is undefined."
    )
