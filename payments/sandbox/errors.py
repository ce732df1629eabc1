"""
The sandbox's error codes, declared as data in one table.

CodePay answers a refused request with HTTP 200, ``code`` = "E" + 5 digits and ``msg`` = "[Exxxxx]text"
(docs/protocol.md, "Responses"). No full error table is public: only ``E04111`` ("Merchant order number is
invalid", order.query for an unknown order) is confirmed, and it is imported from the gateway package so
the client and the sandbox cannot disagree on it. Every other code below is the sandbox's own, grouped by
hundreds (E001xx the request envelope, E002xx authentication, E041xx orders, E05xxx cards and terminals)
so that a test can tell the failures apart; a client must not branch on them beyond "not 0".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from payments.gateway.methods import ORDER_NOT_FOUND_CODE


@dataclass(frozen=True)
class ErrorCode:
    code: str
    text: str


MISSING_PARAMETER = ErrorCode("E00100", "Missing required parameter")
INVALID_PARAMETER = ErrorCode("E00101", "Invalid parameter")
UNSUPPORTED_METHOD = ErrorCode("E00102", "Unsupported method")
TIMESTAMP_OUT_OF_RANGE = ErrorCode("E00103", "Timestamp is more than 15 minutes from gateway time")

UNKNOWN_APP = ErrorCode("E00201", "Unknown app_id")
MERCHANT_MISMATCH = ErrorCode("E00202", "merchant_no does not belong to this app")
SIGNATURE_INVALID = ErrorCode("E00203", "Signature verification failed")
BASIC_AUTH_INVALID = ErrorCode("E00204", "Basic authentication failed")

INVALID_MERCHANT_ORDER_NO = ErrorCode("E04101", "Merchant order number must be 1-32 letters, digits or _ - | * @")
DUPLICATE_MERCHANT_ORDER_NO = ErrorCode("E04102", "Merchant order number already exists")
ORDER_NOT_FOUND = ErrorCode(ORDER_NOT_FOUND_CODE, "Merchant order number is invalid")
INVALID_AMOUNT = ErrorCode("E04120", "Invalid amount")
INVALID_CURRENCY = ErrorCode("E04121", "Invalid currency")
CURRENCY_MISMATCH = ErrorCode("E04122", "price_currency does not match the original transaction")
ORDER_STATUS_INVALID = ErrorCode("E04130", "Transaction status does not allow this operation")
TRANS_TYPE_NOT_ALLOWED = ErrorCode("E04131", "Transaction type does not allow this operation")
REFUND_EXCEEDS_PAID = ErrorCode("E04132", "Refund amount exceeds the refundable amount")
CAPTURE_EXCEEDS_AUTHORIZED = ErrorCode("E04133", "Capture amount exceeds the remaining authorized amount")
BATCH_CLOSED = ErrorCode("E04134", "Transaction is in a closed batch; refund it instead")
REVOKE_NOT_SUPPORTED = ErrorCode("E04135", "Card-present transactions cannot be cancelled; refund them instead")

TERMINAL_OFFLINE = ErrorCode("E05001", "Terminal is offline")
CARD_INVALID = ErrorCode("E05101", "Card data is invalid")

ALL_ERROR_CODES = tuple(value for value in list(globals().values()) if isinstance(value, ErrorCode))


class SandboxError(Exception):
    """A refusal the sandbox answers with a CodePay error envelope (or a 409 on the control API)."""

    def __init__(self, error: ErrorCode, detail: str = ""):
        self.error = error
        self.detail = detail
        super().__init__(self.msg)

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def msg(self) -> str:
        text = f"{self.error.text}: {self.detail}" if self.detail else self.error.text
        return f"[{self.error.code}]{text}"


def require(condition: bool, error: ErrorCode, detail: str = "") -> None:
    """Refuse with ``error`` unless ``condition`` holds; reads like the rule it checks."""
    if not condition:
        raise SandboxError(error, detail)


_Found = TypeVar("_Found")


def require_found(value: _Found | None, error: ErrorCode, detail: str = "") -> _Found:
    """``value``, or refuse with ``error`` when there is none (a lookup that came back empty)."""
    if value is None:
        raise SandboxError(error, detail)
    return value
