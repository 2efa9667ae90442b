"""The one bound on how deeply a client's JSON may nest, checked before it is decoded.

No request Contrail takes nests deeper than a dozen levels; free-form fields (`ext`,
`attributes`, webhook payloads) could otherwise carry a thousand, which the decoder, the
event log or a later read would fail on.
"""

from __future__ import annotations

import re

from app.errors import InvalidInput

MAX_DEPTH = 64

# A string ends at its closing quote or, unclosed, at the end of the text: never a scan that backtracks over
# the rest of the body from every quote (quadratic on a body of escaped quotes).
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)', re.S)
# Keep what delimits strings and nesting (every bracket as [ or ]: one kind of pair to peel).
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')


class TooDeep(InvalidInput):
    code = "too_deeply_nested"


class LeftOpen(RecursionError):
    """Brackets opened deeper than the limit and never closed, found before a decoder recursed on them: near the
    interpreter's recursion limit anything that runs meanwhile (a collection's finaliser) fails as well. A
    RecursionError, so each decoder's handler for one answers it as before: malformed JSON, brackets left open."""


def _beyond(raw: bytes | str, limit: int) -> str | None:
    """"deep" when the JSON text nests arrays and objects deeper than `limit`; "open" when it opens more than
    `limit` levels that are never closed; None otherwise (other malformed text is left to the decoder)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:  # the usual case: too few brackets to be deep
        return None
    if b'\\"' in data:  # an escaped quote: strings must be parsed out of the text itself
        brackets = _STRINGS.sub(b"", data).translate(_BRACKETS, _NOT_STRUCTURE)
    else:  # every other piece between quotes is a string's content
        brackets = b"".join(data.translate(_BRACKETS, _NOT_STRUCTURE).split(b'"')[::2])
    for peeled in range(limit):
        if not brackets:
            return None
        inner = brackets.replace(b"[]", b"")  # one pass peels one level off every innermost pair
        if inner == brackets:  # unbalanced: what is left never closes (or never opened)
            return "open" if peeled + brackets.count(b"[") > limit else None
        brackets = inner
    return "deep" if brackets else None


def nesting_exceeds(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `limit`.

    Malformed text (unbalanced brackets) answers False: the decoder then says what is wrong, after
    `refuse_left_open`.
    """
    return _beyond(raw, limit) == "deep"


def refuse_left_open(raw: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise LeftOpen when the text opens more than `limit` levels it never closes: call it where a decoder's
    RecursionError is handled, before the decoder."""
    if _beyond(raw, limit) == "open":
        raise LeftOpen(f"brackets opened deeper than {limit} levels and never closed")


def check_depth(raw: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise TooDeep (400) when the JSON text nests deeper than `limit`."""
    if nesting_exceeds(raw, limit):
        raise TooDeep(f"JSON nests deeper than {limit} levels", {"max_depth": limit})
