"""What the channels domain needs from the outside: the providers that deliver push, SMS and paid media,
and the mail relay email goes through."""

from __future__ import annotations

from typing import Protocol


class ProviderError(Exception):
    """The provider refused the message or could not be reached after every attempt."""


class Providers(Protocol):
    def configured(self, channel: str) -> bool:
        """Whether `channel` (push, sms, paid_media) has a provider to send through."""
        ...

    async def send(self, channel: str, payload: dict) -> str:
        """Deliver to the channel's provider; the provider's message id, or ProviderError."""
        ...

    async def close(self) -> None:
        ...


class RelayError(Exception):
    """The mail relay did not take a message: unreachable, timed out, or refused it.

    `permanent` when it refused the recipient for good (a 5xx reply): no retry can change that."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class MailConnection(Protocol):
    """One open connection to the relay; a sender worker keeps one and reuses it."""

    @property
    def connected(self) -> bool:
        """Whether it is still open (the relay may have closed it since the last message)."""
        ...

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Hand the RFC 5322 bytes to the relay for one recipient, or RelayError."""
        ...

    def close(self) -> None:
        """Close it if it is open."""
        ...


class MailRelay(Protocol):
    """Where email goes: an SMTP relay, with the configured TLS, credentials and timeouts."""

    async def connect(self) -> MailConnection:
        """A new connection, authenticated when credentials are configured; RelayError if it cannot be made."""
        ...


class Mailbox(Protocol):
    """What the embedded SMTP sink received, as the mailbox endpoint reads it."""

    @property
    def received(self) -> int:
        ...

    def messages(self, limit: int = 50) -> list[dict]:
        """The newest `limit` messages, oldest of them first."""
        ...
