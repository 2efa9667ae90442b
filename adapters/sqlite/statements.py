"""How the writer shapes statements: executemany as multi-row INSERTs, and several callers' plain INSERTs into
one table merged into one statement (see db.py's module doc for why)."""

from __future__ import annotations

import re
from itertools import chain
from typing import Any

from state.ports import Statement


class Many(tuple):
    """(sql, rows): one statement over many rows (see write_many)."""


_VALUES = re.compile(r"^\s*INSERT\b.*\bVALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))\s*$", re.IGNORECASE | re.DOTALL)
ROWS_PER_INSERT = 2_048
# A group's merged INSERT goes as one statement up to this many rows; each row count is its own prepared
# statement, so the writer's statement cache holds CACHED_STATEMENTS.
ROWS_PER_MERGE = 256
CACHED_STATEMENTS = 512


def multi_row(many: Many, max_variables: int) -> list[Statement]:
    """executemany's work as multi-row INSERTs (one step each) when the SQL is a plain INSERT ... VALUES."""
    sql, rows = many
    match = _VALUES.match(sql)
    if match is None or not rows:
        return [many]
    group = match.group(1)
    return inserts(sql[:match.start(1)], group, list(chain.from_iterable(rows)), group.count("?"), max_variables)


def inserts(head: str, group: str, params: list[Any], width: int, max_variables: int) -> list[Statement]:
    """`head` + rows of `group` ("(?,?)") over flat `params`, `width` per row, as multi-row INSERTs.

    Statements hold a power of two of rows (2,048, then what is left in 1,024, 512, ... 1), so
    whatever the batch size the connection only ever prepares a dozen shapes and caches them all."""
    size = ROWS_PER_INSERT
    while size > 1 and size * width > max_variables:
        size //= 2
    rows = len(params) // width
    statements: list[Statement] = []
    start = 0
    while start < rows:
        while size > rows - start:
            size //= 2
        statements.append((head + ",".join([group] * size), params[start * width:(start + size) * width]))
        start += size
    return statements


# A plain INSERT of one or more rows, "INSERT INTO t(a, b) VALUES (?,?),(?,?)": rows from several callers
# can go as one statement, since each caller's rowcount is then simply its number of rows.
_MERGEABLE = re.compile(r"^INSERT INTO (\w+\s*\([^()]*\)) VALUES\s*(\((?:\?,)*\?\))((?:,\2)*)$")
_shapes: dict[str, tuple[tuple[str, str, int], int] | None] = {}


def mergeable(stmt: Statement) -> tuple[str, str, int] | None:
    """(head, row group, variables per row) of a mergeable INSERT whose parameters fill its rows exactly, else None."""
    if isinstance(stmt, Many) or (len(stmt) > 2 and stmt[2] is not None):
        return None
    sql = stmt[0]
    try:
        known = _shapes[sql]
    except KeyError:
        match = _MERGEABLE.match(sql)
        known = None
        if match is not None:
            group = match.group(2)
            rows = 1 + len(match.group(3)) // (len(group) + 1)
            known = ((f"INSERT INTO {match.group(1)} VALUES ", group, group.count("?")), rows)
        if len(_shapes) < 1_000:
            _shapes[sql] = known
    if known is None or len(stmt[1]) != known[0][2] * known[1]:
        return None  # run alone, so a wrong parameter count fails its own caller
    return known[0]
