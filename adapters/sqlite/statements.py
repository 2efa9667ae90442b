"""What the writer runs: SQL with its parameters, and explicit multi-row inserts (see db.py's module doc for why
inserts into one table from several callers are merged into one statement)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol

from state.ports import WriteConflict

# (sql, params), or (sql, params, expected_rowcount[, what]): a guarded statement that must change exactly that many
# rows, else the transaction fails with WriteConflict naming `what`.
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


class SqlDatabase(Protocol):
    """What the stores need of a database: the embedded SQLite one (db.py) or PostgreSQL shared by several nodes
    (adapters/postgres/db.py). Both run these statements with the same meaning; `dialect` is for the few that
    cannot be written once (JSON inside a column: json_field, json_with)."""

    dialect: str  # "sqlite" or "postgres"

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    async def write(self, statements: Sequence[Statement], *, power_safe: bool = True) -> list[int]: ...

    def submit(self, statements: Sequence[Statement], *, power_safe: bool = True) -> asyncio.Future[list[int]]: ...


async def written(db: SqlDatabase, statements: Sequence[Statement]) -> bool:
    """Write a transaction whose guards may refuse it: False, and nothing written, when one did (a claim another
    writer made first)."""
    try:
        await db.write(statements)
    except WriteConflict:
        return False
    return True


async def used_bytes(db: SqlDatabase) -> int:
    """What a SQLite database's rows take on disk: its pages in use (freed pages are reused before the file grows,
    so a file kept under a budget this way stops growing). 0 on PostgreSQL: a table's size there does not shrink
    when rows go (until a VACUUM FULL), so a budget read from it would delete everything prunable; its disk is the
    database's administrators', and the age retentions apply."""
    if db.dialect == "postgres":
        return 0
    row = await db.fetchone("SELECT (p.page_count - f.freelist_count) * s.page_size FROM pragma_page_count() AS p, "
                            "pragma_freelist_count() AS f, pragma_page_size() AS s")
    return int(row[0]) if row else 0


def json_field(dialect: str, column: str, path: str, sql_type: str = "") -> str:
    """SQL for one field of the JSON in a TEXT column (`path` dotted: "details.amount_cents"); on PostgreSQL cast
    to `sql_type` (text when empty). A JSON true compares equal to 1 on SQLite and to 'true' here: use json_true."""
    if dialect == "postgres":
        expr = f"({column}::jsonb #>> '{{{path.replace('.', ',')}}}')"
        return f"{expr}::{sql_type}" if sql_type else expr
    return f"json_extract({column}, '$.{path}')"


def code_points(dialect: str, column: str) -> str:
    """SQL for a TEXT column compared and ordered by code point, as SQLite does and Python sorts strings
    (PostgreSQL otherwise follows the database's collation, where "B" may come after "a")."""
    return f'{column} COLLATE "C"' if dialect == "postgres" else column


def json_true(dialect: str, column: str, path: str) -> str:
    """SQL that is true when the JSON field is true."""
    if dialect == "postgres":
        return f"({column}::jsonb #> '{{{path.replace('.', ',')}}}') = 'true'::jsonb"
    return f"json_extract({column}, '$.{path}') = 1"


def json_with(dialect: str, column: str, fields: Sequence[tuple[str, str]]) -> str:
    """SQL for the JSON in `column` with top-level fields set, each from a `?` parameter of the given SQL type
    (text, double precision): SQLite's json_set, PostgreSQL's jsonb_set."""
    if dialect == "postgres":
        expr = f"{column}::jsonb"
        for name, sql_type in fields:
            expr = f"jsonb_set({expr}, '{{{name}}}', to_jsonb(CAST(? AS {sql_type})))"
        return f"({expr})::text"
    pairs = ", ".join(f"'$.{name}', ?" for name, _ in fields)
    return f"json_set({column}, {pairs})"
