"""The node's own secrets: random on first start, kept in the data directory, unless configured.

A secret shipped in the source would let anyone who read it sign tokens and payment webhooks
on every installation that kept the default; a generated one is this installation's alone. A
deployment of several nodes sets `auth.jwt_secret` and `payments.webhook_secret` explicitly so
that every node shares them.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import msgspec

from app.config import Config
from app.runtime.files import write_private

FILE_NAME = "secrets.json"


class NodeSecrets(msgspec.Struct):
    jwt_secret: str
    webhook_secret: str


def _load_or_create(path: Path) -> NodeSecrets:
    if path.is_file():
        return msgspec.json.decode(path.read_bytes(), type=NodeSecrets)
    made = NodeSecrets(secrets.token_urlsafe(48), secrets.token_urlsafe(48))
    if write_private(path, msgspec.json.encode(made), only_if_absent=True):
        return made
    return msgspec.json.decode(path.read_bytes(), type=NodeSecrets)  # another process started first: its secrets


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
