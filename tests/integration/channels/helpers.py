"""Shared set-up for the channel tests: someone else's SMTP relay on loopback, and an activation through the API."""

import asyncio
import email
from email import policy

from aiosmtpd.smtp import SMTP

from bench.server import free_port


class Relay:
    """Someone else's SMTP relay: aiosmtpd on loopback, keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.port = free_port()
        self.server = None

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    async def start(self):
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(self, hostname="relay"), "127.0.0.1", self.port)
        return self

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()

    async def wait_for(self, count: int, timeout: float = 5.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return self.messages


async def activate(client, staff, user_id="lia", **extra):
    body = {"user_id": user_id, "subject": "Your Lisbon weekend", "text": "Fly to Lisbon from $49.",
            "html": '<p>Fly to <a href="https://fly.contrail.example/lis?x=1&amp;y=2">Lisbon</a></p>', **extra}
    resp = await client.post("/v1/channels/activate", json=body, headers=staff)
    assert resp.status == 201, await resp.text()
    return await resp.json()
