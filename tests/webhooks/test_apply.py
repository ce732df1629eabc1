"""Applying stored notifications: exactly once, never backwards, late orders, broker outages, conflicts, refunds."""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from decimal import Decimal

from django.db import connections, transaction
from django.utils import timezone

from payments.models import (
    GatewayCall,
    OperationKind,
    OperationStatus,
    Order,
    OrderEvent,
    OrderOperation,
    OrderStatus,
    RefundStatus,
)
from payments.services.accounts import gateway_clients_reset
from tests.conftest import VECTORS
from tests.factories import OrderFactory, RefundFactory
from tests.webhooks.conftest import CLOSED_PORT_URL, notification_fields, run_in_threads
from webhooks.models import NotificationDelivery, ProcessingStatus
from webhooks.services import notification_apply
from webhooks.services.apply import TRACEBACK_MAX_CHARS, _traceback_text
from webhooks.tasks import apply_due_notifications, apply_notification


def _status_changes(order: Order) -> list[tuple[str, str, str]]:
    return list(
        OrderEvent.objects.filter(order=order, kind="status_changed").values_list("from_status", "to_status", "source")
    )


def _deliveries(**filters) -> list[NotificationDelivery]:
    return list(NotificationDelivery.objects.filter(**filters).order_by("id"))


def test_twenty_concurrent_duplicates_change_the_order_exactly_once(gateway, notify_account):
    """
    Twenty copies of one success notification posted at once are all answered `success` and stored; applied
    all at once, they move the order pending -> succeeded exactly once (one "status_changed" event): one
    delivery is "applied", the nineteen others are "duplicate", all pointing at the order.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="DUP-1", amount=Decimal("10.00"))
    fields = notification_fields("DUP-1")

    responses = run_in_threads(20, lambda i: gateway.notify(fields))
    assert [(r.status_code, r.text) for r in responses] == [(200, "success")] * 20
    ids = [delivery.pk for delivery in _deliveries()]
    assert len(ids) == 20

    run_in_threads(20, lambda i: notification_apply(delivery_id=ids[i]))

    assert _status_changes(order) == [("pending", "succeeded", "notification")]
    deliveries = _deliveries()
    assert Counter(d.status for d in deliveries) == {ProcessingStatus.APPLIED: 1, ProcessingStatus.DUPLICATE: 19}
    assert {d.order_id for d in deliveries} == {order.pk}
    order.refresh_from_db()
    assert (order.status, order.paid_amount, order.trans_no) == (OrderStatus.SUCCEEDED, Decimal("10.000"), "TDUP-1")


def test_a_late_in_progress_after_success_leaves_the_order_succeeded(gateway, notify_account):
    """
    Success applied first, then a late "in progress" (trans_status 0) for the same order: the second is
    "stale", the order stays succeeded, and only the first moved it.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="OOO-1")
    gateway.notify(notification_fields("OOO-1", trans_status="2"))
    gateway.notify(notification_fields("OOO-1", trans_status="0"))
    success, late = _deliveries()

    assert notification_apply(delivery_id=success.pk).status == ProcessingStatus.APPLIED
    assert notification_apply(delivery_id=late.pk).status == ProcessingStatus.STALE

    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED
    assert _status_changes(order) == [("pending", "succeeded", "notification")]
    assert [(d.status, d.result) for d in _deliveries()] == [("applied", "applied"), ("stale", "stale")]


def test_in_progress_then_success_moves_the_order_forward_twice(gateway, notify_account):
    """In the natural order, "in progress" then success are both applied: pending -> processing -> succeeded."""
    order = OrderFactory(account=notify_account, merchant_order_no="FWD-1")
    gateway.notify(notification_fields("FWD-1", trans_status="0"))
    gateway.notify(notification_fields("FWD-1", trans_status="2"))

    assert [notification_apply(delivery_id=d.pk).status for d in _deliveries()] == ["applied", "applied"]

    assert _status_changes(order) == [
        ("pending", "processing", "notification"),
        ("processing", "succeeded", "notification"),
    ]


def test_notification_before_the_order_commits_is_unmatched_then_applied(gateway, notify_account):
    """
    A notification applied while the order's creating transaction is still open finds no order: it is kept
    as "unmatched" with a next attempt. Once the order has committed, the next attempt (the sweep) applies it.
    """
    created, release = threading.Event(), threading.Event()

    def create_order_slowly() -> None:
        try:
            with transaction.atomic():
                OrderFactory(account=notify_account, merchant_order_no="LATE-1")
                created.set()
                release.wait(30)
        finally:
            connections.close_all()

    creator = threading.Thread(target=create_order_slowly)
    creator.start()
    assert created.wait(30)
    gateway.notify(notification_fields("LATE-1"))
    [delivery] = _deliveries()

    first = notification_apply(delivery_id=delivery.pk)
    release.set()
    creator.join(30)
    apply_due_notifications()

    assert (first.status, first.retry_in) == (ProcessingStatus.UNMATCHED, 0)
    delivery.refresh_from_db()
    order = Order.objects.get(merchant_order_no="LATE-1")
    assert (delivery.status, delivery.attempts, delivery.order_id, delivery.next_attempt_at) == (
        "applied",
        2,
        order.pk,
        None,
    )
    assert order.status == OrderStatus.SUCCEEDED


def test_unmatched_notification_is_parked_after_its_retries(gateway, notify_account):
    """
    With two retries configured, a notification for an order that never appears is tried three times,
    then parked as "unmatched" with no next attempt; the sweep leaves it alone from then on.
    """
    gateway.notify(notification_fields("NEVER-1"))
    [delivery] = _deliveries()

    outcomes = [notification_apply(delivery_id=delivery.pk).status for _ in range(3)]
    swept = apply_due_notifications()

    assert outcomes == ["unmatched", "unmatched", "unmatched"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at, swept) == ("unmatched", 3, None, 0)
    assert delivery.last_error == "no order or refund with this merchant_order_no yet"


def test_broker_down_still_acknowledges_fast_and_the_sweep_applies(gateway, notify_account, broker_down):
    """
    With the Celery broker unreachable, a valid notification is still stored and answered `success` within
    a second; it is left due for the sweep, which applies it.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="BROKER-1")

    started = time.monotonic()
    response = gateway.notify(notification_fields("BROKER-1"))
    elapsed = time.monotonic() - started

    assert (response.status_code, response.text) == (200, "success")
    assert elapsed < 1.0
    [delivery] = _deliveries()
    assert (delivery.status, delivery.next_attempt_at <= timezone.now()) == (ProcessingStatus.RECEIVED, True)

    assert apply_due_notifications() == 1

    delivery.refresh_from_db()
    order.refresh_from_db()
    assert (delivery.status, order.status) == (ProcessingStatus.APPLIED, OrderStatus.SUCCEEDED)


def test_a_hung_broker_does_not_delay_the_answer_and_leaves_the_delivery_to_the_sweep(
    gateway, notify_account, broker_hanging
):
    """
    With a broker that accepts connections but never answers, a valid notification is answered `success`
    at once (the task is published in the background); once the publisher gives up, after the one-second
    publish timeout, the delivery is due for the sweep.
    """
    OrderFactory(account=notify_account, merchant_order_no="HUNG-1")

    started = time.monotonic()
    response = gateway.notify(notification_fields("HUNG-1"))
    elapsed = time.monotonic() - started

    assert (response.status_code, response.text) == (200, "success")
    assert elapsed < 0.9
    [delivery] = _deliveries()
    deadline = time.monotonic() + 10
    while delivery.next_attempt_at > timezone.now() and time.monotonic() < deadline:
        time.sleep(0.1)
        delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at <= timezone.now()) == (ProcessingStatus.RECEIVED, True)


def test_notification_about_a_settled_operation_is_ignored(gateway, notify_account):
    """
    A notification carrying the own merchant_order_no of a capture that already succeeded is "ignored"
    (message "about the order's capture operation, already succeeded"): no gateway call is made, the
    delivery points at the order, which does not change.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="AUTH-1", status=OrderStatus.AUTHORIZED)
    OrderOperation.objects.create(
        order=order, kind=OperationKind.CAPTURE, merchant_order_no="CAP-1", status=OperationStatus.SUCCEEDED
    )
    gateway.notify(notification_fields("CAP-1", trans_type="6"))
    [delivery] = _deliveries()

    outcome = notification_apply(delivery_id=delivery.pk)

    assert (outcome.status, outcome.result, outcome.message) == (
        ProcessingStatus.IGNORED,
        "",
        "about the order's capture operation, already succeeded",
    )
    order.refresh_from_db()
    assert (order.status, _status_changes(order), GatewayCall.objects.count()) == (OrderStatus.AUTHORIZED, [], 0)
    delivery.refresh_from_db()
    assert delivery.order_id == order.pk


def test_amount_mismatch_is_a_conflict_and_changes_nothing(gateway, notify_account):
    """
    A success notification whose order_amount differs from the order's is a "conflict" for an operator:
    the order stays pending, a "conflict" event is recorded, and no status changes.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="AMT-1", amount=Decimal("10.00"))
    gateway.notify(notification_fields("AMT-1", amount="12.00"))
    [delivery] = _deliveries()

    outcome = notification_apply(delivery_id=delivery.pk)

    assert (outcome.status, outcome.result) == (ProcessingStatus.CONFLICT, "conflict")
    order.refresh_from_db()
    assert (order.status, order.paid_amount) == (OrderStatus.PENDING, Decimal("0"))
    assert _status_changes(order) == []
    assert list(OrderEvent.objects.filter(order=order).values_list("kind", flat=True)) == ["conflict"]


def test_refund_notification_applies_to_the_refund(gateway, notify_account):
    """
    A notification whose merchant_order_no is a refund's is applied to that refund: it succeeds, the order's
    refunded_amount grows by its amount, and the delivery points at both the refund and its order.
    """
    refund = RefundFactory(order__account=notify_account, merchant_order_no="REF-1", amount=Decimal("4.00"))
    gateway.notify(
        notification_fields(
            "REF-1", trans_type="3", orig_merchant_order_no=refund.order.merchant_order_no, amount="4.00"
        )
    )
    [delivery] = _deliveries()

    outcome = notification_apply(delivery_id=delivery.pk)

    assert outcome.status == ProcessingStatus.APPLIED
    refund.refresh_from_db()
    refund.order.refresh_from_db()
    assert (refund.status, refund.order.refunded_amount) == (RefundStatus.SUCCEEDED, Decimal("4.000"))
    delivery.refresh_from_db()
    assert (delivery.refund_id, delivery.order_id) == (refund.pk, refund.order_id)


def test_in_progress_status_is_applied_from_the_notification_without_a_query(gateway, notify_account, settings):
    """
    With confirmation on, an "in progress" notification (trans_status 0, nothing decided) is applied from
    the notification itself: the order becomes processing and no gateway call is made.
    """
    settings.CODEPAY_CONFIRM_NOTIFICATIONS = True
    order = OrderFactory(account=notify_account, merchant_order_no="WAIT-1")
    gateway.notify(notification_fields("WAIT-1", trans_status="0"))
    [delivery] = _deliveries()

    assert notification_apply(delivery_id=delivery.pk).status == ProcessingStatus.APPLIED

    order.refresh_from_db()
    delivery.refresh_from_db()
    assert (order.status, delivery.confirmed_trans_status, GatewayCall.objects.count()) == (
        OrderStatus.PROCESSING,
        "",
        0,
    )


def test_gateway_unreachable_during_confirmation_is_retried_then_dead(gateway, notify_account, settings):
    """
    With confirmation on and the gateway unreachable, a success notification is retried (status
    "retrying", the error recorded) and after its two retries parked as "dead"; the order never moves.
    """
    settings.CODEPAY_CONFIRM_NOTIFICATIONS = True
    settings.CODEPAY_BASE_URL = CLOSED_PORT_URL
    settings.CODEPAY_PRIVATE_KEY = VECTORS["app_private_key_pem"]
    settings.CODEPAY_CONNECT_TIMEOUT = 0.5
    gateway_clients_reset()
    order = OrderFactory(account=notify_account, merchant_order_no="DOWN-1")
    gateway.notify(notification_fields("DOWN-1"))
    [delivery] = _deliveries()

    statuses = [notification_apply(delivery_id=delivery.pk).status for _ in range(3)]

    assert statuses == ["retrying", "retrying", "dead"]
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.next_attempt_at) == (3, None)
    assert delivery.last_error.startswith("GatewayRequestNotSent: could not connect to http://127.0.0.1:1")
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    gateway_clients_reset()


def test_rejected_deliveries_are_never_applied(gateway, notify_account):
    """Applying a delivery that failed verification does nothing: it stays rejected and the order pending."""
    order = OrderFactory(account=notify_account, merchant_order_no="FORGED-1")
    gateway.post('{"merchant_order_no": "FORGED-1", "trans_status": "2", "sign": "AAAA"}')
    [delivery] = _deliveries()

    outcome = notification_apply(delivery_id=delivery.pk)

    assert (outcome.status, outcome.message) == (ProcessingStatus.REJECTED, "not verified; never applied")
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_the_apply_task_is_idempotent(gateway, notify_account):
    """Running the apply task again on an applied delivery (a redelivered message) changes nothing."""
    order = OrderFactory(account=notify_account, merchant_order_no="TASK-1")
    gateway.notify(notification_fields("TASK-1"))
    [delivery] = _deliveries()

    assert [apply_notification(delivery.pk), apply_notification(delivery.pk), apply_notification(10**9)] == [
        "applied",
        "applied",
        "missing",
    ]
    delivery.refresh_from_db()
    assert (delivery.attempts, _status_changes(order)) == (1, [("pending", "succeeded", "notification")])


def test_the_task_schedules_its_retry_and_the_sweep_waits_past_it(gateway, notify_account, settings):
    """
    When the apply task finds no order, it queues its own retry (30 s) and moves the delivery's next
    attempt past it by the sweep grace (60 s), so the sweep does not take it meanwhile.
    """
    settings.CODEPAY_NOTIFICATION_UNMATCHED_RETRY_DELAYS = (30,)
    settings.CODEPAY_NOTIFICATION_SWEEP_GRACE_SECONDS = 60
    gateway.notify(notification_fields("LATER-1"))
    [delivery] = _deliveries()
    before = timezone.now()

    assert apply_notification(delivery.pk) == ProcessingStatus.UNMATCHED

    delivery.refresh_from_db()
    assert 90 <= (delivery.next_attempt_at - before).total_seconds() < 95
    assert apply_due_notifications() == 0


def test_a_failed_apply_keeps_its_whole_traceback_until_the_delivery_is_applied(gateway, notify_account, settings):
    """
    A delivery whose confirming query cannot reach the gateway keeps the formatted traceback of that failure
    in ``last_traceback`` (from "Traceback" to the exception's own line, through the frame that queried); once
    a later attempt applies it, both ``last_error`` and ``last_traceback`` are empty again.
    """
    settings.CODEPAY_CONFIRM_NOTIFICATIONS = True
    settings.CODEPAY_BASE_URL = CLOSED_PORT_URL
    settings.CODEPAY_PRIVATE_KEY = VECTORS["app_private_key_pem"]
    settings.CODEPAY_CONNECT_TIMEOUT = 0.5
    gateway_clients_reset()
    OrderFactory(account=notify_account, merchant_order_no="TRACE-1")
    gateway.notify(notification_fields("TRACE-1"))
    [delivery] = _deliveries()

    assert notification_apply(delivery_id=delivery.pk).status == ProcessingStatus.RETRYING
    delivery.refresh_from_db()
    lines = delivery.last_traceback.rstrip("\n").splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1].startswith("payments.gateway.errors.GatewayRequestNotSent: ")
    assert "could not connect to http://127.0.0.1:1" in lines[-1]
    assert 'webhooks/services/apply.py", line' in delivery.last_traceback
    assert "in _gateway_state" in delivery.last_traceback

    settings.CODEPAY_CONFIRM_NOTIFICATIONS = False
    gateway_clients_reset()
    assert notification_apply(delivery_id=delivery.pk).status == ProcessingStatus.APPLIED
    delivery.refresh_from_db()
    assert (delivery.last_error, delivery.last_traceback) == ("", "")


def test_a_retry_without_an_exception_keeps_no_traceback(gateway, notify_account):
    """A notification with no order yet is retried with its reason in ``last_error`` and no traceback."""
    gateway.notify(notification_fields("NOTRACE-1"))
    [delivery] = _deliveries()

    assert notification_apply(delivery_id=delivery.pk).status == ProcessingStatus.UNMATCHED

    delivery.refresh_from_db()
    assert (delivery.last_error, delivery.last_traceback) == ("no order or refund with this merchant_order_no yet", "")


def test_a_long_traceback_keeps_its_end_within_the_bound():
    """
    A traceback longer than ``TRACEBACK_MAX_CHARS`` keeps its last ``TRACEBACK_MAX_CHARS`` characters (the
    frames nearest the error and the error itself), after a line saying how many were cut.
    """
    message = "".join(f"{index:05d} " for index in range(4000))  # 24,000 characters
    try:
        raise ValueError(message)
    except ValueError as exc:
        error = exc
    whole = "".join(traceback.format_exception(error))

    kept = _traceback_text(error)

    cut = len(whole) - TRACEBACK_MAX_CHARS
    assert cut > 8000
    assert kept == f"[first {cut} characters cut]\n" + whole[-TRACEBACK_MAX_CHARS:]
    assert kept.endswith("03999 \n")
