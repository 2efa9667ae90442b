"""The SMTP relay against a real SMTP server on loopback: what a refusal means for a retry."""

import asyncio

import pytest
from aiosmtpd.smtp import SMTP

from adapters.smtp.relay import SmtpRelay
from app.channels.ports import RelayError
from app.config import SmtpConfig


class Refusing:
    """Accepts mail, except that it refuses gone@ for good (550) and busy@ for now (450)."""

    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.delivered.extend(envelope.rcpt_tos)
        return "250 accepted"


@pytest.fixture
async def relay():
    handler = Refusing()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield SmtpRelay(SmtpConfig(host="127.0.0.1", port=port, timeout_s=5)), handler
    server.close()
    await server.wait_closed()


MESSAGE = b"From: a@contrail.example\r\nTo: x\r\nSubject: hi\r\n\r\nhello\r\n"


async def test_a_recipient_refused_with_5xx_is_permanent_and_4xx_is_worth_a_retry(relay):
    smtp, handler = relay
    connection = await smtp.connect()
    try:
        await connection.send("a@contrail.example", "kim@example.com", MESSAGE)
        with pytest.raises(RelayError) as gone:
            await connection.send("a@contrail.example", "gone@example.com", MESSAGE)
        assert gone.value.permanent and "550" in gone.value.reason
        with pytest.raises(RelayError) as busy:
            await connection.send("a@contrail.example", "busy@example.com", MESSAGE)
        assert not busy.value.permanent
    finally:
        connection.close()
    assert handler.delivered == ["kim@example.com"]


async def test_a_relay_that_is_not_there_is_a_retryable_error():
    with pytest.raises(RelayError) as refused:
        await SmtpRelay(SmtpConfig(host="127.0.0.1", port=1, timeout_s=2)).connect()
    assert not refused.value.permanent
