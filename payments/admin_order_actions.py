"""
The money actions an operator can take on one order from its admin page: refund, capture, void, tip
adjustment and sync.

Each is declared once in ``ORDER_ACTIONS``: its permission, its form, the amount its confirmation page
names, and the service it calls (the same one the API calls, with ``source="admin"``). Whether an action
is allowed for the order's state is the service's decision; ``offered`` only decides which buttons the
page shows, so a stale page still gets the service's precise refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms

from payments.gateway.money import AmountError, format_amount, parse_amount
from payments.models import Order, OrderStatus, TransType
from payments.services.operations import order_cancel, order_capture, order_tip_adjust
from payments.services.orders import order_sync
from payments.services.refunds import order_refund, order_refundable_amount


class _OrderActionForm(forms.Form):
    """A form bound to one order, so amounts are parsed in that order's currency."""

    def __init__(self, *args, order: Order, **kwargs):
        self.order = order
        super().__init__(*args, **kwargs)

    def _amount(self, name: str, *, allow_zero: bool = False) -> Decimal:
        try:
            amount = parse_amount(self.cleaned_data[name], self.order.currency)
        except AmountError as exc:
            raise forms.ValidationError(str(exc)) from None
        if amount < 0 or (amount == 0 and not allow_zero):
            raise forms.ValidationError(f"Enter an amount above 0 {self.order.currency}.")
        return amount


class AmountForm(_OrderActionForm):
    amount = forms.CharField(max_length=24, help_text="In the order's currency, e.g. 12.34.")

    def clean_amount(self) -> Decimal:
        return self._amount("amount")


class RefundForm(AmountForm):
    reason = forms.CharField(
        max_length=64, initial="Refund by operator", help_text="Shown to the gateway; 64 characters at most."
    )


class TipForm(_OrderActionForm):
    tip_amount = forms.CharField(
        max_length=24, label="New tip", help_text="The whole tip after the change; 0 removes it."
    )

    def clean_tip_amount(self) -> Decimal:
        return self._amount("tip_amount", allow_zero=True)


class ConfirmForm(_OrderActionForm):
    """Nothing to enter: the page names the amount and the operator confirms."""


@dataclass(frozen=True, kw_only=True)
class OrderAction:
    slug: str
    label: str
    permission: str
    form: type[_OrderActionForm]
    initial: Callable[[Order], dict[str, Any]]
    # The sentence on the confirmation page naming the order's amount at stake.
    describe: Callable[[Order], str]
    offered: Callable[[Order], bool]
    # Calls the service; answers whether CodePay's answer was lost (the outcome is unknown, nothing resent).
    run: Callable[[Order, dict[str, Any]], bool]

    def audit_message(self, order: Order, data: dict[str, Any], username: str) -> str:
        amount = data.get("amount", data.get("tip_amount"))
        named = f" {format_amount(amount, order.currency)} {order.currency}" if amount is not None else ""
        reason = f": {data['reason']}" if data.get("reason") else ""
        return f"by {username}: {self.label.lower()}{named}{reason}"[:255]


def _money(order: Order, amount: Decimal) -> str:
    return f"{format_amount(amount, order.currency)} {order.currency}"


def _capturable(order: Order) -> Decimal:
    return max(order.authorized_amount - order.captured_amount, Decimal("0"))


def _sync(order: Order, data: dict[str, Any]) -> bool:
    # A query moves no money: a lost answer raises and is shown like any failure, never "unknown".
    order_sync(order=order, source="admin")
    return False


ORDER_ACTIONS: dict[str, OrderAction] = {
    action.slug: action
    for action in (
        OrderAction(
            slug="refund",
            label="Refund",
            permission="payments.refund_order",
            form=RefundForm,
            initial=lambda order: {"amount": format_amount(order_refundable_amount(order), order.currency)},
            describe=lambda order: (
                f"Paid {_money(order, order.paid_amount)}, refunded {_money(order, order.refunded_amount)}; "
                f"at most {_money(order, order_refundable_amount(order))} can still be refunded."
            ),
            offered=lambda order: order.status == OrderStatus.SUCCEEDED,
            run=lambda order, data: (
                order_refund(order=order, amount=data["amount"], reason=data["reason"], source="admin").outcome_unknown
            ),
        ),
        OrderAction(
            slug="capture",
            label="Capture",
            permission="payments.capture_order",
            form=AmountForm,
            initial=lambda order: {"amount": format_amount(_capturable(order), order.currency)},
            describe=lambda order: (
                f"Authorized {_money(order, order.authorized_amount)}, "
                f"captured {_money(order, order.captured_amount)}; "
                f"at most {_money(order, _capturable(order))} can be captured."
            ),
            offered=lambda order: order.trans_type == TransType.AUTH and order.status == OrderStatus.AUTHORIZED,
            run=lambda order, data: order_capture(order=order, amount=data["amount"], source="admin").outcome_unknown,
        ),
        OrderAction(
            slug="void",
            label="Void",
            permission="payments.void_order",
            form=ConfirmForm,
            initial=lambda order: {},
            describe=lambda order: (
                f"Void the authorization: {_money(order, order.authorized_amount)} is released to the customer."
            ),
            offered=lambda order: order.status == OrderStatus.AUTHORIZED,
            run=lambda order, data: order_cancel(order=order, source="admin").outcome_unknown,
        ),
        OrderAction(
            slug="tip",
            label="Adjust tip",
            permission="payments.adjust_tip_order",
            form=TipForm,
            initial=lambda order: {"tip_amount": format_amount(order.tip_amount, order.currency)},
            describe=lambda order: (
                f"Paid {_money(order, order.paid_amount)} of which tip {_money(order, order.tip_amount)}; "
                "the paid amount moves by the difference."
            ),
            offered=lambda order: order.status == OrderStatus.SUCCEEDED,
            run=lambda order, data: (
                order_tip_adjust(order=order, tip_amount=data["tip_amount"], source="admin").outcome_unknown
            ),
        ),
        OrderAction(
            slug="sync",
            label="Sync",
            permission="payments.sync_order",
            form=ConfirmForm,
            initial=lambda order: {},
            describe=lambda order: (
                f"Ask CodePay about this {_money(order, order.amount)} order now and apply its answer; "
                "nothing is charged."
            ),
            offered=lambda order: True,
            run=_sync,
        ),
    )
}
