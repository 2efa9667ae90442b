"""The node's own secrets: random on first start, kept in the data directory, unless configured.

A secret shipped in the source would let anyone who read it sign tokens and payment webhooks
on every installation that kept the default; a generated one is this installation's alone. A
deployment of several nodes sets `auth.jwt_secret` and `payments.webhook_secret` explicitly so
that every node shares them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import msgspec

from app.config import Config

FILE_NAME = "secrets.json"


class NodeSecrets(msgspec.Struct):
    jwt_secret: str
    webhook_secret: str


def _load_or_create(path: Path) -> NodeSecrets:
    if path.is_file():
        return msgspec.json.decode(path.read_bytes(), type=NodeSecrets)
    made = NodeSecrets(secrets.token_urlsafe(48), secrets.token_urlsafe(48))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    # Readable by this user only, written whole before it is visible under its name.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(msgspec.json.encode(made))
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temporary, path)  # only the first process to start keeps its secrets...
    except FileExistsError:
        return msgspec.json.decode(path.read_bytes(), type=NodeSecrets)  # ...every other one reads them
    finally:
        os.unlink(temporary)
    return made


def with_secrets(config: Config) -> Config:
    """`config` with every secret it leaves empty taken from (or first made in) the data directory."""
    if config.auth.jwt_secret and config.payments.webhook_secret:
        return config
    node = _load_or_create(config.data_path / FILE_NAME)
    auth, payments = config.auth, config.payments
    return msgspec.structs.replace(
        config,
        auth=msgspec.structs.replace(auth, jwt_secret=auth.jwt_secret or node.jwt_secret),
        payments=msgspec.structs.replace(payments, webhook_secret=payments.webhook_secret or node.webhook_secret))
