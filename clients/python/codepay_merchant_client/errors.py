"""Errors split by what the caller must do, one class per kind (the service's ``{"error": {...}}`` shape)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error answer from the service: ``code`` and ``message`` as it sent them, ``details`` per field."""

    def __init__(self, message: str, *, code: str = "error", http_status: int | None = None, details: Any = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.details = details or {}


class InvalidRequestError(ServiceError):
    """400/422: fix the request (``details`` names each field)."""


class AuthenticationError(ServiceError):
    """401: no API key, or an unknown or revoked one."""


class NotFoundError(ServiceError):
    """404: no such order, refund or endpoint for this key."""


class ConflictError(ServiceError):
    """409: the state does not allow it (refund of an unpaid order, a number already used)."""


class RateLimitError(ServiceError):
    """429 after the client's own retries: slow down."""


class GatewayError(ServiceError):
    """502: CodePay refused the request; ``details`` has its code and message."""


class UnavailableError(ServiceError):
    """503/5xx after the client's own retries. ``code`` says whether anything was sent."""


class ConnectionFailed(ServiceError):
    """
    The service could not be reached or did not answer. ``may_have_been_sent`` is False only when the
    connection was never made; otherwise repeat the call with the same ``idempotency_key``.
    """

    def __init__(self, message: str, *, may_have_been_sent: bool):
        super().__init__(message, code="connection_failed")
        self.may_have_been_sent = may_have_been_sent


class SignatureVerificationError(Exception):
    """An event whose signature header is missing, malformed, wrong or too old: do not act on it."""
