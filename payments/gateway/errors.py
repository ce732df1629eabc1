"""
Gateway errors, split by what the caller must do next.

- ``GatewayDeclined``: the gateway answered and said no (``code`` != "0"). Nothing moved; show the reason.
- ``GatewayConfigurationError``: our keys, credentials or settings are wrong. Fix the configuration.
- ``GatewayRequestNotSent``: the request never left (DNS, refused connection, connect timeout).
  Nothing reached the gateway, so sending it again is safe.
- ``GatewayOutcomeUnknown``: the request was sent but no trustworthy answer came back (read timeout,
  5xx, a body we cannot parse or whose signature fails). The gateway may have acted. A money-moving call
  must never be resent blindly: the caller resolves it with a query.
- ``GatewayUnsignedRefusal`` (an unknown outcome): an error answer without a valid signature. It may not
  come from the gateway, so a money-moving call stays unknown; but a query's unsigned "order not found",
  repeated past the grace period, is believed (``is_order_not_found``), so that a gateway that never
  signs its errors cannot leave an order unknown forever (docs/protocol.md, "Responses").

Messages never carry request bodies, so card data and keys cannot leak through an exception.
"""

from __future__ import annotations

from .methods import ORDER_NOT_FOUND_CODE


class GatewayError(Exception):
    kind = "error"

    def __init__(self, message: str, *, method: str = "", psn: str = ""):
        self.message = message
        self.method = method
        self.psn = psn
        super().__init__(f"{method}: {message}" if method else message)


class GatewayConfigurationError(GatewayError):
    kind = "misconfigured"


class GatewayRequestNotSent(GatewayError):
    kind = "not_sent"


class GatewayOutcomeUnknown(GatewayError):
    kind = "unknown"


class GatewayDeclined(GatewayError):
    kind = "declined"

    def __init__(self, *, code: str, message: str, method: str = "", psn: str = "", data: dict | None = None):
        self.code = code
        self.data = data or {}
        super().__init__(message, method=method, psn=psn)
        self.args = (f"{method}: [{code}] {message}",)


class GatewayUnsignedRefusal(GatewayOutcomeUnknown):
    """An error answer whose signature is missing or wrong: untrusted, but its code is kept."""

    def __init__(self, *, code: str, message: str, method: str = "", psn: str = ""):
        self.code = code
        super().__init__(f"unsigned error answer [{code}] {message}; not trusted", method=method, psn=psn)


def is_order_not_found(exc: GatewayError) -> bool:
    """
    Did a query answer "order not found"? Signed, or unsigned: callers act on it only after the grace
    period, by which time a gateway that never signs its errors has said so on every check.
    """
    return isinstance(exc, (GatewayDeclined, GatewayUnsignedRefusal)) and exc.code == ORDER_NOT_FOUND_CODE
