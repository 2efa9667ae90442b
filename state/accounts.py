"""Customer and admin accounts, indexed by id and by email."""

from __future__ import annotations

import msgspec

from state.text import whole

# A new account's address: one @ with something on either side and no whitespace (REST and the CLI alike).
EMAIL_PATTERN = whole(r"[^@\s]+@[^@\s]+")


class Account(msgspec.Struct, frozen=True, gc=False):
    id: str
    email: str
    password_hash: str
    role: str
    created_at: float


class EmailTaken(Exception):
    """Another account already uses this email."""
