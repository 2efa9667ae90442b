"""Who is calling: passwords (scrypt), JWTs for people, hashed API keys for partners."""

from __future__ import annotations

import asyncio
import base64
import enum
import functools
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Iterable
from typing import Literal

import jwt
import msgspec

from app.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from app.runtime.clock import Clock
from app.runtime.lru import LRU
from app.sessions import Sessions, key_scope
from state.accounts import EMAIL_PATTERN, Account, EmailTaken
from state.apikeys import ApiKey
from state.ports import AccountStore, ApiKeyStore

UserRole = Literal["customer", "admin"]
KeyRole = Literal["exchange", "partner", "admin"]
USER_ROLES = ("customer", "admin")
KEY_ROLES = ("exchange", "partner", "admin")

# scrypt cost: n=2**14, r=8 (~16 MiB, tens of ms) is the common interactive-login setting.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class Principal(msgspec.Struct, frozen=True):
    """An authenticated caller."""

    kind: Literal["guest", "user", "api_key"]
    id: str
    role: str
    # An API key's: the principal that created it through the API (empty for one the CLI made), whom it acts for
    # where it matters who someone is (a campaign's approvers: app/campaigns/workflow.py).
    owner: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def scope(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def person(self) -> str:
        """Who acts: the principal itself, or for an API key made by someone, whoever made it."""
        return self.owner or self.scope


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.lru_cache(maxsize=4096)
def hash_api_key(plaintext: str) -> str:
    # API keys are 256-bit random secrets, so a plain SHA-256 is a sound lookup hash. An exchange
    # sends its key with every bid request; the hashes of the keys in use are kept (as verified
    # bearer tokens are), which spares each request a SHA-256.
    return hashlib.sha256(plaintext.encode()).hexdigest()


_VERIFIED_CACHE = 50_000


class TokenService:
    """HS256 JWTs for guests, customers and admins."""

    def __init__(self, secret: str, clock: Clock, *, customer_ttl_s: int, guest_ttl_s: int) -> None:
        self._secret = secret
        self._clock = clock
        self._customer_ttl = customer_ttl_s
        self._guest_ttl = guest_ttl_s
        # Tokens whose signature was already checked: token -> (exp, principal). The signature of a
        # given token string never changes, so only the expiry is checked again (on our clock).
        self.verified: LRU[str, tuple[int, Principal]] = LRU(_VERIFIED_CACHE, "verified_tokens")

    def issue(self, principal: Principal) -> tuple[str, int]:
        ttl = self._guest_ttl if principal.kind == "guest" else self._customer_ttl
        now = int(self._clock.now())
        claims = {"sub": principal.id, "role": principal.role, "kind": principal.kind,
                  "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._secret, algorithm="HS256"), ttl

    def verify(self, token: str) -> Principal:
        known = self.verified.get(token)
        if known is not None:
            if known[0] <= self._clock.now():
                self.verified.pop(token)
                raise Unauthenticated("bearer token has expired")
            return known[1]
        principal, exp = self._check(token)
        self.verified.put(token, (exp, principal))
        return principal

    def _check(self, token: str) -> tuple[Principal, int]:
        if not token.isascii():  # a JWT is ASCII; a header of other bytes arrives with lone surrogates
            raise Unauthenticated("invalid bearer token: not a JWT")
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"],
                                options={"require": ["sub", "role", "exp"], "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid bearer token: {exc}") from None
        # Expiry is checked against the injectable clock, not the wall clock.
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self._clock.now():
            raise Unauthenticated("bearer token has expired")
        kind = claims.get("kind", "user")
        # A guest token names no account (nothing to check it against), so it may carry the guest role alone.
        if kind not in ("guest", "user") or claims["role"] not in ("guest", *USER_ROLES) or \
                (kind == "guest") != (claims["role"] == "guest"):
            raise Unauthenticated("bearer token has an unknown role")
        return Principal(kind, str(claims["sub"]), claims["role"]), claims["exp"]


class AccountService:
    """Accounts and logins."""

    def __init__(self, accounts: AccountStore, tokens: TokenService, clock: Clock) -> None:
        self._accounts = accounts
        self._tokens = tokens
        self._clock = clock

    async def create_user(self, email: str, password: str, role: str) -> Account:
        email = email.strip().lower()
        if not 3 <= len(email) <= 254 or not re.match(EMAIL_PATTERN, email):
            raise InvalidInput("email must be an address like name@example.com", {"field": "email"})
        if not 8 <= len(password) <= 256:
            raise InvalidInput("password must be 8 to 256 characters", {"field": "password"})
        if role not in USER_ROLES:
            raise InvalidInput(f"role must be one of {', '.join(USER_ROLES)}", {"field": "role"})
        if await self.by_email(email) is not None:  # the store's unique index decides again at the write
            raise Conflict("an account with this email already exists")
        # scrypt is deliberately slow; keep it off the event loop.
        password_hash = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
        account = Account(f"usr_{uuid.uuid4().hex}", email, password_hash, role, self._clock.now())
        try:
            await self._accounts.add(account)
        except EmailTaken:
            raise Conflict("an account with this email already exists") from None
        return account

    async def login(self, email: str, password: str) -> tuple[str, int, Account]:
        email = email.strip().lower()
        account = await self.by_email(email)
        # Hash even for unknown emails so timing does not reveal which accounts exist.
        stored = account.password_hash if account else _DUMMY_HASH
        ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, password, stored)
        if account is None or not ok:
            raise Unauthenticated("email or password is wrong")
        token, ttl = self._tokens.issue(Principal("user", account.id, account.role))
        return token, ttl, account

    def guest(self) -> tuple[str, int, Principal]:
        principal = Principal("guest", f"gst_{uuid.uuid4().hex}", "guest")
        token, ttl = self._tokens.issue(principal)
        return token, ttl, principal

    def get(self, account_id: str) -> Account | None:
        """The account if memory holds it; None may mean only that it was not used lately (fetch reads it)."""
        return self._accounts.get(account_id)

    async def fetch(self, account_id: str) -> Account | None:
        """The account, from memory or else read from the store (not used lately, or opened on another node or by
        the CLI) and held."""
        return self._accounts.get(account_id) or await self._accounts.fetch(account_id)

    async def by_email(self, email: str) -> Account | None:
        """The account of this email, from memory or else read from the store and held."""
        email = email.strip().lower()
        return self._accounts.by_email(email) or await self._accounts.fetch_by_email(email)


_DUMMY_HASH = hash_password(secrets.token_hex(8))


class ApiKeyService:
    """Create, authenticate and revoke API keys; revoking one ends the streams open with it (`sessions`)."""

    def __init__(self, keys: ApiKeyStore, clock: Clock, sessions: Sessions | None = None) -> None:
        self._keys = keys
        self._clock = clock
        self.sessions = Sessions() if sessions is None else sessions  # the websockets and gRPC streams open with each
        # Hashes recently looked up and not found: a flood of bad keys costs no database reads.
        self.unknown: LRU[str, float] = LRU(10_000, "unknown_api_keys")

    async def create(self, name: str, role: str, created_by: str = "") -> tuple[ApiKey, str]:
        """Create a key; the plaintext is returned once and never stored. `created_by`: the person the key acts for
        (Principal.person of whoever asked for it; empty from the CLI)."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidInput("name must be 1 to 100 characters", {"field": "name"})
        if role not in KEY_ROLES:
            raise InvalidInput(f"role must be one of {', '.join(KEY_ROLES)}", {"field": "role"})
        plaintext = f"ck_{secrets.token_urlsafe(32)}"
        key = ApiKey(f"key_{uuid.uuid4().hex[:16]}", name, role, hash_api_key(plaintext), self._clock.now(),
                     created_by=created_by)
        await self._keys.add(key)
        return key, plaintext

    def known(self, plaintext: str) -> Principal | None:
        """The caller of a live key already in memory; None when only authenticate() can tell."""
        if not plaintext.isascii():
            return None
        key = self._keys.by_hash(hash_api_key(plaintext))
        return None if key is None or key.revoked_at is not None else \
            Principal("api_key", key.id, key.role, key.created_by)

    async def authenticate(self, plaintext: str) -> Principal:
        if not plaintext.isascii():  # keys are ASCII; a header of other bytes arrives with lone surrogates
            raise Unauthenticated("unknown or revoked API key")
        key_hash = hash_api_key(plaintext)
        key = self._keys.by_hash(key_hash)
        if key is None:
            key = await self._lookup(key_hash)
        if key is None or key.revoked_at is not None:
            raise Unauthenticated("unknown or revoked API key")
        return Principal("api_key", key.id, key.role, key.created_by)

    async def _lookup(self, key_hash: str) -> ApiKey | None:
        """A key created by the CLI while the server runs is found in SQLite on first use."""
        now = time.monotonic()
        if now - self.unknown.get(key_hash, -60.0) < 5.0:
            return None
        key = await self._keys.fetch_by_hash(key_hash)
        if key is None or key.revoked_at is not None:  # memory holds live keys only: a revoked one is read here
            self.unknown.put(key_hash, now)
        return key

    async def page(self, after: tuple[float, str] | None, limit: int) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first: in (created_at, id) order after that position."""
        return await self._keys.page(after, limit)

    def list(self) -> list[ApiKey]:
        """The keys that work, oldest first."""
        return self._keys.live()

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key: it stops authenticating at once, and the websockets and gRPC streams opened with it end."""
        key = await self._keys.revoke(key_id, self._clock.now())
        if key is None:
            raise NotFound(f"no API key {key_id}")
        self.sessions.revoke(key_scope(key.id))
        return key

    def revoked_elsewhere(self, key_ids: Iterable[str]) -> None:
        """Another node revoked these keys (the store has read them back): end the streams open here with them."""
        for key_id in key_ids:
            self.sessions.revoke(key_scope(key_id))


class _Undecided(enum.Enum):
    UNDECIDED = "undecided"


UNDECIDED = _Undecided.UNDECIDED  # Authenticator.identify_now: only identify() can tell (it may read the store)


class Authenticator:
    """Who is calling, from the credentials any protocol carries: an API key, or a bearer token."""

    def __init__(self, api_keys: ApiKeyService, tokens: TokenService, accounts: AccountService) -> None:
        self._api_keys = api_keys
        self._tokens = tokens
        self._accounts = accounts

    @property
    def sessions(self) -> Sessions:
        """The long-lived connections by the credential they were opened with (ended when it is revoked)."""
        return self._api_keys.sessions

    def identify_now(self, api_key: str | None, authorization: str | None) -> Principal | None | _Undecided:
        """identify() without a coroutine for what memory answers (every request carries credentials)."""
        if api_key is not None:
            return self._api_keys.known(api_key) or UNDECIDED
        if authorization is None:
            return None
        principal = self._verified(authorization)
        account = self._accounts.get(principal.id) if principal.kind == "user" else None
        if principal.kind == "user" and account is None:
            return UNDECIDED  # an account memory does not hold (not used lately): identify() reads it
        return self._checked(principal, account)

    async def identify(self, api_key: str | None, authorization: str | None) -> Principal | None:
        """The caller, None when no credentials were sent; Unauthenticated when they are wrong."""
        if api_key is not None:
            return await self._api_keys.authenticate(api_key)
        if authorization is None:
            return None
        principal = self._verified(authorization)
        return self._checked(principal, await self._accounts.fetch(principal.id) if principal.kind == "user"
                             else None)

    def _verified(self, authorization: str) -> Principal:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization must be 'Bearer <token>'")
        return self._tokens.verify(token.strip())

    @staticmethod
    def _checked(principal: Principal, account: Account | None) -> Principal:
        # A signature alone is not enough: the account must exist (a leaked or guessed secret
        # cannot mint an admin out of nothing, and a deleted account's tokens stop working).
        if principal.kind == "user" and (account is None or account.role != principal.role):
            raise Unauthenticated("bearer token names no account with that role")
        return principal


def require_role(principal: Principal | None, *roles: str) -> Principal:
    """Raise 401/403 unless the caller has one of `roles`."""
    if principal is None:
        raise Unauthenticated("this endpoint needs a bearer token or an X-Api-Key")
    if principal.role not in roles:
        raise Forbidden(f"this endpoint needs role {' or '.join(roles)}")
    return principal
