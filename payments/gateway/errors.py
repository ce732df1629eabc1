"""
Gateway errors, split by what the caller must do next.

- ``GatewayDeclined``: the gateway answered and said no (``code`` != "0"). Nothing moved; show the reason.
- ``GatewayConfigurationError``: our keys, credentials or settings are wrong. Fix the configuration.
- ``GatewayRequestNotSent``: the request never left (DNS, refused connection, connect timeout).
  Nothing reached the gateway, so sending it again is safe.
- ``GatewayOutcomeUnknown``: the request was sent but no trustworthy answer came back (read timeout,
  5xx, a body we cannot parse or whose signature fails). The gateway may have acted. A money-moving call
  must never be resent blindly: the caller resolves it with a query.

Messages never carry request bodies, so card data and keys cannot leak through an exception.
"""

from __future__ import annotations


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
