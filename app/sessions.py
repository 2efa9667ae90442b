"""Long-lived connections (websockets, gRPC streams) by the credential they authenticated with, so that revoking an
API key ends the connections opened with it, not only the requests made with it afterwards.

Credentials are checked when a connection opens (the websocket's upgrade, the gRPC call's start); a connection
opened with an API key is held here under the key's scope (`api_key:<id>`) until it ends, and
ApiKeyService.revoke (and the notice of a key another node revoked) ends every connection held under it: each
connection says how it is ended (a websocket closes with 1008, a gRPC stream ends UNAUTHENTICATED).

What is held is one entry per open connection, released when it ends; a scope whose last connection ended is
forgotten. The scopes revoked lately (a bounded few) are remembered too, so a connection authenticated just before
a revocation and held just after it is refused (the middleware's and the guard's key lookups may await a read).
Unary calls and REST requests are never held: they are checked as they come, and end soon.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily

from app.errors import Unauthenticated

log = logging.getLogger("contrail.sessions")

KEY_REVOKED = "API key revoked"  # the reason a connection opened with a revoked key is given
_RECENTLY_REVOKED = 1024  # scopes remembered after their revocation (a revoked key never authenticates again)
PROTOCOLS = ("websocket", "grpc")


def key_scope(key_id: str) -> str:
    """The scope a connection opened with API key `key_id` is held under (Principal.scope)."""
    return f"api_key:{key_id}"


class Sessions:
    """Open long-lived connections by the scope they authenticated as."""

    def __init__(self) -> None:
        # scope -> connection number -> (protocol, how to end it)
        self._held: dict[str, dict[int, tuple[str, Callable[[str], None]]]] = {}
        self._numbers = itertools.count()
        self._open = dict.fromkeys(PROTOCOLS, 0)
        self._revoked: OrderedDict[str, None] = OrderedDict()

    @contextlib.contextmanager
    def held(self, scope: str, protocol: str, end: Callable[[str], None]) -> Iterator[None]:
        """Hold a connection under `scope` while the block runs; `end(reason)` is called (at most once, on the event
        loop, and must not block) if the scope is revoked meanwhile. Unauthenticated if it was revoked lately."""
        if scope in self._revoked:
            raise Unauthenticated("unknown or revoked API key")
        number = next(self._numbers)
        self._held.setdefault(scope, {})[number] = (protocol, end)
        self._open[protocol] += 1
        try:
            yield
        finally:
            connections = self._held.get(scope)
            if connections is not None and connections.pop(number, None) is not None:
                self._open[protocol] -= 1
                if not connections:
                    del self._held[scope]

    def revoke(self, scope: str, reason: str = KEY_REVOKED) -> int:
        """End every connection held under `scope` (its credential was revoked); how many were."""
        self._revoked[scope] = None
        self._revoked.move_to_end(scope)
        while len(self._revoked) > _RECENTLY_REVOKED:
            self._revoked.popitem(last=False)
        connections = self._held.pop(scope, {})
        for protocol, end in connections.values():
            self._open[protocol] -= 1
            try:
                end(reason)
            except Exception:  # one connection that cannot be told must not keep the others open
                log.exception("could not end a connection whose credential was revoked", extra={"scope": scope})
        if connections:
            log.info("ended the connections opened with a revoked credential",
                     extra={"scope": scope, "connections": len(connections)})
        return len(connections)

    def count(self, protocol: str | None = None) -> int:
        """Connections held, of one protocol or all."""
        return self._open[protocol] if protocol is not None else sum(self._open.values())

    def collector(self) -> _SessionsCollector:
        """A Prometheus collector of the connections held, by protocol (register it on a registry)."""
        return _SessionsCollector(self)


class _SessionsCollector:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("contrail_key_streams", "Open websockets and gRPC streams opened with an API key "
                                   "(ended when the key is revoked), by protocol", labels=["protocol"])
        for protocol in PROTOCOLS:
            family.add_metric([protocol], float(self._sessions.count(protocol)))
        yield family
