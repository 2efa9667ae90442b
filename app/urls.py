"""Where clients reach this node: the configured public URLs, or ones derived from the address the
HTTP server really listens on (so links and notice URLs follow the port, whatever it is)."""

from __future__ import annotations

from collections.abc import Callable

from app.config import Config


def _http_base(host: str, port: int, scheme: str = "http") -> str:
    if host in ("", "0.0.0.0", "::"):  # a wildcard is no address to give out: this machine's loopback is
        host = "127.0.0.1"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class PublicUrls:
    def __init__(self, config: Config) -> None:
        self._links = config.channels.public_base_url.rstrip("/")
        self._notices = config.bidding.notice_base_url.rstrip("/")
        self._scheme = "https" if config.tls.enabled else "http"
        self._derived = _http_base(config.server.host, config.server.port, self._scheme)
        self._listeners: list[Callable[[], None]] = []
        self.bound = False

    def links(self) -> str:
        """The base of the links in customers' email: unsubscribe, click and open tracking."""
        return self._links or self._derived

    def notices(self) -> str:
        """The base of the win, billing and loss notice URLs in bids."""
        return self._notices or self._derived

    def local(self) -> str:
        """Where this node itself listens (for its own demo traffic)."""
        return self._derived

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def listening(self, host: str, port: int) -> None:
        """The HTTP server is bound: derive from where it really is (port 0 picks one at bind time)."""
        self._derived = _http_base(host, port, self._scheme)
        self.bound = True
        for listener in self._listeners:
            listener()
