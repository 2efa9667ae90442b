"""Domain errors. Every protocol maps these to its own status codes in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a client may see; `code` is stable, `message` is for people."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    status, code = 400, "invalid_argument"


class Unauthenticated(DomainError):
    status, code = 401, "unauthenticated"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class RequestTimeout(DomainError):
    status, code = 408, "request_timeout"


class Gone(DomainError):
    status, code = 410, "gone"


class PayloadTooLarge(DomainError):
    status, code = 413, "payload_too_large"


class RuleViolation(DomainError):
    status, code = 422, "rule_violation"


class Unavailable(DomainError):
    """Something Contrail depends on (a partner's service) is down or failing: try again later."""
    status, code = 503, "unavailable"


class RateLimited(DomainError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, {"retry_after_s": round(retry_after_s, 3)})
        self.retry_after_s = retry_after_s


class PaymentRequired(DomainError):
    status, code = 402, "payment_declined"


class CannotStart(Exception):
    """Something the configuration names cannot be reached at start (the NATS server): `serve` stops with this one
    line and exit status 2, like a configuration error."""
