"""Amounts the gateway reports: discounts and fees are not conflicts; a notification that disagrees is one."""

from __future__ import annotations

from decimal import Decimal

from payments.models import Order, OrderEvent, OrderStatus
from tests.webhooks.conftest import deliveries_for, notification_fields, terminal_order
from webhooks.models import NotificationDelivery
from webhooks.services import notification_apply
from webhooks.tasks import apply_due_notifications


def test_a_paid_amount_that_differs_only_by_discounts_and_fee_is_adopted_and_stored(sandbox_account, sandbox_control):
    """
    20.00 paid with 1.50 discounted by the channel, 0.50 by the merchant and a 0.25 fee: order.query reports
    paid_amount 18.25. That is no conflict: the order succeeds with that paid amount and the three stored.
    """
    terminal_order(sandbox_account, "DISC-1", amount="20.00")

    sandbox_control.pay("DISC-1", discount_bpc="1.50", discount_bmopc="0.50", trans_fee_c="0.25")
    deliveries_for("DISC-1", 1)
    apply_due_notifications()

    order = Order.objects.get(merchant_order_no="DISC-1")
    assert (order.status, order.paid_amount, order.discount_bpc, order.discount_bmopc, order.trans_fee_c) == (
        OrderStatus.SUCCEEDED,
        Decimal("18.25"),
        Decimal("1.50"),
        Decimal("0.50"),
        Decimal("0.25"),
    )
    assert NotificationDelivery.objects.get(merchant_order_no="DISC-1").status == "applied"
    assert OrderEvent.objects.filter(order=order, kind="conflict").count() == 0


def test_a_signed_notification_with_another_amount_is_a_conflict_even_when_the_query_settles_the_order(
    gateway, sandbox_account, sandbox_control
):
    """
    The gateway's signed notification says 99.00 for a 10.00 order; the confirming order.query says 10.00
    paid, so the order succeeds, and the notification's disagreement is recorded as a conflict for an operator.
    """
    order = terminal_order(sandbox_account, "DIFF-1", amount="10.00")
    sandbox_control.notification_fault(fault="drop")
    sandbox_control.pay("DIFF-1")
    gateway.notify(notification_fields("DIFF-1", trans_no=order.trans_no, amount="99.00"))
    [delivery] = deliveries_for("DIFF-1", 1)

    outcome = notification_apply(delivery_id=delivery.pk)

    order.refresh_from_db()
    assert (order.status, order.paid_amount) == (OrderStatus.SUCCEEDED, Decimal("10.00"))
    assert outcome.status == "conflict"
    assert outcome.message == (
        "applied: trans_status 2 confirmed by query; but the notification said: "
        "gateway order_amount 99.00 differs from ours (10.00)"
    )
    [conflict] = OrderEvent.objects.filter(order=order, kind="conflict")
    assert (conflict.source, conflict.message) == (
        "notification",
        "notification: gateway order_amount 99.00 differs from ours (10.00)",
    )
