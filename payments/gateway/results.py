"""
Typed answers of the CodePay gateway.

Each client method returns one of these frozen dataclasses. ``data`` keeps the whole decoded ``data``
object for audit and for fields the gateway adds later; the typed attributes are what our code reads.
Amounts are ``Decimal`` (the client decodes JSON numbers as Decimal, never float).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def _amount(data: dict[str, Any], key: str) -> Decimal | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass(frozen=True, kw_only=True)
class GatewayResult:
    psn: str = ""
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str = ""):
        """Read each typed attribute from the field of the same name: amounts as Decimal, counts as int, else text."""
        values: dict[str, Any] = {}
        for attribute in fields(cls):
            if attribute.name in ("psn", "data"):
                continue
            if "Decimal" in str(attribute.type):
                values[attribute.name] = _amount(data, attribute.name)
            elif str(attribute.type) in ("int", "int | None"):
                values[attribute.name] = int(data.get(attribute.name) or 0)
            else:
                values[attribute.name] = _text(data, attribute.name)
        return cls(psn=psn, data=data, **values)


@dataclass(frozen=True, kw_only=True)
class Acknowledged(GatewayResult):
    """A call whose answer carries nothing we act on (close, revoke, tip.adjustment, batch.close)."""

    trans_no: str = ""


@dataclass(frozen=True, kw_only=True)
class CloudOrderCreated(GatewayResult):
    trans_no: str
    message_id: str
    terminal_online_status: str


@dataclass(frozen=True, kw_only=True)
class CheckoutCreated(GatewayResult):
    pay_url: str
    trans_no: str


@dataclass(frozen=True, kw_only=True)
class CardCheckoutResult(GatewayResult):
    trans_no: str
    trans_status: str
    pay_method_id: str
    redirect_url_3dsecure: str
    trans_end_time: str
    trans_error_code: str = ""
    trans_error_msg: str = ""


@dataclass(frozen=True, kw_only=True)
class TransactionResult(GatewayResult):
    """Answer of capture, incremental authorization, cancel, refund payment and tip adjustment by trans_no."""

    trans_no: str
    trans_status: str
    auth_no: str
    resp_code: str
    resp_msg: str
    trans_time: str


@dataclass(frozen=True, kw_only=True)
class OrderInfo(GatewayResult):
    """What ``order.query`` and recall say about a transaction; also the shape of a notification."""

    trans_no: str
    merchant_order_no: str
    trans_type: str
    trans_status: str
    price_currency: str
    order_amount: Decimal | None
    tip_amount: Decimal | None
    cashback_amount: Decimal | None
    trans_amount: Decimal | None
    paid_amount: Decimal | None
    pay_method_id: str
    terminal_sn: str
    trans_end_time: str
    # Why a transaction failed (docs/protocol.md, "Responses"); empty when it did not.
    trans_error_code: str = ""
    trans_error_msg: str = ""
    # Given off by the payment channel / the merchant, and the fee the customer paid (order.query).
    discount_bpc: Decimal | None = None
    discount_bmopc: Decimal | None = None
    trans_fee_c: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class RefundInfo(GatewayResult):
    trans_no: str
    merchant_order_no: str
    trans_status: str
    price_currency: str
    order_amount: Decimal | None
    trans_end_time: str

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str = "") -> RefundInfo:
        # Refund answers name the refunded amount order_amount in some methods and trans_amount in others.
        result = super().from_data(data, psn)
        if result.order_amount is None:
            return replace(result, order_amount=_amount(data, "trans_amount"))
        return result


@dataclass(frozen=True, kw_only=True)
class RefundSubmitted(GatewayResult):
    trans_no: str
    trans_amount: Decimal | None
    trans_status: str


@dataclass(frozen=True, kw_only=True)
class BatchSummary(GatewayResult):
    # None only when the service closes a batch whose totals it could not read first.
    count: int | None
    total_amount: Decimal | None
