"""
Typed answers of the CodePay gateway.

Each client method returns one of these frozen dataclasses. ``data`` keeps the whole decoded ``data``
object for audit and for fields the gateway adds later; the typed attributes are what our code reads.
Amounts are ``Decimal`` (the client decodes JSON numbers as Decimal, never float).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True, kw_only=True)
class Acknowledged(GatewayResult):
    """A call whose answer carries nothing we act on (close, revoke, tip.adjustment, batch.close)."""

    trans_no: str = ""

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str) -> Acknowledged:
        return cls(psn=psn, data=data, trans_no=_text(data, "trans_no"))


@dataclass(frozen=True, kw_only=True)
class CloudOrderCreated(GatewayResult):
    trans_no: str
    message_id: str
    terminal_online_status: str

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str) -> CloudOrderCreated:
        return cls(
            psn=psn,
            data=data,
            trans_no=_text(data, "trans_no"),
            message_id=_text(data, "message_id"),
            terminal_online_status=_text(data, "terminal_online_status"),
        )


@dataclass(frozen=True, kw_only=True)
class CheckoutCreated(GatewayResult):
    pay_url: str
    trans_no: str

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str) -> CheckoutCreated:
        return cls(psn=psn, data=data, pay_url=_text(data, "pay_url"), trans_no=_text(data, "trans_no"))


@dataclass(frozen=True, kw_only=True)
class CardCheckoutResult(GatewayResult):
    trans_no: str
    trans_status: str
    pay_method_id: str
    redirect_url_3dsecure: str
    trans_end_time: str

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str) -> CardCheckoutResult:
        return cls(
            psn=psn,
            data=data,
            trans_no=_text(data, "trans_no"),
            trans_status=_text(data, "trans_status"),
            pay_method_id=_text(data, "pay_method_id"),
            redirect_url_3dsecure=_text(data, "redirect_url_3dsecure"),
            trans_end_time=_text(data, "trans_end_time"),
        )


@dataclass(frozen=True, kw_only=True)
class TransactionResult(GatewayResult):
    """Answer of capture, incremental authorization, cancel, refund payment and tip adjustment by trans_no."""

    trans_no: str
    trans_status: str
    auth_no: str
    resp_code: str
    resp_msg: str
    trans_time: str

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str) -> TransactionResult:
        return cls(
            psn=psn,
            data=data,
            trans_no=_text(data, "trans_no"),
            trans_status=_text(data, "trans_status"),
            auth_no=_text(data, "auth_no"),
            resp_code=_text(data, "resp_code"),
            resp_msg=_text(data, "resp_msg"),
            trans_time=_text(data, "trans_time"),
        )


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

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str = "") -> OrderInfo:
        return cls(
            psn=psn,
            data=data,
            trans_no=_text(data, "trans_no"),
            merchant_order_no=_text(data, "merchant_order_no"),
            trans_type=_text(data, "trans_type"),
            trans_status=_text(data, "trans_status"),
            price_currency=_text(data, "price_currency"),
            order_amount=_amount(data, "order_amount"),
            tip_amount=_amount(data, "tip_amount"),
            cashback_amount=_amount(data, "cashback_amount"),
            trans_amount=_amount(data, "trans_amount"),
            paid_amount=_amount(data, "paid_amount"),
            pay_method_id=_text(data, "pay_method_id"),
            terminal_sn=_text(data, "terminal_sn"),
            trans_end_time=_text(data, "trans_end_time"),
        )


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
        return cls(
            psn=psn,
            data=data,
            trans_no=_text(data, "trans_no"),
            merchant_order_no=_text(data, "merchant_order_no"),
            trans_status=_text(data, "trans_status"),
            price_currency=_text(data, "price_currency"),
            order_amount=_amount(data, "order_amount") or _amount(data, "trans_amount"),
            trans_end_time=_text(data, "trans_end_time"),
        )


@dataclass(frozen=True, kw_only=True)
class RefundSubmitted(GatewayResult):
    trans_no: str
    trans_amount: Decimal | None
    trans_status: str

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str) -> RefundSubmitted:
        return cls(
            psn=psn,
            data=data,
            trans_no=_text(data, "trans_no"),
            trans_amount=_amount(data, "trans_amount"),
            trans_status=_text(data, "trans_status"),
        )


@dataclass(frozen=True, kw_only=True)
class BatchSummary(GatewayResult):
    count: int
    total_amount: Decimal

    @classmethod
    def from_data(cls, data: dict[str, Any], psn: str) -> BatchSummary:
        return cls(
            psn=psn,
            data=data,
            count=int(data.get("count") or 0),
            total_amount=_amount(data, "total_amount") or Decimal("0"),
        )
