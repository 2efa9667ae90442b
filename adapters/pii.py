"""Personal data sealed at rest: AES-256-GCM under a keyring, and keyed hashes to find a row by email.

A sealed value is `pii1:<key id>:<base64 of a random 96-bit nonce + ciphertext + tag>` (text columns) or the same
bytes (BLOB columns). The key id is the first 8 hex digits of the key's SHA-256, so a reader knows which key of the
ring opens a value and the rotation pass knows which values are not under the current key yet. The associated data
is the column's name, so a value copied into another column does not open.

Lookups use HMAC-SHA256 of the normalised (trimmed, lower-cased) identifier under the lookup key, which rotation
keeps: re-hashing every lookup column at each rotation would leave logins failing while it ran.

The keys come from config (`pii.key`, `pii.previous_keys`, `pii.lookup_key`) or from the key file (`pii.key_file`,
by default `pii.key` in the data directory, made on first start like the node's other secrets; app/secrets.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.runtime.files import write_private

PREFIX = "pii1:"
_BPREFIX = PREFIX.encode()
HASH_PREFIX = "h1:"
KEY_BYTES = 32
FILE_NAME = "pii.key"


class PiiKeyMissing(Exception):
    """A value is sealed under a key this node's keyring does not hold (or it was altered)."""


class KeyFile(msgspec.Struct):
    """The key file: the lookup key and the data keys, the current one first."""
    lookup: str
    keys: list[str]


def decode_key(text: str, what: str) -> bytes:
    """A base64 key of 32 bytes; ValueError naming `what` otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} must be base64 (e.g. from `openssl rand -base64 32`)") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes once base64-decoded, not {len(raw)}")
    return raw


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


class PiiCipher:
    """Seals and opens personal data with the keyring's keys; `reload` re-reads the ring (another process may have
    rotated it) when a value names a key this one does not hold."""

    def __init__(self, keys: Sequence[bytes], lookup_key: bytes,
                 reload: Callable[[], tuple[list[bytes], bytes]] | None = None) -> None:
        self._reload = reload
        self._set(list(keys), lookup_key)

    def _set(self, keys: list[bytes], lookup_key: bytes) -> None:
        if not keys:
            raise ValueError("a PII keyring needs at least one key")
        self._ring = {key_id(k): AESGCM(k) for k in keys}
        self.current_id = key_id(keys[0])
        self._current = self._ring[self.current_id]
        self._lookup = lookup_key
        self._text_prefix = f"{PREFIX}{self.current_id}:"

    @classmethod
    def generate(cls) -> PiiCipher:
        """A cipher with fresh random keys (tests, and tools that keep nothing)."""
        return cls([secrets.token_bytes(KEY_BYTES)], secrets.token_bytes(KEY_BYTES))

    @property
    def key_ids(self) -> list[str]:
        return list(self._ring)

    def reload(self) -> bool:
        """Re-read the keyring; True when the current key changed."""
        if self._reload is None:
            return False
        before = self.current_id
        self._set(*self._reload())
        return self.current_id != before

    # Sealing

    def seal(self, text: str, column: str) -> str:
        nonce = os.urandom(12)
        sealed = self._current.encrypt(nonce, text.encode(), column.encode())
        return self._text_prefix + base64.b64encode(nonce + sealed).decode()

    def seal_bytes(self, data: bytes, column: str) -> bytes:
        nonce = os.urandom(12)
        return self._text_prefix.encode() + nonce + self._current.encrypt(nonce, data, column.encode())

    def open(self, value: str, column: str) -> str:
        """The plain text of a sealed value; a value stored before encryption (no prefix) as it is."""
        if not value.startswith(PREFIX):
            return value
        kid, _, body = value[len(PREFIX):].partition(":")
        try:
            raw = base64.b64decode(body)
        except (binascii.Error, ValueError):
            raise PiiKeyMissing(f"{column}: a sealed value that is not base64") from None
        return self._open(kid, raw[:12], raw[12:], column).decode()

    def open_bytes(self, value: bytes, column: str) -> bytes:
        value = bytes(value)
        if not value.startswith(_BPREFIX):
            return value
        kid = value[len(_BPREFIX):len(_BPREFIX) + 8].decode("ascii", "replace")
        rest = value[len(_BPREFIX) + 9:]
        return self._open(kid, rest[:12], rest[12:], column)

    def _open(self, kid: str, nonce: bytes, sealed: bytes, column: str) -> bytes:
        aead = self._ring.get(kid)
        if aead is None and self.reload():
            aead = self._ring.get(kid)
        if aead is None:
            raise PiiKeyMissing(f"{column}: sealed under key {kid}, which the PII keyring does not hold "
                                f"(it holds {', '.join(self._ring)})")
        try:
            return aead.decrypt(nonce, sealed, column.encode())
        except InvalidTag:
            raise PiiKeyMissing(f"{column}: a sealed value that does not open under key {kid} (altered?)") from None

    def is_current(self, value: str | bytes | None) -> bool:
        """Whether a stored value is sealed under the current key (None: nothing to seal)."""
        if value is None:
            return True
        if isinstance(value, str):
            return value.startswith(self._text_prefix)
        return bytes(value).startswith(self._text_prefix.encode())

    # Lookups

    def lookup(self, identifier: str) -> str:
        """The keyed hash a row is found by: the same for every spelling of one email (case, spaces)."""
        digest = hmac.new(self._lookup, identifier.strip().lower().encode(), hashlib.sha256).hexdigest()
        return HASH_PREFIX + digest


def is_lookup_hash(value: str) -> bool:
    return value.startswith(HASH_PREFIX) and len(value) == len(HASH_PREFIX) + 64


# The keyring's sources


def read_key_file(path: Path) -> KeyFile:
    try:
        ring = msgspec.json.decode(path.read_bytes(), type=KeyFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"PII key file {path} is not readable: {exc}") from None
    if not ring.keys:
        raise ValueError(f"PII key file {path} holds no key")
    return ring


def load_or_create_key_file(path: Path) -> KeyFile:
    """The key file, made with a fresh lookup key and data key on first start (only the first process to start
    keeps its keys; every other one reads them)."""
    if path.is_file():
        return read_key_file(path)
    made = KeyFile(new_key(), [new_key()])
    return made if write_private(path, msgspec.json.encode(made), only_if_absent=True) else read_key_file(path)


def rotate_key_file(path: Path, keep: int = 8) -> tuple[str, str]:
    """Make a new current data key in the key file, keeping the previous ones to read with (the newest `keep`);
    the (old, new) key ids."""
    ring = load_or_create_key_file(path)
    old = key_id(decode_key(ring.keys[0], str(path)))
    fresh = new_key()
    write_private(path, msgspec.json.encode(KeyFile(ring.lookup, [fresh, *ring.keys][:keep])))
    return old, key_id(decode_key(fresh, str(path)))


def drop_old_keys(path: Path, keep_ids: Sequence[str]) -> list[str]:
    """Remove from the key file every data key but the current one and `keep_ids`; the ids removed."""
    ring = read_key_file(path)
    kept = [ring.keys[0]] + [k for k in ring.keys[1:] if key_id(decode_key(k, str(path))) in keep_ids]
    removed = [key_id(decode_key(k, str(path))) for k in ring.keys if k not in kept]
    if removed:
        write_private(path, msgspec.json.encode(KeyFile(ring.lookup, kept)))
    return removed


def keyring(key: str, previous_keys: Sequence[str], lookup_key: str, key_file: Path
            ) -> Callable[[], tuple[list[bytes], bytes]]:
    """Where this node's keys come from: the configured keys when `key` is set, else the key file (plus any
    configured previous keys). Called again to notice a rotation."""
    previous = [decode_key(k, "pii.previous_keys") for k in previous_keys]

    def read() -> tuple[list[bytes], bytes]:
        if key:
            return [decode_key(key, "pii.key"), *previous], decode_key(lookup_key, "pii.lookup_key")
        ring = load_or_create_key_file(key_file)
        keys = [decode_key(k, str(key_file)) for k in ring.keys]
        return keys + [k for k in previous if k not in keys], decode_key(ring.lookup, str(key_file))

    return read


def cipher_from(key: str, previous_keys: Sequence[str], lookup_key: str, key_file: Path) -> PiiCipher:
    read = keyring(key, previous_keys, lookup_key, key_file)
    return PiiCipher(*read(), reload=read)
