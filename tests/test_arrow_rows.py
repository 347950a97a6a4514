"""`repalign.arrow_rows` builds the tables pyarrow's own converter builds from the same rows."""

import math

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repalign.arrow_rows import table_from_rows
from repalign.models import MODEL_SCHEMA
from repalign.registry import RESULT_SCHEMA

SCHEMA = pa.schema([("name", pa.string()), ("value", pa.float64()), ("count", pa.int64())])

row = st.fixed_dictionaries(
    {
        "name": st.none() | st.text(),  # any Unicode, the empty string and astral planes too
        "value": st.none() | st.floats(allow_nan=False),  # NaN: below (NaN ≠ NaN in equals)
        "count": st.none() | st.integers(-(2**63), 2**63 - 1),
    }
)


@settings(deadline=None)  # the first example pays pyarrow's imports
@given(st.lists(row, max_size=40))
def test_the_table_of_rows_is_pyarrows(rows):
    built = table_from_rows(rows, SCHEMA)
    built.validate(full=True)
    assert built.equals(pa.Table.from_pylist(rows, schema=SCHEMA))


def test_nan_is_a_value_and_none_a_null():
    rows = [{"name": "a", "value": float("nan"), "count": 1}, {"name": None, "value": None}]
    rows[1]["count"] = None
    built = table_from_rows(rows, SCHEMA)
    assert built.column("value").null_count == 1
    assert math.isnan(built.column("value")[0].as_py())
    assert built.column("name").to_pylist() == ["a", None]


@pytest.mark.parametrize("schema", [RESULT_SCHEMA, MODEL_SCHEMA], ids=["result", "model"])
def test_every_column_type_of_the_job_tables_is_built(schema):
    rows = [{field.name: None for field in schema}]
    assert table_from_rows(rows, schema).equals(pa.Table.from_pylist(rows, schema=schema))


def test_a_column_type_not_built_here_is_named():
    schema = pa.schema([("flag", pa.bool_())])
    with pytest.raises(TypeError, match="column 'flag': Arrow type bool is not built here"):
        table_from_rows([{"flag": True}], schema)
