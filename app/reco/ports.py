"""What the recommendation domain needs from the outside: the store of items and interactions."""

from __future__ import annotations

from state.ports import RecoStore

__all__ = ["RecoStore"]
