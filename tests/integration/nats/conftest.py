"""Subjects of each test's own (the nats-server is tests/conftest.py's, shared with the scale-out tests)."""

from __future__ import annotations

import itertools

import pytest

_subjects = itertools.count(1)


@pytest.fixture
def bid_subject() -> str:
    """A subject of this test's own: the apps of earlier tests are gone, but nothing is left to chance."""
    return f"test{next(_subjects)}.bid-requests"
