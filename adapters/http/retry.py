"""The one way Contrail calls a campaign team's tool over HTTP: a deadline for the whole call, retries with exponential
backoff and jitter on connection errors, timeouts, 429 (its Retry-After honoured) and 5xx, never on another 4xx, and
a typed IntegrationError when it gives up that says what the tool said.

Every attempt reports one outcome through `on_attempt(tool, outcome)` so the caller can count them in its metrics:
"ok" (the tool answered 2xx), "retry" (it failed and will be tried again), "failed" (it failed and the call gives up:
a refusal, attempts spent or the deadline passed)."""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from yarl import URL

from adapters.tls import http_client_ssl
from app.runtime.tracing import http_trace_configs
from state.integrations import IntegrationError

log = logging.getLogger("contrail.integrations")

OnAttempt = Callable[[str, str], None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries. `deadline_s` bounds the whole call, waits included; `attempt_timeout_s` bounds one
    attempt (the remaining deadline when None). A Retry-After longer than `max_retry_after_s`, or than what is left of
    the deadline, ends the call rather than waiting past it."""

    attempts: int = 3
    deadline_s: float = 10.0
    attempt_timeout_s: float | None = None
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    jitter: float = 0.5  # the share of each backoff delay drawn at random: 0.5 waits between 50% and 100% of it
    max_retry_after_s: float = 60.0


@dataclass
class Answer:
    """A 2xx answer: its status, headers and body (parsed JSON, or None when empty)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


def backoff_delay(policy: RetryPolicy, retry: int, rand: Callable[[], float] = random.random) -> float:
    """The wait before retry number `retry` (1-based): base * 2^(retry-1), capped, with its jitter share at random."""
    delay = min(policy.max_delay_s, policy.base_delay_s * 2 ** (retry - 1))
    return delay * (1.0 - policy.jitter + policy.jitter * rand())


def retry_after_s(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Retry-After as seconds: either delay-seconds or an HTTP-date (RFC 9110 §10.2.3); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def describe_error(body: Any, text: str) -> str:
    """What the tool said, from the error shapes the tools use: Jira's errorMessages/errors, Asana's errors list,
    Power BI's error.message, OAuth's error/error_description, problem details' title/detail, a plain message; else
    the start of the text."""
    if isinstance(body, dict):
        parts: list[str] = []
        messages = body.get("errorMessages")
        if isinstance(messages, list):
            parts += [str(m) for m in messages]
        errors = body.get("errors")
        if isinstance(errors, dict):
            parts += [f"{k}: {v}" for k, v in errors.items()]
        elif isinstance(errors, list):
            parts += [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
        error = body.get("error")
        if isinstance(error, dict):
            parts.append(str(error.get("message") or error.get("code") or error))
        elif isinstance(error, str):
            parts.append(error)
        for key in ("error_description", "title", "message", "detail"):  # OAuth, RFC 9457 problem details, plain
            if isinstance(body.get(key), str) and body[key] not in parts:
                parts.append(body[key])
        if parts:
            return "; ".join(parts)[:500]
    return text.strip()[:300] or "no details"


def _report(on_attempt: OnAttempt | None, tool: str, outcome: str) -> None:
    if on_attempt is not None:
        try:
            on_attempt(tool, outcome)
        except Exception:  # a metrics callback must not turn a delivered call into a failed one
            log.exception("on_attempt callback failed", extra={"tool": tool})


async def call(session: aiohttp.ClientSession, method: str, url: str, *, tool: str,
               policy: RetryPolicy = RetryPolicy(), json: Any = None, params: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None,
               on_attempt: OnAttempt | None = None, sleep: Sleep = asyncio.sleep,
               rand: Callable[[], float] = random.random,
               before_attempt: Callable[[], Awaitable[None]] | None = None) -> Answer:
    """One call to a tool, retried as the policy says; returns the 2xx answer or raises IntegrationError.
    `before_attempt` is awaited before every attempt, retries included (a rate limiter's acquire); the time it
    takes does not count against the deadline."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + policy.deadline_s
    status: int | None = None
    for attempt in range(1, max(1, policy.attempts) + 1):
        if before_attempt is not None:
            waited_from = loop.time()
            await before_attempt()
            ends += loop.time() - waited_from  # waiting for a rate limit's turn is not the tool being slow
        remaining = ends - loop.time()
        if remaining <= 0:
            _report(on_attempt, tool, "failed")
            raise IntegrationError(tool, f"no answer within the {policy.deadline_s:g} s deadline", status)
        limit = remaining if policy.attempt_timeout_s is None else min(remaining, policy.attempt_timeout_s)
        wait: float | None = None
        try:
            async with asyncio.timeout(limit):
                async with session.request(method, url, json=json, params=params, headers=headers) as resp:
                    status = resp.status
                    text = await resp.text(errors="replace")
                    body = _parse(text)
                    if resp.status < 300:
                        if body is _INVALID:
                            _report(on_attempt, tool, "failed")
                            raise IntegrationError(tool, f"answered {text[:100]!r}, not JSON", resp.status)
                        _report(on_attempt, tool, "ok")
                        return Answer(resp.status, dict(resp.headers), body)
                    said = describe_error(None if body is _INVALID else body, text)
                    retryable = resp.status == 429 or resp.status >= 500
                    if resp.status == 429 or resp.status == 503:
                        wait = retry_after_s(resp.headers.get("Retry-After"))
                    error = f"{method} {_path(url)} answered {resp.status}: {said}"
        except TimeoutError:
            retryable, status, error = True, None, f"{method} {_path(url)} did not answer within {limit:.3g} s"
        except aiohttp.ClientError as exc:
            retryable, status, error = True, None, f"{method} {_path(url)} failed: {exc!r}"[:300]
        if not retryable:
            _report(on_attempt, tool, "failed")
            raise IntegrationError(tool, error, status)
        if attempt >= policy.attempts:
            _report(on_attempt, tool, "failed")
            tries = f"{attempt} attempt{'' if attempt == 1 else 's'}"
            raise IntegrationError(tool, f"gave up after {tries}; last: {error}", status)
        delay = backoff_delay(policy, attempt, rand) if wait is None else wait
        if wait is not None and wait > policy.max_retry_after_s:
            _report(on_attempt, tool, "failed")
            raise IntegrationError(tool, f"asked to retry after {wait:g} s, longer than we wait; last: {error}", status)
        if delay >= ends - loop.time():
            _report(on_attempt, tool, "failed")
            raise IntegrationError(tool, f"the next try (in {delay:.3g} s) would pass the {policy.deadline_s:g} s "
                                         f"deadline; last: {error}", status)
        _report(on_attempt, tool, "retry")
        log.info("retrying a tool", extra={"tool": tool, "attempt": attempt, "delay_s": round(delay, 3),
                                            "error": error})
        await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


_INVALID: Any = object()


def _parse(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return jsonlib.loads(text)
    except ValueError:
        return _INVALID


def _path(url: str) -> str:
    """The URL without its scheme and host, so messages and logs carry no credentials put in a URL."""
    return URL(url).path if "://" in url else url


class ToolClient:
    """What every tool adaptor shares: one lazily created ClientSession, the retry policy, the metrics callback and
    `close()`. Subclasses call `self._call(method, path, ...)` with a path under `base_url`."""

    tool = "tool"

    def __init__(self, base_url: str, *, policy: RetryPolicy | None = None, on_attempt: OnAttempt | None = None,
                 sleep: Sleep | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.on_attempt = on_attempt
        self._sleep: Sleep = sleep or asyncio.sleep
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    async def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None,
                    headers: Mapping[str, str] | None = None, policy: RetryPolicy | None = None,
                    before_attempt: Callable[[], Awaitable[None]] | None = None) -> Answer:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=http_client_ssl()),
                                                  trace_configs=http_trace_configs())
        merged = self._headers()
        merged.update(headers or {})
        return await call(self._session, method, self.base_url + path, tool=self.tool, policy=policy or self.policy,
                          json=json, params=params, headers=merged, on_attempt=self.on_attempt,
                          sleep=self._sleep, before_attempt=before_attempt)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
