"""No secret ships in the source: a node makes its own on first start and keeps it; a token must name a real
account; a signature made with a secret anyone could read grants nothing."""

import os
import time

import jwt

from app.main import PLATFORM, create_app
from tests.conftest import ADMIN, bearer, make_config
from tests.integration.retail.helpers import _signed

# What earlier versions shipped as their defaults: published, so worthless as secrets.
OLD_JWT_SECRET = "contrail-development-secret-change-me"
OLD_WEBHOOK_SECRET = "contrail-development-payments-webhook-secret"


def _token(secret: str, sub: str, role: str = "admin") -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "kind": "user", "iat": now, "exp": now + 600}, secret,
                      algorithm="HS256")


async def test_secrets_are_made_on_first_start_kept_private_and_survive_a_restart(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    made = client.app[PLATFORM].config
    assert len(made.auth.jwt_secret) >= 32 and len(made.payments.webhook_secret) >= 32
    assert made.auth.jwt_secret != made.payments.webhook_secret
    secrets_file = tmp_path / "var" / "secrets.json"
    assert os.stat(secrets_file).st_mode & 0o777 == 0o600
    admin = await bearer(client, *ADMIN, "admin")
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))
    assert client.app[PLATFORM].config.auth.jwt_secret == made.auth.jwt_secret
    assert (await client.get("/v1/admin/audit", headers=admin)).status == 200  # the token outlives the restart

    other = await aiohttp_client(create_app(make_config(tmp_path / "other"), clock=clock))
    assert other.app[PLATFORM].config.auth.jwt_secret != made.auth.jwt_secret


async def test_a_token_whose_role_is_not_its_accounts_grants_nothing(client, customer_headers):
    """A token signed with the node's secret but claiming admin for a customer's account is refused."""
    me = await (await client.get("/v1/me", headers=customer_headers)).json()
    forged = _token(client.app[PLATFORM].config.auth.jwt_secret, me["id"], role="admin")
    resp = await client.get("/v1/admin/audit", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status == 401


async def test_a_guest_token_carries_the_guest_role_alone(client, customer_headers):
    """A guest token names no account to check it against: signed with the node's secret but claiming admin, or a
    customer's id and role, it grants nothing."""
    me = await (await client.get("/v1/me", headers=customer_headers)).json()
    secret = client.app[PLATFORM].config.auth.jwt_secret
    now = int(time.time())
    for sub, role in (("gst_forged", "admin"), (me["id"], "customer")):
        forged = jwt.encode({"sub": sub, "role": role, "kind": "guest", "exp": now + 600}, secret, algorithm="HS256")
        resp = await client.get(f"/v1/loyalty/balance/{me['id']}", headers={"Authorization": f"Bearer {forged}"})
        assert resp.status == 401 and "unknown role" in (await resp.json())["error"]["message"]
    guest = (await (await client.post("/v1/auth/guest")).json())["access_token"]
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {guest}"})).status == 200


def test_processes_starting_together_share_the_first_ones_secrets(tmp_path, monkeypatch):
    """Two processes making secrets at once: the one that links its file second reads the first one's."""
    from pathlib import Path

    from app.secrets import FILE_NAME, _load_or_create
    path = tmp_path / FILE_NAME
    first = _load_or_create(path)
    monkeypatch.setattr(Path, "is_file", lambda self: False)  # this process looked before the first one wrote
    assert _load_or_create(path) == first
    assert not list(tmp_path.glob("*.tmp"))


async def test_configured_secrets_are_used_as_they_are(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, auth__jwt_secret="s" * 40, payments__webhook_secret="w" * 40)
    client = await aiohttp_client(create_app(config, clock=clock))
    assert client.app[PLATFORM].config.auth.jwt_secret == "s" * 40
    assert not (tmp_path / "var" / "secrets.json").exists()


async def test_the_old_published_secrets_and_made_up_subjects_grant_nothing(client, admin_headers):
    real = client.app[PLATFORM].account_store.by_email(ADMIN[0])
    for token in (_token(OLD_JWT_SECRET, real.id), _token(client.app[PLATFORM].config.auth.jwt_secret, "usr_nobody")):
        resp = await client.get("/v1/admin/audit", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 401, await resp.text()
    event = {"id": "evt_1", "payment_id": "pay_x", "order_id": "ord_x", "status": "approved"}
    raw, headers = _signed(event, OLD_WEBHOOK_SECRET)
    assert (await client.post("/v1/webhooks/payments", data=raw, headers=headers)).status == 401
    assert (await client.get("/v1/admin/audit", headers=admin_headers)).status == 200
