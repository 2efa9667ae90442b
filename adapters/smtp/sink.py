"""An SMTP sink on loopback (aiosmtpd) so `make run` shows sent mail without any outside server."""

from __future__ import annotations

import asyncio
import email
import logging
import re
from email import policy

from aiosmtpd.smtp import SMTP

from app.runtime.lru import LRU


class Mailbox:
    """What the sink received, newest last, one entry per Message-ID (a resend is not a second mail).

    Messages are kept raw and parsed only when someone looks, so receiving stays cheap.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.raw: LRU[bytes, tuple[str, list[str], bytes]] = LRU(limit, "mailbox")
        self.received = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        match = _MESSAGE_ID.search(content[:8192])
        key = match.group(1) if match else f"anon-{self.received}".encode()
        self.received += 1
        self.raw.put(key, (envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"

    def messages(self, limit: int = 50) -> list[dict]:
        """The newest `limit` messages, oldest of them first."""
        newest = [mail for _, mail in self.raw.items()][-limit:] if limit > 0 else []
        return [_parsed(mail_from, rcpt_tos, content) for mail_from, rcpt_tos, content in newest]


_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)


def _parsed(mail_from: str, rcpt_tos: list[str], content: bytes) -> dict:
    parsed = email.message_from_bytes(content, policy=policy.default)
    plain = parsed.get_body(("plain",)) if parsed.is_multipart() else parsed
    html = parsed.get_body(("html",)) if parsed.is_multipart() else None
    return {"message_id": str(parsed.get("Message-ID", "")), "from": mail_from, "to": rcpt_tos,
            "subject": str(parsed.get("Subject", "")), "headers": {k: str(v) for k, v in parsed.items()},
            "text": plain.get_content() if plain is not None else "",
            "html": html.get_content() if html is not None else None}


async def start_sink(host: str, port: int, mailbox: Mailbox) -> asyncio.Server:
    # aiosmtpd logs every SMTP command at INFO; that is a line per command per message.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(mailbox, hostname="contrail-sink"), host, port)
