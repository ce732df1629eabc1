"""Outbound events: written with the change, signed, delivered in order per order, retried, given up, disabled,
replayed."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from codepay_merchant_client import SignatureVerificationError, construct_event
from payments.events.models import DeliveryStatus, Event, EventDelivery, EventEndpoint
from payments.events.services import (
    endpoint_create,
    endpoint_enable,
    endpoint_rotate_secret,
    event_chain_send,
    event_deliveries_send_due,
)
from payments.models import Channel, Order, OrderStatus
from payments.services.orders import order_create, order_sync, order_transition
from payments.services.refunds import order_refund
from tests.factories import OrderFactory

SIGNATURE = "CodePay-Signature"


def paid_order(account, sandbox_control) -> Order:
    number = f"EVT{uuid.uuid4().hex[:12].upper()}"
    order = order_create(
        account=account,
        api_key=None,
        channel=Channel.TERMINAL,
        amount=Decimal("12.34"),
        currency="USD",
        description="Coffee",
        merchant_order_no=number,
        terminal_sn="WPYB002248000865",
    ).obj
    sandbox_control.pay(number)
    order_sync(order=order)
    return Order.objects.get(pk=order.pk)


def move(order: Order, to_status: str) -> None:
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        order_transition(locked, to_status, source="test")


def test_a_paid_order_is_delivered_to_the_endpoint_signed_with_its_secret(account, endpoint, receiver, sandbox_control):
    """Paying an order writes one order.succeeded event; the sweep posts it, signed, and logs the attempt."""
    order = paid_order(account, sandbox_control)
    assert list(Event.objects.filter(order=order).values_list("type", flat=True)) == ["order.succeeded"]

    assert event_deliveries_send_due() == 1

    assert len(receiver.received) == 1
    received = receiver.received[0]
    event = construct_event(received.body, received.headers[SIGNATURE], endpoint.secret)
    stored = Event.objects.get(order=order)
    assert received.body == stored.body.encode()
    assert event["id"] == f"evt_{stored.pk}" == received.headers["CodePay-Event-Id"]
    assert event["type"] == "order.succeeded" == received.headers["CodePay-Event-Type"]
    assert (event["data"]["object"]["merchant_order_no"], event["data"]["object"]["status"]) == (
        order.merchant_order_no,
        "succeeded",
    )
    assert event["data"]["object"]["amount"] == "12.34"
    delivery = EventDelivery.objects.get(event=stored)
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == (DeliveryStatus.SUCCEEDED, 1, 200)
    assert [(a.trigger, a.http_status) for a in delivery.attempt_log.all()] == [("send", 200)]
    with pytest.raises(SignatureVerificationError):
        construct_event(received.body, received.headers[SIGNATURE], "whsec_not-the-secret")


def test_the_event_is_written_in_the_transaction_of_the_change_and_rolled_back_with_it(account, endpoint):
    """A status change that rolls back leaves no event and no delivery; one that commits leaves exactly one."""
    order = OrderFactory(account=account, status=OrderStatus.PENDING)
    with pytest.raises(RuntimeError), transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        order_transition(locked, OrderStatus.FAILED, source="test")
        assert Event.objects.filter(order=order).count() == 1
        raise RuntimeError("the change fails after the transition")
    assert (Event.objects.filter(order=order).count(), EventDelivery.objects.count()) == (0, 0)

    move(order, OrderStatus.FAILED)
    assert list(Event.objects.filter(order=order).values_list("type", flat=True)) == ["order.failed"]
    assert EventDelivery.objects.filter(endpoint=endpoint).count() == 1


def test_a_later_event_of_the_same_order_waits_until_the_earlier_one_is_delivered(account, endpoint, receiver):
    """authorized then captured: while order.authorized is failing, order.captured is not sent; both go out in order."""
    order = OrderFactory(account=account, status=OrderStatus.PENDING, trans_type="auth")
    move(order, OrderStatus.AUTHORIZED)
    move(order, OrderStatus.SUCCEEDED)
    first, second = EventDelivery.objects.filter(endpoint=endpoint).order_by("event_id")
    receiver.fail_next(503)

    assert event_chain_send(endpoint_id=endpoint.pk, order_id=order.pk) == 0
    first.refresh_from_db()
    second.refresh_from_db()
    assert receiver.received == []
    assert (first.status, first.attempts, first.last_http_status, first.last_error) == (
        DeliveryStatus.PENDING,
        1,
        503,
        "HTTP 503",
    )
    assert timedelta(seconds=55) < first.next_attempt_at - timezone.now() <= timedelta(seconds=60)
    assert (second.attempts, second.next_attempt_at <= timezone.now()) == (0, True)
    # The second is due, but its chain's head is backing off: the sweep sends nothing.
    assert event_deliveries_send_due() == 0
    assert receiver.received == []

    EventDelivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    assert event_deliveries_send_due() == 2
    assert receiver.event_types() == ["order.authorized", "order.captured"]


def test_events_of_different_orders_do_not_wait_for_each_other(account, endpoint, receiver):
    """A failing order.failed of one order does not hold back another order's event."""
    stuck, other = OrderFactory(account=account), OrderFactory(account=account)
    move(stuck, OrderStatus.FAILED)
    move(other, OrderStatus.EXPIRED)
    receiver.fail_next(500)

    assert event_deliveries_send_due() == 1
    assert receiver.event_types() == ["order.expired"]


def test_a_refund_sends_refund_succeeded_after_the_orders_event(account, endpoint, receiver, sandbox_control):
    """A refund accepted by CodePay reaches the endpoint as refund.succeeded, after the order's own event."""
    order = paid_order(account, sandbox_control)
    refund = order_refund(order=order, amount=Decimal("2.00"), reason="broken cup").obj
    assert refund.status == "succeeded"

    assert event_deliveries_send_due() == 2
    assert receiver.event_types() == ["order.succeeded", "refund.succeeded"]
    refund_event = json.loads(receiver.received[1].body)
    assert refund_event["data"]["object"]["merchant_order_no"] == refund.merchant_order_no
    assert refund_event["data"]["object"]["orig_merchant_order_no"] == order.merchant_order_no
    assert refund_event["data"]["object"]["amount"] == "2.00"


def test_an_amount_conflict_is_sent_as_order_conflict_with_its_message(account, endpoint, receiver):
    """A gateway answer whose amount differs changes nothing and is told to the store system as order.conflict."""
    from payments.gateway.results import OrderInfo
    from payments.services.orders import order_apply_gateway_state

    order = OrderFactory(account=account, status=OrderStatus.PENDING, amount=Decimal("10.00"))
    info = OrderInfo(
        trans_no="T1",
        merchant_order_no=order.merchant_order_no,
        trans_type="1",
        trans_status="2",
        price_currency="USD",
        order_amount=Decimal("99.00"),
        tip_amount=None,
        cashback_amount=None,
        trans_amount=None,
        paid_amount=None,
        pay_method_id="",
        terminal_sn="",
        trans_end_time="",
        data={},
    )
    order_apply_gateway_state(order_id=order.pk, info=info, source="test")

    assert event_deliveries_send_due() == 1
    event = json.loads(receiver.received[0].body)
    assert event["type"] == "order.conflict"
    conflict = order.events.get(kind="conflict")
    assert conflict.message.startswith("gateway order_amount 99.00 differs from ours")
    assert event["data"]["message"] == conflict.message
    assert event["data"]["object"]["status"] == "pending"


def test_a_delivery_failing_past_the_retry_window_is_given_up_and_the_chain_moves_on(
    account, endpoint, receiver, settings
):
    """After three days of failures a delivery is marked failed, and the order's next event is sent."""
    order = OrderFactory(account=account, trans_type="auth")
    move(order, OrderStatus.AUTHORIZED)
    move(order, OrderStatus.SUCCEEDED)
    old = EventDelivery.objects.filter(endpoint=endpoint).order_by("event_id").first()
    Event.objects.filter(pk=old.event_id).update(
        created_at=timezone.now() - timedelta(seconds=settings.EVENTS_RETRY_WINDOW_SECONDS + 1)
    )
    receiver.fail_next(502)

    assert event_chain_send(endpoint_id=endpoint.pk, order_id=order.pk) == 0
    old.refresh_from_db()
    assert (old.status, old.next_attempt_at) == (DeliveryStatus.FAILED, None)
    assert event_chain_send(endpoint_id=endpoint.pk, order_id=order.pk) == 1
    assert receiver.event_types() == ["order.captured"]


def test_an_endpoint_that_keeps_failing_is_disabled_and_the_operator_is_told(account, receiver, settings, caplog):
    """Past the failure thresholds the endpoint is switched off, logged as an error, and endpoint.disabled is sent
    elsewhere."""
    settings.EVENTS_ENDPOINT_DISABLE_MIN_FAILURES = 2
    settings.EVENTS_ENDPOINT_DISABLE_AFTER_SECONDS = 0
    failing = endpoint_create(account=account, url=receiver.url + "/failing", event_types=["order.failed"])
    watcher = endpoint_create(account=account, url=receiver.url + "/watcher", event_types=["endpoint.disabled"])
    order = OrderFactory(account=account)
    move(order, OrderStatus.FAILED)
    receiver.fail_next(500, 500)

    with caplog.at_level(logging.ERROR, logger="payments.events.services"):
        event_chain_send(endpoint_id=failing.pk, order_id=order.pk)
        EventDelivery.objects.filter(endpoint=failing).update(next_attempt_at=timezone.now())
        event_chain_send(endpoint_id=failing.pk, order_id=order.pk)

    failing.refresh_from_db()
    assert (failing.is_active, failing.consecutive_failures, failing.disabled_at is not None) == (False, 2, True)
    assert failing.disabled_reason.startswith("2 failed attempts since ")
    assert [r.getMessage() for r in caplog.records] == ["event endpoint disabled: it keeps failing"]
    assert event_deliveries_send_due() == 1  # only the watcher's: the disabled endpoint is skipped
    assert [r.path for r in receiver.received] == ["/events/watcher"]
    notice = construct_event(receiver.received[0].body, receiver.received[0].headers[SIGNATURE], watcher.secret)
    assert (notice["type"], notice["data"]["object"]["id"]) == ("endpoint.disabled", failing.pk)

    endpoint_enable(endpoint=failing)
    assert event_deliveries_send_due() == 1
    assert [r.path for r in receiver.received] == ["/events/watcher", "/events/failing"]


def test_during_a_rotation_both_secrets_sign_until_the_overlap_ends(account, endpoint, receiver):
    """After a rotation the header carries two v1 signatures, old and new; once the overlap ends only the new one."""
    old_secret = endpoint.secret
    rotated = endpoint_rotate_secret(endpoint=endpoint, overlap_seconds=3600)
    assert rotated.secret != old_secret and rotated.secret.startswith("whsec_")
    order = OrderFactory(account=account)
    move(order, OrderStatus.FAILED)
    event_deliveries_send_due()
    header = receiver.received[0].headers[SIGNATURE]
    assert header.count("v1=") == 2
    construct_event(receiver.received[0].body, header, old_secret)
    construct_event(receiver.received[0].body, header, rotated.secret)

    EventEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = OrderFactory(account=account)
    move(second, OrderStatus.FAILED)
    event_deliveries_send_due()
    header = receiver.received[1].headers[SIGNATURE]
    assert header.count("v1=") == 1
    construct_event(receiver.received[1].body, header, rotated.secret)
    with pytest.raises(SignatureVerificationError):
        construct_event(receiver.received[1].body, header, old_secret)


def test_an_endpoint_for_one_store_gets_only_that_stores_events(account, receiver):
    """store_no on an endpoint limits it to orders of that store."""
    endpoint_create(account=account, url=receiver.url + "/other-store", store_no="4029999999")
    order = OrderFactory(account=account, store_no="4021000008")
    move(order, OrderStatus.FAILED)
    assert (Event.objects.filter(order=order).count(), EventDelivery.objects.count()) == (0, 0)


def test_replay_command_sends_given_up_deliveries_again(account, endpoint, receiver):
    """replay_events sends a failed delivery again now, logs it as a replay, and marks it succeeded."""
    order = OrderFactory(account=account)
    move(order, OrderStatus.FAILED)
    delivery = EventDelivery.objects.get(endpoint=endpoint)
    EventDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED, attempts=9, next_attempt_at=None)

    out = io.StringIO()
    call_command("replay_events", "--since", "1h", stdout=out)

    delivery.refresh_from_db()
    assert out.getvalue().splitlines() == [
        f"#{delivery.pk} evt_{delivery.event_id} -> {endpoint.pk}: delivered",
        "Replayed 1 deliveries; 1 delivered.",
    ]
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 10)
    assert [a.trigger for a in delivery.attempt_log.all()] == ["replay:command"]
    assert receiver.event_types() == ["order.failed"]
