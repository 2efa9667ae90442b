"""Sign-in: guest tokens, customer/admin tokens, self-service customer accounts."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from app.auth import AccountService
from handlers.rest.common import endpoint, json_response
from state.accounts import EMAIL_PATTERN

# A new account's address, as the CLI's create-user checks it too.
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=EMAIL_PATTERN,
                                    extra_json_schema={"format": "email"})]
# Signing in takes the address as it was registered; anything else is simply not an account (401).
LoginEmail = Annotated[str, msgspec.Meta(min_length=3, max_length=254, extra_json_schema={"format": "email"})]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: LoginEmail
    password: Password


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=256)]


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    role: str
    subject: str


class AccountView(msgspec.Struct):
    id: str
    email: str
    role: str
    created_at: float


class Me(msgspec.Struct):
    kind: str
    id: str
    role: str


class AuthApi:
    """Guest tokens, sign-in, self-service customer accounts, and who the caller is."""

    def __init__(self, accounts: AccountService) -> None:
        self._accounts = accounts

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/auth/guest", self.guest)
        router.add_post("/v1/auth/token", self.token)
        router.add_post("/v1/accounts", self.register_account)
        router.add_get("/v1/me", self.me)

    @endpoint("Get a guest token (browsing, searching)", tags=("auth",), response=TokenResponse, credentials=True)
    async def guest(self, request: web.Request, principal) -> web.Response:
        token, ttl, who = self._accounts.guest()
        return json_response(TokenResponse(token, "Bearer", ttl, who.role, who.id))

    @endpoint("Exchange email and password for a bearer token", tags=("auth",), body=TokenRequest,
              response=TokenResponse, errors=(401,), credentials=True)
    async def token(self, request: web.Request, principal, body: TokenRequest) -> web.Response:
        access, ttl, account = await self._accounts.login(body.email, body.password)
        return json_response(TokenResponse(access, "Bearer", ttl, account.role, account.id))

    @endpoint("Open a customer account", tags=("auth",), body=RegisterRequest, response=AccountView, status=201,
              errors=(409,))
    async def register_account(self, request: web.Request, principal, body: RegisterRequest) -> web.Response:
        account = await self._accounts.create_user(body.email, body.password, "customer")
        return json_response(AccountView(account.id, account.email, account.role, account.created_at), status=201)

    @endpoint("Who am I: the caller as the server sees it", tags=("auth",),
              roles=("guest", "customer", "admin", "exchange", "partner"), response=Me)
    async def me(self, request: web.Request, principal) -> web.Response:
        return json_response(Me(principal.kind, principal.id, principal.role))
