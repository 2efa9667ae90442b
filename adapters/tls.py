"""The TLS contexts every connection of this process uses, built from `[tls]` with the standard library's ssl.

Servers: HTTP (HTTP/1.1) and gRPC (HTTP/2, asking callers for certificates when `client_ca_file` is set) share one
certificate; `ServerTls.reload()` reads the files again for new connections. Clients: one context for outbound
HTTP and one for outbound gRPC, trusting `outbound_ca_file` (or the system's store) and presenting
`outbound_cert_file` when set. Outbound HTTP sessions are opened by many adapters at their first call, so the
context they use is the process's one (`configure_outbound`), as every outbound client trusts the same CAs.
"""

from __future__ import annotations

import ssl

from app.config import TlsConfig

_GRPC_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"  # what grpclib's own client context allows


def _no_password() -> bytes:
    return b""  # a passphrase-protected key fails to load instead of prompting on a terminal


def _server_context(tls: TlsConfig, alpn: str, client_certs: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    if client_certs and tls.client_ca_file:
        ctx.load_verify_locations(tls.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    if alpn == "h2":
        ctx.set_ciphers(_GRPC_CIPHERS)  # HTTP/2 (RFC 7540 9.2.2) forbids the rest
    ctx.set_alpn_protocols([alpn])
    return ctx


class ServerTls:
    """The HTTP and gRPC servers' contexts (from `tls.cert_file`, when set)."""

    def __init__(self, tls: TlsConfig) -> None:
        self._tls = tls
        self.http = _server_context(tls, "http/1.1", client_certs=False)
        self.grpc = _server_context(tls, "h2", client_certs=True)

    def reload(self) -> None:
        """Read the certificate, key and client CA files again: new handshakes use them, open connections keep
        theirs. A CA once trusted stays trusted until a restart (OpenSSL only adds to a store)."""
        _server_context(self._tls, "h2", client_certs=True)  # a bad file raises here, before either context changes
        for ctx in (self.http, self.grpc):
            ctx.load_cert_chain(self._tls.cert_file, self._tls.key_file, password=_no_password)
        if self._tls.client_ca_file:
            self.grpc.load_verify_locations(self._tls.client_ca_file)


def client_context(tls: TlsConfig, *, grpc: bool = False) -> ssl.SSLContext:
    """What an outbound client trusts and presents: servers are verified, host name included."""
    ctx = ssl.create_default_context(cafile=tls.outbound_ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.outbound_cert_file:
        ctx.load_cert_chain(tls.outbound_cert_file, tls.outbound_key_file, password=_no_password)
    if grpc:
        ctx.set_ciphers(_GRPC_CIPHERS)
        ctx.set_alpn_protocols(["h2"])
    return ctx


def grpc_client_ssl(tls: TlsConfig) -> ssl.SSLContext | None:
    """The remote ranker's and SyncValue's channel context; None: plaintext (`tls.outbound_grpc` off)."""
    return client_context(tls, grpc=True) if tls.outbound_grpc else None


class _Outbound:
    context: ssl.SSLContext | None = None


def configure_outbound(tls: TlsConfig) -> None:
    """Set what this process's outbound HTTP sessions trust and present (create_app does, from `[tls]`)."""
    default = not (tls.outbound_ca_file or tls.outbound_cert_file)
    _Outbound.context = None if default else client_context(tls)


def http_client_ssl() -> ssl.SSLContext | bool:
    """The `ssl=` of an outbound aiohttp connector: the configured context, else True (aiohttp's default: verify
    against the system's store). Applies to https:// URLs only."""
    return _Outbound.context or True

