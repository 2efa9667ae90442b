"""Push, SMS and paid-media providers reached over HTTP: POST JSON to a configured URL, with a timeout and
retries with backoff on connection errors and 5xx answers. An empty URL means the channel has no sender."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from adapters.tls import http_client_ssl
from app.channels.ports import ProviderError
from app.runtime.tracing import http_trace_configs

log = logging.getLogger("contrail.channels")


class HttpAdaptors:
    """app.channels.ports.Providers over HTTP."""

    def __init__(self, config) -> None:
        self._urls = {"push": config.push_url, "sms": config.sms_url, "paid_media": config.paid_media_url}
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._attempts = config.max_attempts
        self._session: aiohttp.ClientSession | None = None

    def configured(self, channel: str) -> bool:
        return bool(self._urls.get(channel))

    async def send(self, channel: str, payload: dict) -> str:
        """Deliver to the channel's provider; returns the provider's message id."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trace_configs=http_trace_configs(),
                                                  connector=aiohttp.TCPConnector(ssl=http_client_ssl()))
        url = self._urls[channel]
        error = "not attempted"
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            try:
                async with self._session.post(url, json=payload) as resp:
                    if resp.status < 300:
                        body = await resp.json(content_type=None)
                        return str((body or {}).get("id") or payload["activation_id"])
                    error = f"HTTP {resp.status}"
                    if resp.status < 500:
                        break  # the provider refused this message: retrying will not help
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                error = repr(exc)[:200]
        log.warning("provider did not take the message", extra={"channel": channel, "error": error})
        raise ProviderError(f"{channel} provider: {error}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
