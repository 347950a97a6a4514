"""One page of a job's result table, sorted and paged by the server as the job page's query
asks (``?sort=COLUMN&order=asc|desc&page=N``), so that the page needs no script.

Rows keep the table's order until a column is chosen; sorting is stable, with nulls last in
either order. Numbers are shown to 6 significant digits, nulls as empty cells.
"""

import math
import urllib.parse
from dataclasses import dataclass

import pyarrow as pa
from fastapi import status

ROWS_PER_PAGE = 50
ORDERS = {"asc": "ascending", "desc": "descending"}


class TableQueryError(ValueError):
    """A query that names no column, order or page of the table; ``status_code`` is 400 for a
    malformed query and 404 for a page past the last."""

    def __init__(self, message, status_code=status.HTTP_400_BAD_REQUEST):
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class TablePage:
    """The rows of one page, as text, and what the page's links need."""

    columns: list
    sortable: list
    rows: list
    sort: str | None
    order: str
    number: int
    pages: int
    total: int
    first: int
    """The position in the sorted table (from 1) of the first row shown; 0 when there is none."""

    def link(self, *, sort=None, order=None, page=None):
        """The query string of this page with ``sort``, ``order`` or ``page`` replaced."""
        sort = sort or self.sort
        query = {"sort": sort, "order": (order or self.order) if sort else None, "page": page}
        return "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})

    def heading_link(self, column):
        """Where a click on a column's heading leads: the first page sorted by that column,
        ascending, or in the other order when the table is already sorted by it."""
        flipped = "desc" if self.order == "asc" else "asc"
        return self.link(sort=column, order=flipped if column == self.sort else "asc", page=1)


def table_page(table, *, sort=None, order="asc", page="1", rows_per_page=ROWS_PER_PAGE):
    """Page ``page`` of ``table`` sorted by column ``sort`` in ``order``.

    Parameters
    ----------
    table : pyarrow.Table
    sort : str, default=None
        A column without nested values; None keeps the table's order.
    order : {"asc", "desc"}, default="asc"
    page : str, default="1"
        The page number as the query gave it, from 1.
    rows_per_page : int, default=ROWS_PER_PAGE

    Returns
    -------
    TablePage

    Raises
    ------
    TableQueryError
        If ``sort``, ``order`` or ``page`` is not one the table has, naming what it has.
    """
    sortable = [field.name for field in table.schema if not pa.types.is_nested(field.type)]
    if sort is not None and sort not in sortable:
        raise TableQueryError(
            f"sort must be one of the columns {', '.join(sortable)}; got {sort!r}."
        )
    if order not in ORDERS:
        raise TableQueryError(f"order must be asc or desc; got {order!r}.")
    if not page.isdigit() or int(page) < 1:
        raise TableQueryError(f"page must be a whole number from 1; got {page!r}.")
    pages = max(1, math.ceil(table.num_rows / rows_per_page))
    number = int(page)
    if number > pages:
        raise TableQueryError(
            f"page {number} does not exist: the table has {table.num_rows} rows, "
            f"{pages} page{'s' if pages > 1 else ''} of {rows_per_page}.",
            status.HTTP_404_NOT_FOUND,
        )
    if sort is not None:
        table = table.sort_by([(sort, ORDERS[order])])
    start = (number - 1) * rows_per_page
    shown = table.slice(start, rows_per_page).to_pylist()
    return TablePage(
        columns=table.column_names,
        sortable=sortable,
        rows=[[cell_text(row[column]) for column in table.column_names] for row in shown],
        sort=sort,
        order=order,
        number=number,
        pages=pages,
        total=table.num_rows,
        first=start + 1 if shown else 0,
    )


def cell_text(value):
    """A value as the table shows it: numbers to 6 significant digits, null as nothing."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
