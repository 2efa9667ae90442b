"""What the writer runs: SQL with its parameters, and explicit multi-row inserts (see db.py's module doc for why
inserts into one table from several callers are merged into one statement)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

# (sql, params), or (sql, params, expected_rowcount): a guarded statement that must change exactly that many rows.
Sql = tuple[Any, ...]

ROWS_PER_INSERT = 2_048
# Up to this many rows an insert goes as one statement; each row count is its own prepared statement, so the
# writer's statement cache holds CACHED_STATEMENTS.
ROWS_PER_MERGE = 256
CACHED_STATEMENTS = 512


@dataclass(frozen=True, slots=True)
class Insert:
    """Rows for one table's columns. Consecutive Inserts into the same table and columns, from one caller or
    several in a group, run as one multi-row INSERT; each caller's row count is its number of rows."""
    table: str
    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]

    @property
    def shape(self) -> tuple[str, tuple[str, ...]]:
        return self.table, self.columns

    def well_formed(self) -> bool:
        """Every row fills the columns exactly (one that does not is run alone, to fail its own caller)."""
        width = len(self.columns)
        return all(len(row) == width for row in self.rows)


Statement = Sql | Insert


def render(shape: tuple[str, tuple[str, ...]], params: list[Any], rows: int, max_variables: int) -> list[Sql]:
    """`rows` rows of flat `params` into `shape`'s table as INSERT statements: one statement up to ROWS_PER_MERGE
    rows, then a power of two of rows each (2,048, then what is left in 1,024, 512, ... 1), so whatever the batch
    size the connection only ever prepares a few dozen shapes and caches them all."""
    table, columns = shape
    width = len(columns)
    head = f"INSERT INTO {table}({', '.join(columns)}) VALUES "
    group = "(" + ",".join("?" * width) + ")"
    if rows <= ROWS_PER_MERGE and len(params) <= max_variables:
        return [(head + ",".join([group] * rows), params)]
    size = ROWS_PER_INSERT
    while size > 1 and size * width > max_variables:
        size //= 2
    statements: list[Sql] = []
    start = 0
    while start < rows:
        while size > rows - start:
            size //= 2
        statements.append((head + ",".join([group] * size), params[start * width:(start + size) * width]))
        start += size
    return statements


def flat(insert: Insert) -> list[Any]:
    return list(chain.from_iterable(insert.rows))
