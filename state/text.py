"""Patterns that a whole string must match."""


def whole(pattern: str) -> str:
    """`pattern` anchored to both ends of the string, for Python's re (msgspec uses `re.search`) and JSON Schema.

    `^...$` alone lets one trailing newline through in Python (`"LHR\\n"` matches `^[A-Z]{3}$`), and `\\Z` is not
    part of JSON Schema's ECMA-262 dialect; a `(?!\\n)` after the `$` closes the gap in both."""
    return rf"^(?:{pattern})$(?!\n)"
