"""What the channels domain needs from the outside: the providers that deliver push, SMS and paid media."""

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
