"""The long alignment table of an all-pairs job, read without drawing: its checked form, its
measure configurations, and one configuration as a square matrix in model-then-layer order.

An all-pairs job returns a long table (`repalign.registry.RESULT_SCHEMA`), one row per
unordered pair of representations (diagonal included) and per measure configuration
``(measure, kernel, estimator)``; a missing pair has a null value. The heatmaps
(`repalign.plots`) draw what this module cuts out; a process that only reads or logs tables
(the logging child, `jobs.uploader`; the service) imports no matplotlib through here.
"""

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from repalign.errors import RepalignError
from repalign.registry import LATER_COLUMNS, RESULT_SCHEMA

ALIGNMENT_COLUMNS = tuple(n for n in RESULT_SCHEMA.names if n not in LATER_COLUMNS)
"""The columns a table must have; tables written before the Lemma 1 interval or the
permutation null lack those."""


def as_alignment_table(table):
    """Return ``table`` as a pyarrow Table after checking that it has the alignment columns.

    Parameters
    ----------
    table : pyarrow.Table or pandas.DataFrame
        A long alignment table with the columns of `ALIGNMENT_COLUMNS` (more are allowed).

    Returns
    -------
    pyarrow.Table
        ``table`` itself when it is already a pyarrow Table.
    """
    if not isinstance(table, pa.Table):
        try:
            table = pa.table(table)
        except TypeError:
            raise TypeError(
                f"table must be a pyarrow.Table or a pandas.DataFrame; got {type(table).__name__}."
            ) from None
    missing = [name for name in ALIGNMENT_COLUMNS if name not in table.column_names]
    if missing:
        raise RepalignError(
            f"table must have the columns {list(ALIGNMENT_COLUMNS)}; it lacks {missing}."
        )
    return table


CONFIGURATION = ("measure", "kernel", "estimator")
"""The columns that name a measure configuration."""


def configurations(table):
    """The measure configurations ``(measure, kernel, estimator)`` of a checked table, sorted."""
    columns = [table[name].to_pylist() for name in CONFIGURATION]
    return sorted(set(zip(*columns, strict=True)))


def square_matrix(table, *, measure, kernel, estimator):
    """The symmetric matrix of one measure configuration of an alignment table.

    Parameters
    ----------
    table : pyarrow.Table or pandas.DataFrame
        A long alignment table (see the module docstring).
    measure, kernel, estimator : str
        The configuration to cut out; ``estimator=""`` for a measure without one.

    Returns
    -------
    names : list of str
        The representations of the configuration, ordered by model, then layer: models in
        natural order (``s2`` before ``s10``), and within a model the layers in natural
        order (``fc2`` before ``fc10``) with ``logits`` last.
    matrix : ndarray of shape (len(names), len(names))
        ``matrix[i, j] == matrix[j, i]`` is the value of the pair; NaN where the pair is
        missing or absent from the table.
    """
    rows = configuration_rows(as_alignment_table(table), measure, kernel, estimator)
    return rows_matrix(rows)


def configuration_rows(table, measure, kernel, estimator):
    """The rows of one configuration; raise if the table has none."""
    rows = table.filter(
        (pc.field("measure") == measure)
        & (pc.field("kernel") == kernel)
        & (pc.field("estimator") == estimator)
    )
    if rows.num_rows == 0:
        raise RepalignError(
            f"table has no rows for measure={measure!r}, kernel={kernel!r}, "
            f"estimator={estimator!r}; it has {configurations(table)}."
        )
    return rows


def rows_matrix(rows, column="value"):
    """Names in `model_then_layer` order and the symmetric matrix of ``column`` of the rows of
    one configuration."""
    rep_a, rep_b = rows["rep_a"].to_pylist(), rows["rep_b"].to_pylist()
    names = model_then_layer(set(rep_a) | set(rep_b))
    index = {name: i for i, name in enumerate(names)}
    i = np.array([index[name] for name in rep_a])
    j = np.array([index[name] for name in rep_b])
    pair = np.minimum(i, j) * len(names) + np.maximum(i, j)
    unique, counts = np.unique(pair, return_counts=True)
    if (counts > 1).any():
        first = unique[counts > 1][0]
        a, b = names[first // len(names)], names[first % len(names)]
        raise RepalignError(
            f"table must hold each pair once per configuration; ({a!r}, {b!r}) appears "
            f"{counts[counts > 1][0]} times."
        )
    matrix = np.full((len(names), len(names)), np.nan)
    values = rows[column].to_numpy(zero_copy_only=False)  # nulls become NaN
    matrix[i, j] = values
    matrix[j, i] = values
    return names, matrix


def model_then_layer(names):
    """Sort representation names ``<model>.<layer>`` by model, then by layer.

    Models are in natural order (``s2`` before ``s10``); within a model, layers are in
    natural order (``fc2`` before ``fc10``) with ``logits`` last. A name is split at its
    first dot, so a layer name may hold dots (``blocks.3.mlp``); a name without a dot is a
    model with an empty layer name. Natural order is depth order for the built-in zoos;
    it is not for every naming scheme (``avgpool`` sorts before ``layer1``).
    """

    def key(name):
        model, _, layer = name.partition(".")
        return (_natural_key(model), layer == "logits", _natural_key(layer), name)

    return sorted(names, key=key)


def _natural_key(text):
    """``text`` as a tuple in which runs of digits compare as numbers, case-insensitively."""
    parts = re.split(r"(\d+)", text)  # strings at even positions, digit runs at odd ones
    return tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts))
