"""
Confirming notifications by signed query, against the sandbox: final results only as the query answers
them, a query that lags the notification, duplicates, captures of unknown outcome, amount conflicts, pace.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis

from payments.models import (
    GatewayCall,
    OperationKind,
    OperationStatus,
    Order,
    OrderEvent,
    OrderOperation,
    OrderStatus,
    TransType,
)
from payments.ratelimit import GATEWAY_KEY, gateway_rate_limiters_reset
from payments.services.operations import order_capture
from tests.webhooks.conftest import deliveries_for, notification_fields, terminal_order
from webhooks.models import NotificationDelivery, ProcessingStatus
from webhooks.services import notification_apply


def _order_queries(merchant_order_no: str) -> int:
    return GatewayCall.objects.filter(method="order.query", merchant_order_no=merchant_order_no).count()


@pytest.mark.parametrize(
    ("gateway_action", "notified", "answered", "order_status"),
    [
        # A payment notified while the query still shows the order closed (the customer paid as it closed).
        ("abandon", "2", "1", OrderStatus.FAILED),
        # A cancel notified while the query still shows the payment.
        ("pay", "3", "2", OrderStatus.SUCCEEDED),
    ],
)
def test_a_result_the_query_has_not_caught_up_with_is_retried(
    gateway, sandbox_account, sandbox_control, gateway_action, notified, answered, order_status
):
    """
    When order.query answers a status the notified one can still move the order on from, the answer is
    applied, but the delivery is "retrying" ("unconfirmed: order.query answered ..."), not settled; a
    second copy of the notification is therefore no duplicate: it asks the gateway again.
    """
    order = terminal_order(sandbox_account, "LAG-1")
    assert sandbox_control.post(f"orders/LAG-1/{gateway_action}").status_code == 200
    fields = notification_fields("LAG-1", trans_status=notified, trans_no=order.trans_no)
    gateway.notify(fields)
    gateway.notify(fields)
    copies = list(NotificationDelivery.objects.filter(merchant_order_no="LAG-1", trans_status=notified).order_by("id"))

    outcomes = [notification_apply(delivery_id=copy.pk) for copy in copies]

    message = f"unconfirmed: order.query answered trans_status {answered}, the notification said {notified}"
    assert [(outcome.status, outcome.message) for outcome in outcomes] == [(ProcessingStatus.RETRYING, message)] * 2
    assert [
        (copy.status, copy.result, copy.confirmed_trans_status, copy.last_error)
        for copy in NotificationDelivery.objects.filter(pk__in=[copy.pk for copy in copies]).order_by("id")
    ] == [("retrying", "applied", answered, message), ("retrying", "unchanged", answered, message)]
    order.refresh_from_db()
    assert (order.status, _order_queries("LAG-1")) == (order_status, 2)


def test_a_copy_is_a_duplicate_only_of_one_settled_with_the_status_it_announced(
    gateway, sandbox_account, sandbox_control
):
    """
    Two copies of the sandbox's success notification: the first is applied as order.query confirms it, the
    second is a "duplicate" without a query. Two copies of a "closed" notification about the same paid
    order: the query answers 2, so each is settled ("applied", result "unchanged", the order stays
    succeeded) without confirming its own status, and the second is no duplicate of the first: it asks again.
    """
    order = terminal_order(sandbox_account, "COPY-1")
    sandbox_control.notification_fault(fault="duplicate", count=2)
    sandbox_control.pay("COPY-1")
    deliveries_for("COPY-1", 2)
    closed = notification_fields("COPY-1", trans_status="1", trans_no=order.trans_no)
    gateway.notify(closed)
    gateway.notify(closed)

    outcomes = [notification_apply(delivery_id=delivery.pk) for delivery in deliveries_for("COPY-1", 4)]

    assert [(outcome.status, outcome.result) for outcome in outcomes] == [
        ("applied", "applied"),
        ("duplicate", ""),
        ("applied", "unchanged"),
        ("applied", "unchanged"),
    ]
    assert outcomes[3].message == "unchanged: trans_status 2 confirmed by query (the notification said 1)"
    assert list(
        NotificationDelivery.objects.filter(merchant_order_no="COPY-1")
        .order_by("id")
        .values_list("trans_status", "confirmed_trans_status")
    ) == [("2", "2"), ("2", ""), ("1", "2"), ("1", "2")]
    order.refresh_from_db()
    assert (order.status, _order_queries("COPY-1")) == (OrderStatus.SUCCEEDED, 3)


def test_a_closed_notification_fails_the_order_only_as_the_query_confirms_it(gateway, sandbox_account, sandbox_control):
    """
    A "closed" notification (trans_status 1; it could be about another merchant's order with the same
    number) is confirmed by order.query like a payment: while the gateway shows the order still pushed (9),
    the order stays pending and the delivery is "retrying". Once the customer has walked away from the
    terminal, the next attempt fails the order.
    """
    order = terminal_order(sandbox_account, "CLOSE-1")
    gateway.notify(notification_fields("CLOSE-1", trans_status="1", trans_no=order.trans_no))
    [delivery] = deliveries_for("CLOSE-1", 1)

    first = notification_apply(delivery_id=delivery.pk)
    order.refresh_from_db()
    assert (first.status, first.message, order.status) == (
        ProcessingStatus.RETRYING,
        "unconfirmed: order.query answered trans_status 9, the notification said 1",
        OrderStatus.PENDING,
    )

    assert sandbox_control.post("orders/CLOSE-1/abandon").status_code == 200
    second = notification_apply(delivery_id=delivery.pk)

    order.refresh_from_db()
    assert (second.status, second.message, order.status) == (
        ProcessingStatus.APPLIED,
        "applied: trans_status 1 confirmed by query",
        OrderStatus.FAILED,
    )
    assert _order_queries("CLOSE-1") == 2


@pytest.mark.parametrize(
    ("stored", "notified"),
    [({"amount": Decimal("12.00")}, {"amount": "12.00"}), ({"currency": "EUR"}, {"price_currency": "EUR"})],
)
def test_a_query_answer_that_differs_from_the_order_is_a_conflict(
    gateway, sandbox_account, sandbox_control, settings, stored, notified
):
    """
    With confirmation on (the default), what is compared with the order is the query's answer: for an
    order whose stored amount (12.00) or currency (EUR) differs from what the customer paid at the gateway
    (10.00 USD), a success notification that matches our order is a "conflict" once order.query answers.
    Nothing changes on the order (still pending, nothing paid); a "conflict" event records it.
    """
    assert settings.CODEPAY_CONFIRM_NOTIFICATIONS is True
    order = terminal_order(sandbox_account, "CONFLICT-1")
    sandbox_control.pay("CONFLICT-1")
    deliveries_for("CONFLICT-1", 1)  # the sandbox's own notification, left unapplied
    Order.objects.filter(pk=order.pk).update(**stored)
    gateway.notify(notification_fields("CONFLICT-1", trans_no=order.trans_no, **notified))
    [_, delivery] = deliveries_for("CONFLICT-1", 2)

    outcome = notification_apply(delivery_id=delivery.pk)

    assert (outcome.status, outcome.result, outcome.message) == (
        ProcessingStatus.CONFLICT,
        "conflict",
        "conflict: trans_status 2 confirmed by query; amount or currency differs from ours, nothing changed",
    )
    order.refresh_from_db()
    [(field, value)] = stored.items()
    assert (order.status, getattr(order, field), order.paid_amount) == (OrderStatus.PENDING, value, Decimal("0"))
    assert list(OrderEvent.objects.filter(order=order, source="notification").values_list("kind", flat=True)) == [
        "conflict"
    ]
    delivery.refresh_from_db()
    assert (delivery.confirmed_trans_status, _order_queries("CONFLICT-1")) == ("2", 1)


def test_notification_about_a_capture_of_unknown_outcome_settles_it(gateway, sandbox_account, sandbox_control):
    """
    A capture whose call timed out stays "unknown". The sandbox's notification about it carries the
    capture's own merchant_order_no and is settled through order.query by that number: the capture
    succeeds, the order is succeeded with 10.00 captured, the delivery "applied" and pointing at the order.
    A copy arriving afterwards is recorded as "duplicate" without a query and never applied.
    """
    order = terminal_order(sandbox_account, "PREAUTH-1", trans_type=TransType.AUTH)
    sandbox_control.pay("PREAUTH-1")
    [authorization] = deliveries_for("PREAUTH-1", 1)
    assert notification_apply(delivery_id=authorization.pk).status == ProcessingStatus.APPLIED
    order.refresh_from_db()
    sandbox_control.fault(fault="timeout_after_create", method="pay.capture", seconds=3)
    assert order_capture(order=order, amount=Decimal("10.00")).outcome_unknown is True
    operation = OrderOperation.objects.get(order=order, kind=OperationKind.CAPTURE)
    assert operation.status == OperationStatus.UNKNOWN
    [delivery] = deliveries_for(operation.merchant_order_no, 1)

    outcome = notification_apply(delivery_id=delivery.pk)

    assert (outcome.status, outcome.result, outcome.message) == (
        ProcessingStatus.APPLIED,
        "applied",
        "the capture operation succeeded, as order.query answered",
    )
    operation.refresh_from_db()
    order.refresh_from_db()
    delivery.refresh_from_db()
    assert (operation.status, order.status, order.captured_amount) == (
        OperationStatus.SUCCEEDED,
        OrderStatus.SUCCEEDED,
        Decimal("10.000"),
    )
    assert (delivery.order_id, _order_queries(operation.merchant_order_no)) == (order.pk, 1)

    # A copy of the applied delivery is a "duplicate" before anything is asked: never applied again.
    gateway.post(bytes(delivery.raw_body), content_type=delivery.content_type)
    [_, copy] = deliveries_for(operation.merchant_order_no, 2)
    assert notification_apply(delivery_id=copy.pk).message == "another copy of this notification was already applied"
    copy.refresh_from_db()
    assert (copy.status, copy.order_id, _order_queries(operation.merchant_order_no)) == ("duplicate", order.pk, 1)


@pytest.fixture
def two_queries_a_second(settings):
    settings.CODEPAY_MAX_QPS = 2
    gateway_rate_limiters_reset()
    yield
    gateway_rate_limiters_reset()


def test_confirmation_queries_take_their_turn_on_the_shared_rate_limit(
    sandbox_account, sandbox_control, settings, two_queries_a_second
):
    """
    With CODEPAY_MAX_QPS at 2, confirming three success notifications takes at least a second: each
    order.query waits for its slot, half a second after the previous one, on the timeline every worker
    shares in Redis.
    """
    for number in ("QPS-1", "QPS-2", "QPS-3"):
        terminal_order(sandbox_account, number)
        sandbox_control.pay(number)
    deliveries = [deliveries_for(number, 1)[0] for number in ("QPS-1", "QPS-2", "QPS-3")]

    started = time.monotonic()
    statuses = [notification_apply(delivery_id=delivery.pk).status for delivery in deliveries]
    elapsed = time.monotonic() - started

    assert statuses == [ProcessingStatus.APPLIED] * 3
    assert elapsed >= 0.95
    assert redis.Redis.from_url(settings.CELERY_BROKER_URL).exists(GATEWAY_KEY) == 1
