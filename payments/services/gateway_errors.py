"""
What a failed gateway call means for the record and for the API client, in one place.

Gateway errors never reach clients raw (HOUSE_STYLE, convention 6): a refusal becomes 502 with CodePay's
code and message; a call that never left becomes 503; our own misconfiguration becomes a generic 500
whose detail only operators see; an unknown outcome is not an error at all for money-moving calls (the
row stays ``unknown`` and is looked up), only for read-only ones.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from codepay_service.errors import GatewayRefused, GatewayUnavailable, Misconfigured, ServiceError
from payments.gateway.errors import (
    GatewayConfigurationError,
    GatewayDeclined,
    GatewayError,
    GatewayOutcomeUnknown,
    GatewayRequestNotSent,
)


def failure_reason(exc: GatewayError | Misconfigured) -> tuple[str, str]:
    """(gateway code, message for operators) of a failed call, to store on the order, refund or operation."""
    if isinstance(exc, GatewayDeclined):
        return exc.code[:16], exc.message[:255]
    if isinstance(exc, Misconfigured):
        return "", exc.detail[:255]
    return "", exc.message[:255]


def client_error(
    exc: GatewayError | Misconfigured, *, action: str, not_sent: str = ".", details: dict[str, Any] | None = None
) -> ServiceError | GatewayError:
    """The API's error for a failed call; ``not_sent`` ends the message when nothing left this machine."""
    details = details or {}
    if isinstance(exc, GatewayDeclined):
        return GatewayRefused(
            f"CodePay refused the {action}: {exc.message}",
            details={"gateway_code": exc.code, "gateway_message": exc.message, **details},
        )
    if isinstance(exc, GatewayRequestNotSent):
        return GatewayUnavailable(f"CodePay could not be reached; the {action} was not sent{not_sent}", details=details)
    if isinstance(exc, GatewayOutcomeUnknown):
        return GatewayUnavailable(f"CodePay did not answer the {action}; retry later.", details=details)
    if isinstance(exc, GatewayConfigurationError):
        return Misconfigured(exc.message)
    return exc


@contextmanager
def gateway_errors_as_service_errors(action: str):
    """Turn a gateway failure during a read-only ``action`` into the error the API shows."""
    try:
        yield
    except (GatewayError, Misconfigured) as exc:
        raise client_error(exc, action=action) from None
