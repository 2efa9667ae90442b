"""Who a verified client certificate is: `tls.client_principals` maps its subject CN to a role or an API key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.auth import ApiKeyService, Principal
from app.errors import Unauthenticated


class CertificatePrincipals:
    """A CN mapped to a role is the caller "cert:<CN>" with that role (an API key's kind, so rate limits and audit
    treat it as a partner's key); a CN mapped to an API key's id is that key, and stops working when it is revoked."""

    def __init__(self, mapping: Mapping[str, str], api_keys: ApiKeyService) -> None:
        self._mapping = dict(mapping)
        self._api_keys = api_keys

    def __bool__(self) -> bool:
        return bool(self._mapping)

    def principal(self, common_name: str) -> Principal:
        """The caller a certificate with this CN (already verified against tls.client_ca_file) authenticates."""
        who = self._mapping.get(common_name)
        if who is None:
            raise Unauthenticated(f"client certificate CN={common_name!r} is not in tls.client_principals; "
                                  "send an API key as x-api-key metadata")
        if not who.startswith("key_"):
            return Principal("api_key", f"cert:{common_name}", who)
        key = next((k for k in self._api_keys.list() if k.id == who), None)
        if key is None or key.revoked_at is not None:
            raise Unauthenticated(f"client certificate CN={common_name!r} maps to API key {who}, which is unknown "
                                  "or revoked")
        return Principal("api_key", key.id, key.role, key.created_by)


def peer_common_name(cert: Mapping[str, Any] | None) -> str | None:
    """The subject CN of a verified peer certificate (ssl.SSLSocket.getpeercert()); None without one."""
    for rdn in (cert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None
