"""Small files a node keeps for itself (its secrets, its keys): written whole, durably, readable by this user only."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes, *, only_if_absent: bool = False) -> bool:
    """Write `data` under a temporary name (mode 0600), fsync it, then put it in place: a crash leaves the old file
    or the whole new one. only_if_absent: linked into place only if nothing is there yet, so of several processes
    starting at once the first keeps its file; False when one was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    if not only_if_absent:
        os.replace(temporary, path)
        return True
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True
