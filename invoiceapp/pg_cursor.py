"""A psycopg cursor that describes its result's columns only when someone asks.

psycopg builds a Python ``Column`` object for every column of a result each time
``cursor.description`` is read (0.7 µs a column, measured; 0.04 ms per invoice page,
whose two statements return 64 columns). SQLAlchemy reads it after every statement but,
for a statement it has run before, only to learn whether rows came back (``is None``):
it keeps the columns' meaning from the first run. This cursor answers that question
without building the columns, and builds them, exactly as psycopg would, the first time
anything looks inside. Installed with psycopg's documented ``cursor_factory``
(invoiceapp.db.make_engine); only the driver's description changes, never a row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

from psycopg import Column, Cursor, pq

_ROWS = frozenset({pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK})


class ColumnsOnDemand(Sequence[Column]):
    """``cursor.description`` as psycopg returns it (a list of Column), built when read."""

    __slots__ = ("_cursor", "_result", "_columns")

    def __init__(self, cursor: Cursor[Any], result: pq.abc.PGresult) -> None:
        self._cursor = cursor
        self._result = result
        self._columns: list[Column] | None = None

    def _built(self) -> list[Column]:
        if self._columns is None:
            if self._cursor.pgresult is not self._result:
                # psycopg's Column reads the cursor's current result: never describe
                # a later statement's columns as this one's.
                raise RuntimeError("cursor.description read after the cursor ran on")
            self._columns = [Column(self._cursor, i) for i in range(self._result.nfields)]
        return self._columns

    def __len__(self) -> int:
        return self._result.nfields

    @overload
    def __getitem__(self, index: int) -> Column: ...
    @overload
    def __getitem__(self, index: slice) -> list[Column]: ...
    def __getitem__(self, index: int | slice) -> Column | list[Column]:
        return self._built()[index]

    def __iter__(self) -> Iterator[Column]:
        return iter(self._built())

    def __repr__(self) -> str:
        return repr(self._built())


class DescribedOnDemandCursor(Cursor[Any]):
    __slots__ = ()

    @property
    def description(self) -> ColumnsOnDemand | None:  # type: ignore[override]
        result = self.pgresult
        # psycopg's own test (BaseCursor.description): columns, or a result of rows.
        if result is not None and (result.nfields or result.status in _ROWS):
            return ColumnsOnDemand(self, result)
        return None
