"""The errors repalign raises for bad input.

Every error is a ``ValueError`` subclass, so ``except ValueError`` catches them all, and its
message names the argument and says what was expected and what was got.
"""


class RepalignError(ValueError):
    """Base class of every input error raised by repalign."""


class NotNumericError(RepalignError, TypeError):
    """An input is not a numeric array (strings, objects, complex numbers)."""


class ShapeError(RepalignError):
    """An input does not have the shape a measure needs (2-D, equal widths, ...)."""


class RowMismatchError(RepalignError):
    """Two paired representations do not have one row per sample each."""


class TooFewRowsError(RepalignError):
    """An estimator needs more rows than it was given."""


class NonFiniteError(RepalignError):
    """An input holds NaN or infinite values."""


class ZeroVarianceError(RepalignError):
    """A representation is constant, so every alignment with it is undefined."""


class UnknownOptionError(RepalignError):
    """A named option (kernel, estimator) is not one of the allowed names."""


class InvalidParameterError(RepalignError):
    """A numeric parameter is out of its range (sigma <= 0, k >= n, ...)."""


class StoreError(RepalignError):
    """An embedding store, or a representation in it, is missing, malformed or inconsistent."""


class MisalignedError(StoreError):
    """Representations read together do not list the same samples in the same order."""


class MissingExtraError(RepalignError, ImportError):
    """A feature needs an optional package (a pip extra) that is not installed."""
