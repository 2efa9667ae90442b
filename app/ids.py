"""Unguessable identifiers (request, bid, offer, order ids) without a system call each.

secrets.token_hex() asks the kernel for 16 bytes every time; on the bid path that was three
getrandom() calls per request, each releasing and re-taking the GIL. This draws the same
kernel randomness (os.urandom) in 4 KiB blocks and hands out each byte once.
"""

from __future__ import annotations

import base64
import os
import threading

_BLOCK = 4096


class _Pool:
    def __init__(self) -> None:
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
    os.register_at_fork(after_in_child=lambda: _pool.__init__())


def token_hex(nbytes: int = 16) -> str:
    return _pool.take(nbytes).hex()


def token_urlsafe(nbytes: int = 16) -> str:
    return base64.urlsafe_b64encode(_pool.take(nbytes)).rstrip(b"=").decode("ascii")
