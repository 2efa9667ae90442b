"""A table (a header row and rows of plain values) as CSV or XLSX bytes, safe to open in a spreadsheet.

Formula injection: a spreadsheet runs a cell that starts with =, +, -, @ (or a tab or carriage return, which some
strip first) as a formula, so a campaign named "=HYPERLINK(...)" would run on the analyst's machine. CSV has no
types, so such a string gets a leading apostrophe (the OWASP advice); XLSX has types, so every string is written as
a string cell and is never read as a formula. Numbers stay numbers in both.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # openpyxl is imported by the first XLSX asked for, not by every process start
    from openpyxl.cell.cell import Cell

Value = str | int | float | bool | None
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_XLSX_MAX_TEXT = 32_767  # Excel's longest cell text


def neutralised(value: str) -> str:
    """A string a spreadsheet shows as text: a leading apostrophe when it would start a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Value]]) -> bytes:
    """RFC 4180: comma separated, CRLF line ends, quotes where needed; UTF-8. None is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralised(h) for h in header])
    for row in rows:
        writer.writerow(["" if v is None else neutralised(v) if isinstance(v, str) else v for v in row])
    return out.getvalue().encode("utf-8")


def _text_cell(sheet: Any, value: str) -> Cell:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value)[:_XLSX_MAX_TEXT])
    cell.data_type = "s"  # openpyxl would take "=..." for a formula: text stays text
    return cell


def to_xlsx(sheet_name: str, header: Sequence[str], rows: Sequence[Sequence[Value]]) -> bytes:
    """One sheet in a write-only workbook (rows streamed to the file, not held as cell objects)."""
    from openpyxl import Workbook
    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_name[:31])
    sheet.append([_text_cell(sheet, h) for h in header])
    for row in rows:
        sheet.append([_text_cell(sheet, v) if isinstance(v, str) else v for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
