"""The receiver against the sandbox gateway: its own signed notifications, confirmed by signed queries."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from payments.models import GatewayCall, Order, OrderEvent, OrderStatus, Refund, RefundStatus
from payments.services.refunds import order_refund
from tests.webhooks.conftest import deliveries_for, notification_fields, terminal_order, wait_for
from webhooks.models import NotificationDelivery, ProcessingStatus, Verification
from webhooks.services import notification_apply
from webhooks.tasks import apply_due_notifications


def _notification_status_changes(order: Order) -> list[tuple[str, str]]:
    return list(
        OrderEvent.objects.filter(order=order, kind="status_changed", source="notification").values_list(
            "from_status", "to_status"
        )
    )


def test_success_is_applied_only_as_the_gateway_query_confirms_it(gateway, sandbox_account, sandbox_control):
    """
    A genuine-looking success notification for an order the gateway still shows as pushed (trans_status 9)
    changes nothing toward success: order.query answers 9, the delivery is "retrying" ("unconfirmed").
    Once the customer has paid, the next attempt's query answers 2 and the order becomes succeeded.
    """
    order = terminal_order(sandbox_account, "CONFIRM-1")
    gateway.notify(notification_fields("CONFIRM-1", trans_no=order.trans_no))
    [delivery] = deliveries_for("CONFIRM-1", 1)

    first = notification_apply(delivery_id=delivery.pk)
    order.refresh_from_db()
    assert (first.status, order.status) == (ProcessingStatus.RETRYING, OrderStatus.PENDING)
    assert first.message == "unconfirmed: order.query answered trans_status 9, the notification said 2"

    sandbox_control.pay("CONFIRM-1")
    assert apply_due_notifications() >= 1

    delivery.refresh_from_db()
    order.refresh_from_db()
    assert (delivery.status, delivery.result, order.status) == ("applied", "applied", OrderStatus.SUCCEEDED)
    assert delivery.status_message == "applied: trans_status 2 confirmed by query"
    assert GatewayCall.objects.filter(method="order.query", merchant_order_no="CONFIRM-1").count() >= 2


def test_sandbox_duplicates_and_a_late_in_progress_change_the_order_once(sandbox_account, sandbox_control):
    """
    The sandbox delivers its success notification five times at once, and (next order) a stale "in
    progress" after the success. Every copy is stored and answered `success`; after the sweep each order
    moved to succeeded exactly once: one delivery applied and four duplicates, then applied and stale.
    """
    first = terminal_order(sandbox_account, "SBX-DUP")
    second = terminal_order(sandbox_account, "SBX-LATE")
    sandbox_control.notification_fault(fault="duplicate", count=5)
    sandbox_control.pay("SBX-DUP")
    deliveries_for("SBX-DUP", 5)
    sandbox_control.notification_fault(fault="reorder")
    sandbox_control.pay("SBX-LATE")
    deliveries_for("SBX-LATE", 2)

    apply_due_notifications()

    assert Counter(
        NotificationDelivery.objects.filter(merchant_order_no="SBX-DUP").values_list("status", flat=True)
    ) == {
        "applied": 1,
        "duplicate": 4,
    }
    assert list(
        NotificationDelivery.objects.filter(merchant_order_no="SBX-LATE")
        .order_by("id")
        .values_list("trans_status", "status")
    ) == [("2", "applied"), ("0", "stale")]
    for order in (first, second):
        order.refresh_from_db()
        assert (order.status, _notification_status_changes(order)) == (
            OrderStatus.SUCCEEDED,
            [("pending", "succeeded")],
        )
    assert set(NotificationDelivery.objects.values_list("verification", flat=True)) == {Verification.VALID}


def test_refund_notification_from_the_sandbox_is_confirmed_and_applied(sandbox_account, sandbox_control):
    """
    A refund that completes later at the gateway notifies its own merchant_order_no; the delivery is
    confirmed by order.refund.query and the refund becomes succeeded, the order refunded 4.00.
    """
    order = terminal_order(sandbox_account, "REF-ORDER")
    sandbox_control.pay("REF-ORDER")
    deliveries_for("REF-ORDER", 1)
    apply_due_notifications()
    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED
    sandbox_control.fault(fault="refund_async", method="order.refund.submit")
    refund = order_refund(order=order, amount=Decimal("4.00"), reason="returned", merchant_order_no="REF-ORDER-R1").obj
    assert refund.status == RefundStatus.PENDING

    response = sandbox_control.post("refunds/REF-ORDER-R1/complete")
    assert response.status_code == 200, response.text
    [delivery] = deliveries_for("REF-ORDER-R1", 1)
    apply_due_notifications()

    delivery.refresh_from_db()
    refund = Refund.objects.get(pk=refund.pk)
    order.refresh_from_db()
    assert (delivery.status, delivery.refund_id, delivery.order_id) == ("applied", refund.pk, order.pk)
    assert (refund.status, order.refunded_amount) == (RefundStatus.SUCCEEDED, Decimal("4.000"))
    assert GatewayCall.objects.filter(method="order.refund.query", merchant_order_no="REF-ORDER-R1").count() == 1


@pytest.mark.celery_worker
def test_sandbox_notification_makes_the_order_succeeded_through_a_real_worker(sandbox_account, sandbox_control):
    """
    End to end: the sandbox posts its own signed notification to the live server, which stores it, answers
    `success` (recorded by the sandbox as delivered) and queues the apply task; a real Celery worker on the
    Redis broker confirms it by order.query and the order becomes succeeded.
    """
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connections

    from codepay_service.celery import app

    def close_worker_connections(**kwargs) -> None:
        # The worker thread's own database connection would outlive the test database otherwise.
        connections.close_all()

    order = terminal_order(sandbox_account, "E2E-1")
    app.control.purge()
    task_postrun.connect(close_worker_connections, weak=False)
    try:
        with start_worker(app, perform_ping_check=False, shutdown_timeout=10):
            sandbox_control.pay("E2E-1")
            wait_for(lambda: Order.objects.get(pk=order.pk).status == OrderStatus.SUCCEEDED, timeout=30)
    finally:
        task_postrun.disconnect(close_worker_connections)

    [delivery] = NotificationDelivery.objects.filter(merchant_order_no="E2E-1")
    assert (delivery.verification, delivery.status, delivery.attempts, delivery.order_id) == (
        "valid",
        "applied",
        1,
        order.pk,
    )
    attempts = sandbox_control.get("orders/E2E-1").json()["notification_attempts"]
    assert [(a["outcome"], a["http_status"], a["body"]) for a in attempts] == [("delivered", 200, "success")]
    assert GatewayCall.objects.filter(method="order.query", merchant_order_no="E2E-1").count() == 1
