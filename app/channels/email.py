"""Email through a durable outbox to a mail relay (ports.MailRelay; SMTP in adapters/smtp/relay.py).

A message is written to the outbox before anyone is told it was queued; sender workers (one
pooled relay connection each, paced to `smtp.rate_per_s`) deliver it and mark it sent, with
retries and exponential backoff. After a restart pending messages are sent and sent ones are
not sent again; the Message-ID is the outbox id, so a message is queued once per id.
Every message has a text and an HTML part, RFC 8058 one-click unsubscribe headers, an
open pixel and click redirects; the suppression list is checked when queueing and again
just before sending. Through SendGrid's SMTP relay, the X-SMTPAPI header's unique args
(`contrail_message_id`, `activation_id`) come back on every webhook event for the message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html as html_lib
import json
import logging
import re
from collections.abc import Callable
from email.header import Header
from email.utils import formatdate, parseaddr
from urllib.parse import quote, urlencode

import msgspec

from app import ids
from app.channels.ports import MailConnection, MailRelay, RelayError
from app.channels.suppression import SuppressionService
from app.errors import InvalidInput
from app.runtime.clock import Clock
from state.outbox import EmailEvent, OutboxMessage, email_click
from state.ports import OutboxStore
from state.text import whole

log = logging.getLogger("contrail.channels")


def _base64_lines(text: str) -> str:
    """Base64 of UTF-8 text in 76-character lines (RFC 2045)."""
    encoded = base64.b64encode(text.encode()).decode()
    return "\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
_LINK = re.compile(r'href="(https?://[^"]+)"')
_EMAIL = re.compile(whole(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+"))


class EmailService:
    def __init__(self, smtp, relay: MailRelay, public_base_url: Callable[[], str], secret: str, store: OutboxStore,
                 suppression: SuppressionService,
                 clock: Clock, log_event, metrics=None) -> None:
        self._smtp = smtp
        self._relay = relay
        self._base_url = public_base_url
        self._key = hashlib.sha256(b"contrail email links:" + secret.encode()).digest()
        self._store = store
        self._suppression = suppression
        self._clock = clock
        self._log_event = log_event
        # The outbox table is the queue; memory holds at most smtp.queue_capacity of its messages (bodies included).
        # Past it new messages wait in the table only ("spilled"), and the workers read them back, oldest first,
        # once the memory has room again: a relay that is down for a day cannot fill memory with mail.
        self._queue: asyncio.Queue[OutboxMessage] = asyncio.Queue()
        self._held: set[str] = set()  # ids queued in memory or being sent: at most the capacity
        self._spilled = False         # some pending messages are in the table only
        self._cursor: tuple[float, str] = (0.0, "")  # the last pending message read back
        self._refilling = False
        self._from = parseaddr(smtp.from_address)[1]
        self.sent = 0
        self._cancelled: set[str] = set()  # held messages not to send after all (their customer was erased)

    # ---- signed links ----
    def _sign(self, *parts: str) -> str:
        return hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, token: str, *parts: str) -> bool:
        # As bytes: compare_digest refuses a str that is not ASCII, and a link's token is anything a client sends.
        return hmac.compare_digest(self._sign(*parts).encode(), (token or "").encode("utf-8", "surrogateescape"))

    def unsubscribe_url(self, message: OutboxMessage) -> str:
        query = urlencode({"m": message.id, "t": self._sign("u", message.id)})
        return f"{self._base_url()}/v1/email/unsubscribe?{query}"

    def click_url(self, message_id: str, url: str) -> str:
        query = urlencode({"u": url, "t": self._sign("c", message_id, url)})
        return f"{self._base_url()}/v1/email/click/{message_id}?{query}"

    def _tracked_html(self, message_id: str, html: str, unsubscribe: str) -> str:
        def tracked(m: re.Match[str]) -> str:
            return f'href="{html_lib.escape(self.click_url(message_id, html_lib.unescape(m.group(1))))}"'
        body = _LINK.sub(tracked, html)
        return (f"{body}\n<p style=\"font-size:12px\"><a href=\"{html_lib.escape(unsubscribe)}\">Unsubscribe</a></p>"
                f"\n<img src=\"{self._base_url()}/v1/email/open/{quote(message_id)}.gif\""
                " width=\"1\" height=\"1\" alt=\"\">")

    # ---- queueing ----
    async def enqueue(self, to: str, subject: str, text: str, html: str | None = None, *,
                      activation_id: str | None = None, user_id: str | None = None,
                      message_id: str | None = None, campaign_id: str | None = None) -> OutboxMessage:
        """Queue a message durably; a suppressed address is recorded as suppressed and never sent."""
        to = to.strip()
        if not _EMAIL.match(to) or len(to) > 254:
            raise InvalidInput("to must be an email address")
        if not subject.strip() or len(subject) > 300 or "\n" in subject or "\r" in subject:
            raise InvalidInput("subject must be one line of 1 to 300 characters")
        message_id = message_id or ids.ordered_hex(12, "msg_")
        now = self._clock.now()
        html = html if html is not None else f"<p>{html_lib.escape(text)}</p>"
        draft = OutboxMessage(message_id, to, subject, "", text, now, activation_id, user_id)
        unsubscribe = self.unsubscribe_url(draft)
        message = OutboxMessage(message_id, to, subject, self._tracked_html(message_id, html, unsubscribe),
                                f"{text}\n\nUnsubscribe: {unsubscribe}\n", now, activation_id, user_id,
                                campaign_id=campaign_id)
        if await self._suppression.is_suppressed([to, user_id], "email") is not None:
            message = msgspec.structs.replace(message, state="suppressed")
        if not await self._store.insert(message):
            return await self._store.get(message_id) or message  # already queued under this id
        if message.state == "pending":
            self._hold(message)
        return message

    @property
    def held(self) -> int:
        """Messages in memory: queued, waiting for a retry, or being sent."""
        return len(self._held)

    def _hold(self, message: OutboxMessage) -> None:
        """Queue a pending message in memory, or leave it in the table when memory is at its capacity."""
        if self._spilled or len(self._held) >= self._smtp.queue_capacity:
            if not self._spilled:
                self._spilled, self._cursor = True, (0.0, "")
            return
        self._held.add(message.id)
        self._queue.put_nowait(message)

    def _done(self, message_id: str) -> None:
        self._held.discard(message_id)
        self._cancelled.discard(message_id)

    def cancel(self, message_ids: list[str]) -> None:
        """Never send these queued messages (already marked so in the outbox; those in the table only are not read
        back)."""
        self._cancelled.update(i for i in message_ids if i in self._held)

    async def load(self) -> int:
        """Queue again what was pending when the process stopped (up to the capacity; the rest is read back as the
        queue drains)."""
        self._spilled = True
        return await self._refill()

    async def _refill(self) -> int:
        """Read spilled messages back from the table, oldest first, while memory has room; how many."""
        if self._refilling:
            return 0
        self._refilling = True
        queued = 0
        try:
            while self._spilled:
                room = self._smtp.queue_capacity - len(self._held)
                if room <= 0:
                    break
                page = await self._store.unfinished(self._cursor, room)
                for message in page:
                    self._cursor = (message.created_at, message.id)
                    if message.id not in self._held:
                        self._held.add(message.id)
                        self._queue.put_nowait(message)
                        queued += 1
                if len(page) < room:
                    self._spilled = False  # caught up: every pending message is held
        finally:
            self._refilling = False
        return queued

    # ---- sending ----
    async def run(self) -> None:
        """The sender: `smtp.pool_size` workers, each with its own connection to the relay."""
        await asyncio.gather(*(self._worker() for _ in range(self._smtp.pool_size)))

    async def _worker(self) -> None:
        connection: MailConnection | None = None
        interval = self._smtp.pool_size / self._smtp.rate_per_s
        try:
            while True:
                if self._spilled and len(self._held) <= self._smtp.queue_capacity // 2:
                    await self._refill()
                message = await self._queue.get()
                if message.id in self._cancelled:
                    self._done(message.id)
                    continue
                wait = message.next_attempt_at - self._clock.now()
                if wait > 0:
                    await asyncio.sleep(min(wait, 60))
                if await self._suppression.is_suppressed([message.to, message.user_id], "email") is not None:
                    await self._store.update(msgspec.structs.replace(message, state="suppressed"))
                    self._done(message.id)
                    continue
                try:
                    connection = await self._deliver(connection, message)
                except RelayError as exc:
                    connection = None
                    await self._failed(message, exc)
                    continue
                sent = msgspec.structs.replace(message, state="sent", attempts=message.attempts + 1,
                                           sent_at=self._clock.now())
                await self._store.mark_sent(sent, EmailEvent(f"sent:{message.id}", "sent", self._clock.now(),
                                                             message.id, message.activation_id, message.to))
                self._done(message.id)
                self.sent += 1
                self._log_event("EmailSent", {"message_id": message.id, "activation_id": message.activation_id})
                await asyncio.sleep(interval)
        finally:
            if connection is not None:
                connection.close()

    async def _deliver(self, connection: MailConnection | None, message: OutboxMessage) -> MailConnection:
        if connection is None or not connection.connected:
            connection = await self._relay.connect()
        await connection.send(self._from, message.to, self.mime(message))
        return connection

    def mime(self, message: OutboxMessage) -> bytes:
        """The message as RFC 5322 / MIME bytes: multipart/alternative, text and HTML parts in base64.

        Written directly rather than through the email package's generator, which costs a
        millisecond or more per message and bounded the sender; the structure is fixed and
        every header value is checked to be one line (subject and address are validated when
        queued; a non-ASCII subject is RFC 2047-encoded by email.header).
        """
        subject = message.subject if message.subject.isascii() else Header(message.subject, "utf-8").encode()
        boundary = f"=_contrail_{message.id}"
        headers = [("From", self._smtp.from_address), ("To", message.to), ("Subject", subject),
                   ("Message-ID", f"<{message.id}@contrail>"), ("Date", formatdate(message.created_at, usegmt=True)),
                   ("List-Unsubscribe", f"<{self.unsubscribe_url(message)}>"),
                   ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"), ("MIME-Version", "1.0"),
                   ("Content-Type", f'multipart/alternative; boundary="{boundary}"')]
        unique_args = {"contrail_message_id": message.id}
        if message.activation_id:
            headers.append(("X-Contrail-Activation", message.activation_id))
            unique_args["activation_id"] = message.activation_id
        # SendGrid's SMTP API: these come back as top-level keys of every event (ASCII JSON, one line).
        headers.append(("X-SMTPAPI", json.dumps({"unique_args": unique_args}, separators=(",", ":"))))
        lines = [f"{name}: {value}" for name, value in headers]
        for subtype, body in (("plain", message.text), ("html", message.html)):
            lines += ["", f"--{boundary}", f'Content-Type: text/{subtype}; charset="utf-8"',
                      "Content-Transfer-Encoding: base64", "", _base64_lines(body)]
        lines += ["", f"--{boundary}--", ""]
        return "\r\n".join(lines).encode()

    async def _failed(self, message: OutboxMessage, exc: RelayError) -> None:
        attempts = message.attempts + 1
        # A permanent refusal of the recipient (5xx) is a hard bounce: no retry, and no more mail to them.
        hard_bounce = exc.permanent
        final = hard_bounce or attempts >= self._smtp.max_attempts
        if hard_bounce:
            await self._store.record_event(EmailEvent(f"bounce:{message.id}", "bounce", self._clock.now(), message.id,
                                                      message.activation_id, message.to, {"reason": exc.reason[:200]}))
            await self._suppression.add([(message.to, "email", "hard_bounce", None)])
        retry = msgspec.structs.replace(
            message, attempts=attempts, last_error=exc.reason[:300], state="failed" if final else "pending",
            next_attempt_at=self._clock.now() + self._smtp.retry_backoff_s * 2 ** (attempts - 1))
        await self._store.update(retry)
        log.warning("email not sent", extra={"message_id": message.id, "attempt": attempts, "error": exc.reason[:200]})
        if final:
            self._done(message.id)
        else:
            self._queue.put_nowait(retry)  # still held: it keeps its place in memory for the retry

    # ---- what recipients do ----
    async def record(self, kind: str, message_id: str, **details) -> bool:
        message = await self._store.get(message_id)
        if message is None:
            return False
        event_id = f"{kind}:{message_id}:{ids.token_hex(6)}" if kind in ("open", "click") else f"{kind}:{message_id}"
        recorded = await self._store.record_event(EmailEvent(event_id, kind, self._clock.now(), message_id,
                                                              message.activation_id, message.to, details))
        if recorded and kind == "click" and (click := email_click(message)) is not None:
            self._log_event("EmailClick", click)
        return recorded

    async def unsubscribe(self, message_id: str, token: str) -> str | None:
        """One-click unsubscribe: the address goes on the email suppression list. Returns the address."""
        if not self.check(token, "u", message_id):
            return None
        message = await self._store.get(message_id)
        if message is None:
            return None
        await self._suppression.add([(message.to, "email", "unsubscribe", None)])
        await self.record("unsubscribe", message_id)
        return message.to

