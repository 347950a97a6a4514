"""Arrow tables from rows of Python values, assembled without pandas.

pyarrow's converters from Python objects (`pa.array`, `pa.Table.from_pylist`) import pandas,
when it is installed, to ask whether their input is a pandas object. That import costs 0.13 to
0.24 s on the first call, which a small job and `repalign.pairwise` would pay in full for a
table of a few rows. The columns here are built from their buffers instead, as the Arrow
columnar format lays them out: a validity bitmap (one bit per row, least significant bit
first), then the values, or for strings int32 offsets into their UTF-8 bytes.
"""

import operator
from itertools import repeat

import numpy as np
import pyarrow as pa

NUMBER_TYPES = {pa.float64(): np.float64, pa.int64(): np.int64}
"""The numeric Arrow types built here, with the numpy type of their values."""

LARGEST_STRING_BYTES = np.iinfo(np.int32).max
"""A string column's bytes are addressed by int32 offsets."""


def table_from_rows(rows, schema):
    """The table of ``rows`` (dicts with every field of ``schema``), as
    ``pa.Table.from_pylist(rows, schema=schema)`` builds it; None is a null."""
    get = operator.itemgetter
    columns = [column_of(list(map(get(field.name), rows)), field) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def column_of(values, field):
    """The Arrow array of one field's ``values`` (a string, float64 or int64 field)."""
    count = len(values)
    valid = np.fromiter(map(operator.is_not, values, repeat(None)), dtype=bool, count=count)
    null_count = count - int(np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if null_count else None
    if null_count and field.type != pa.float64():  # float64 takes None as NaN, under the bitmap
        filler = "" if field.type == pa.string() else 0
        values = [filler if value is None else value for value in values]
    if field.type == pa.string():
        return _strings(values, bitmap, null_count, field.name)
    if field.type not in NUMBER_TYPES:
        raise TypeError(
            f"column {field.name!r}: Arrow type {field.type} is not built here "
            f"(string, {', '.join(str(kind) for kind in NUMBER_TYPES)})"
        )
    data = np.array(values, dtype=NUMBER_TYPES[field.type])
    return pa.Array.from_buffers(
        field.type, count, [bitmap, pa.py_buffer(data)], null_count=null_count
    )


def _strings(values, bitmap, null_count, name):
    """A string array: offsets[i] is where row i's UTF-8 bytes start, offsets[-1] the end."""
    encoded = list(map(str.encode, values))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    if offsets[-1] > LARGEST_STRING_BYTES:
        raise ValueError(
            f"column {name!r}: {offsets[-1]:,} bytes of text, more than a string column's "
            f"{LARGEST_STRING_BYTES:,}"
        )
    return pa.Array.from_buffers(
        pa.string(),
        len(encoded),
        [bitmap, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))],
        null_count=null_count,
    )
