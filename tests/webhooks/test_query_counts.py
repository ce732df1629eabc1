"""
Database queries per notification received and per notification applied, counted (deterministic; the
timings are in docs/benchmarks.md).
"""

import json

from django.test import Client

from payments.models import OrderStatus
from tests.factories import OrderFactory
from tests.webhooks.conftest import notification_fields, signed
from webhooks.models import NotificationDelivery, ProcessingStatus
from webhooks.services import notification_apply


def _post(fields) -> str:
    response = Client().post("/webhooks/codepay/", data=json.dumps(signed(fields)), content_type="application/json")
    return response.content.decode()


def test_receiving_a_notification_costs_one_query(notify_account, django_assert_num_queries):
    """
    A valid delivery: the insert, nothing else. The account is read once per process and kept for seconds,
    so only the first delivery reads it.
    """
    OrderFactory(account=notify_account, merchant_order_no="QN-1")
    assert _post(notification_fields("QN-0")) == "success"

    with django_assert_num_queries(1):
        assert _post(notification_fields("QN-1")) == "success"

    delivery = NotificationDelivery.objects.get(merchant_order_no="QN-1")
    assert (delivery.status, delivery.verification) == (ProcessingStatus.RECEIVED, "valid")


def test_a_copy_of_an_applied_notification_is_a_duplicate_in_three_queries(notify_account, django_assert_num_queries):
    """
    The gateway re-posts a notification already applied: the copy is received like any delivery, and the
    worker records it as "duplicate", pointing at the order, without asking the gateway or touching the
    order: read the delivery, find the settled copy, settle the delivery (one conditional update).
    """
    order = OrderFactory(account=notify_account, merchant_order_no="QN-2")
    fields = notification_fields("QN-2")
    assert _post(fields) == "success"
    first = NotificationDelivery.objects.get()
    assert notification_apply(delivery_id=first.pk).status == ProcessingStatus.APPLIED
    assert _post(fields) == "success"
    copy = NotificationDelivery.objects.exclude(pk=first.pk).get()
    order.refresh_from_db()
    order_before = (order.status, order.updated_at)

    with django_assert_num_queries(3):
        outcome = notification_apply(delivery_id=copy.pk)

    copy.refresh_from_db()
    order.refresh_from_db()
    assert outcome.status == ProcessingStatus.DUPLICATE
    assert (copy.status, copy.order_id, copy.next_attempt_at, copy.status_message) == (
        ProcessingStatus.DUPLICATE,
        order.pk,
        None,
        "another copy of this notification was already applied",
    )
    assert (order.status, order.updated_at) == order_before


def test_applying_a_notification_costs_at_most_seventeen_queries(notify_account, django_assert_max_num_queries):
    """
    A payment notification applied from its own fields (confirmation off): read the delivery, count the
    attempt, find the order (refund first), look for a settled copy, then one transaction locking the
    order and the delivery, moving the order under its own lock with its event and the look-up of event
    endpoints that want it, and settling the delivery.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="QN-3", status=OrderStatus.PENDING)
    assert _post(notification_fields("QN-3")) == "success"
    delivery = NotificationDelivery.objects.get()

    with django_assert_max_num_queries(17):
        outcome = notification_apply(delivery_id=delivery.pk)

    order.refresh_from_db()
    assert (outcome.status, order.status) == (ProcessingStatus.APPLIED, OrderStatus.SUCCEEDED)
