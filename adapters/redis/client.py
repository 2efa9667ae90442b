"""One Redis connection pool for a node, and what its failures mean to the domains."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from state.ports import StorageUnavailable

T = TypeVar("T")
log = logging.getLogger("contrail.redis")


class RedisClient:
    """A pool of at most `pool_size` connections; a caller waits up to `timeout_s` for one, and every command
    gives up after `timeout_s`. A command on a connection Redis closed (a restart) is sent once more on a new one;
    anything else that fails is StorageUnavailable (the edges answer 503, the bidder a no-bid)."""

    def __init__(self, url: str, prefix: str, *, timeout_s: float, pool_size: int) -> None:
        self.url = url
        self.prefix = prefix
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=pool_size, timeout=timeout_s, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
        self.redis = aioredis.Redis(connection_pool=pool)
        self.failures = 0  # commands that found Redis unreachable, for the metrics
        self.available = True  # the last command reached Redis (readiness)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def run(self, what: str, call: Awaitable[T]) -> T:
        """Await one command (or pipeline, or script); Redis unreachable or failing is StorageUnavailable."""
        try:
            result = await call
        except ResponseError:
            self.available = True
            raise  # the command's own answer (a script's error reply): the caller decides
        except (RedisError, OSError) as exc:
            self.failures += 1
            if self.available:  # once per outage; the metric counts every refusal
                log.warning("Redis is unavailable", extra={"url": self.url, "command": what,
                                                           "error": f"{type(exc).__name__}: {exc}"})
            self.available = False
            raise StorageUnavailable(f"Redis is unavailable ({what})") from None
        finally:
            # redis-py can swallow a cancellation that arrives mid-command (redis/redis-py#2028): deliver it here,
            # so a cancelled handler or task stops instead of carrying on as if nothing had been asked.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError
        if not self.available:
            log.info("Redis is available again", extra={"url": self.url})
        self.available = True
        return result

    async def close(self) -> None:
        await self.redis.aclose()


def error_named(exc: ResponseError, name: str) -> bool:
    """Whether a script's error reply is ours, `name` (redis.error_reply(name))."""
    return str(exc).startswith(name)


def as_int(value: Any) -> int:
    return int(value) if value is not None else 0
