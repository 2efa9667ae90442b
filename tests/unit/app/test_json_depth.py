"""The nesting bound: the fast check agrees with a plain recursive measure on any JSON."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jsondepth import LeftOpen, nesting_exceeds, refuse_left_open


def depth(value) -> int:
    """The reference: how many arrays and objects enclose the deepest value."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


_text = st.text(alphabet=st.sampled_from('ab"\\[]{}\n é'), max_size=6)
_json = st.recursive(st.none() | st.integers() | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(_json, st.integers(min_value=0, max_value=12))
def test_fast_check_matches_the_recursive_depth(value, limit):
    raw = json.dumps(value, ensure_ascii=False).encode()
    assert nesting_exceeds(raw, limit) == (depth(value) > limit)
    assert nesting_exceeds(raw.decode(), limit) == (depth(value) > limit)


def test_brackets_inside_strings_do_not_count():
    assert not nesting_exceeds(json.dumps({"a": "[" * 500, "b": '\\"{{{' * 100}), 3)
    assert nesting_exceeds("[" * 65 + "]" * 65)
    assert not nesting_exceeds("[" * 64 + "]" * 64)


def test_malformed_text_is_left_to_the_decoder_after_brackets_left_open_deep_are_refused():
    assert not nesting_exceeds("[" * 200, 10)  # unbalanced: the decoder reports it...
    assert not nesting_exceeds("{]" * 100, 10)
    # ...but not by recursing as deep as brackets left open go: those are refused first, as a RecursionError.
    for deep in ("[" * 200, "[" * 8 + "[[[[]]" + '"x"', '{"a": ' + "[" * 11):
        with pytest.raises(LeftOpen):
            refuse_left_open(deep, 10)
    for shallow in ('{"a": ' + "[" * 9, "]" * 200, "{]" * 100, "[" * 65 + "]" * 65):
        refuse_left_open(shallow, 10)  # left to the decoder (or to nesting_exceeds)


def test_an_unclosed_string_of_escaped_quotes_is_checked_in_linear_time():
    """A megabyte of escaped quotes in a string never closed: the check must not backtrack from every quote
    (it did, and one anonymous request could stand the event loop still for an hour)."""
    import time
    body = b"[" * 65 + b'"' + b'\\"' * 500_000
    started = time.perf_counter()
    nesting_exceeds(body)
    assert time.perf_counter() - started < 2.0  # about 0.05 s; backtracking took an hour
