"""An SMTP sink on loopback (aiosmtpd) so `make run` shows sent mail without any outside server."""

from __future__ import annotations

import asyncio
import email
from collections import OrderedDict
from email import policy

from aiosmtpd.smtp import SMTP


class Mailbox:
    """What the sink received, newest last, one entry per Message-ID (a resend is not a second mail)."""

    def __init__(self, limit: int = 1000) -> None:
        self._messages: OrderedDict[str, dict] = OrderedDict()
        self._limit = limit
        self.received = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        message_id = str(parsed.get("Message-ID", "")) or f"<anon-{self.received}>"
        self.received += 1
        self._messages[message_id] = {
            "message_id": message_id, "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
            "subject": str(parsed.get("Subject", "")), "headers": {k: str(v) for k, v in parsed.items()},
            "text": (parsed.get_body(("plain",)) or parsed).get_content() if parsed.is_multipart() else parsed.get_content(),
            "html": (parsed.get_body(("html",)).get_content() if parsed.is_multipart() and parsed.get_body(("html",))
                     else None)}
        while len(self._messages) > self._limit:
            self._messages.popitem(last=False)
        return "250 Message accepted for delivery"

    def messages(self) -> list[dict]:
        return list(self._messages.values())


async def start_sink(host: str, port: int, mailbox: Mailbox) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(mailbox, hostname="contrail-sink"), host, port)
