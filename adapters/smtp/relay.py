"""app.channels.ports.MailRelay over SMTP (aiosmtplib): connections with the configured TLS, credentials and
timeouts, and every failure turned into a RelayError that says whether a retry can help."""

from __future__ import annotations

import aiosmtplib

from app.channels.ports import RelayError
from app.config import SmtpConfig
from app.runtime.tracing import outbound

# What a connection, a login or a delivery can fail with; anything else is a bug and is not caught.
_FAILURES = (TimeoutError, aiosmtplib.SMTPException, OSError)


def relay_error(exc: BaseException) -> RelayError:
    """The port's error for an SMTP failure: permanent when the recipient was refused with a 5xx reply.

    sendmail() reports refused recipients together (SMTPRecipientsRefused, one error per address): a
    message to one address is refused permanently when that address's reply was 5xx."""
    refused = exc.recipients if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) else [exc]
    permanent = bool(refused) and all(isinstance(e, aiosmtplib.SMTPRecipientRefused) and e.code >= 500
                                      for e in refused)
    return RelayError(repr(exc), permanent=permanent)


class SmtpConnection:
    """One open SMTP connection (app.channels.ports.MailConnection)."""

    __slots__ = ("_client",)

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self._client = client

    @property
    def connected(self) -> bool:
        return self._client.is_connected

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        try:
            with outbound("smtp send", {"server.address": self._client.hostname or "",
                                        "server.port": self._client.port or 0}):
                await self._client.sendmail(sender, [recipient], message)
        except _FAILURES as exc:
            raise relay_error(exc) from exc

    def close(self) -> None:
        if self._client.is_connected:
            self._client.close()


class SmtpRelay:
    """The configured SMTP relay (`[smtp]`): each connect() opens a new connection."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self.port = config.port

    def use_port(self, port: int) -> None:
        """Send to this port from now on: the embedded sink's, when it was asked for port 0 (app.main)."""
        self.port = port

    async def connect(self) -> SmtpConnection:
        s = self._config
        client = aiosmtplib.SMTP(hostname=s.host, port=self.port, use_tls=s.use_tls, start_tls=s.starttls,
                                 timeout=s.timeout_s)
        try:
            await client.connect()
            if s.username:
                await client.login(s.username, s.password)
        except _FAILURES as exc:
            raise relay_error(exc) from exc
        return SmtpConnection(client)
