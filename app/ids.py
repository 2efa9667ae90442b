"""Unguessable identifiers (request, bid, offer, order ids) without a system call each.

secrets.token_hex() asks the kernel for 16 bytes every time; on the bid path that was three
getrandom() calls per request, each releasing and re-taking the GIL. This draws the same
kernel randomness (os.urandom) in 4 KiB blocks and hands out each byte once.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_BLOCK = 4096


class _Pool:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start empty with a fresh lock (a forked child must not reuse its parent's bytes or lock)."""
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf, self._pos = os.urandom(max(_BLOCK, n)), 0
            start = self._pos
            self._pos = start + n
            return self._buf[start:start + n]


_pool = _Pool()
if hasattr(os, "register_at_fork"):  # a forked child must not hand out its parent's bytes
    os.register_at_fork(after_in_child=_pool.reset)


def token_hex(nbytes: int = 16) -> str:
    return _pool.take(nbytes).hex()


def token_urlsafe(nbytes: int = 16) -> str:
    return base64.urlsafe_b64encode(_pool.take(nbytes)).rstrip(b"=").decode("ascii")


_last_us = 0
_last_lock = threading.Lock()


def ordered_hex(nbytes: int = 10, prefix: str = "") -> str:
    """An unguessable id that sorts by creation: `prefix`, 13 hex digits of microseconds since the
    epoch (increasing within the process, whatever the wall clock does), then `nbytes` random bytes.

    For rows written at thousands a second under a TEXT primary key (offers, orders, outgoing
    messages): SQLite adds each new key at the right edge of the index instead of on a random page
    of it. With random offer ids, a group commit of 30 searches rewrote about 150 index pages, and
    the writer's CPU per search was three times what it is with these."""
    return ordered_hexes(1, nbytes, prefix)[0]


def ordered_hexes(count: int, nbytes: int = 10, prefix: str = "") -> list[str]:
    """`count` ordered_hex() ids in creation order, for one clock reading and one draw of random bytes."""
    global _last_us
    with _last_lock:
        first = max(_last_us + 1, time.time_ns() // 1000)
        _last_us = first + count - 1
    random = _pool.take(nbytes * count).hex()
    width = 2 * nbytes
    return [f"{prefix}{first + i:013x}{random[i * width:(i + 1) * width]}" for i in range(count)]
