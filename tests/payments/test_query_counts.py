"""
Database queries per operation on the hot paths, counted (deterministic, unlike timings; the timings are
in docs/benchmarks.md). Transactional tests, so each transaction is a real one and costs no SAVEPOINTs.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from payments.models import Channel, Order, OrderStatus
from payments.services.orders import order_create
from payments.services.reconcile import order_reconcile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sandbox_reset")]
TERMINAL_SN = "WPYB002248000865"


def _sale(merchant_order_no: str) -> dict:
    return {
        "channel": "terminal",
        "amount": "10.00",
        "currency": "USD",
        "description": "Flat white",
        "terminal_sn": TERMINAL_SN,
        "merchant_order_no": merchant_order_no,
    }


def test_creating_a_terminal_sale_through_the_api_costs_three_queries(account, api_key, django_assert_num_queries):
    """
    A terminal sale answered by the gateway: the number, the order and its "created" event in one
    statement, the gateway call's audit row, the move to pending with its event in one statement; the API
    key is read once per process and then kept, so the second request costs no query for it.
    """
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key[1]}")
    assert client.post("/api/v1/orders/", _sale("QC-1"), format="json").status_code == 201

    with django_assert_num_queries(3):
        response = client.post("/api/v1/orders/", _sale("QC-2"), format="json")

    assert (response.status_code, response.json()["status"], response.json()["refunds"]) == (201, "pending", [])
    order = Order.objects.get(merchant_order_no="QC-2")
    assert (order.status, order.gateway_trans_status, order.trans_no != "") == (OrderStatus.PENDING, "9", True)
    assert list(order.events.order_by("id").values_list("kind", "to_status")) == [
        ("created", OrderStatus.UNKNOWN),
        ("status_changed", OrderStatus.PENDING),
    ]


def _due(order: Order) -> Order:
    Order.objects.filter(pk=order.pk).update(next_check_at=timezone.now() - timedelta(seconds=1))
    return Order.objects.select_related("account").get(pk=order.pk)


def _terminal_order(account, merchant_order_no: str) -> Order:
    return order_create(
        account=account,
        api_key=None,
        channel=Channel.TERMINAL,
        amount=Decimal("10.00"),
        currency="USD",
        description="Flat white",
        terminal_sn=TERMINAL_SN,
        merchant_order_no=merchant_order_no,
    ).obj


def test_reconciling_a_waiting_order_costs_two_queries(account, django_assert_num_queries):
    """Still waiting at the gateway: the query's audit row and the next check; nothing locked or written."""
    order = _due(_terminal_order(account, "QR-WAIT"))

    with django_assert_num_queries(2):
        assert order_reconcile(order=order) is None

    order.refresh_from_db()
    assert (order.status, order.check_attempts) == (OrderStatus.PENDING, 1)


def test_reconciling_an_order_the_gateway_never_received_costs_three_queries(
    account, settings, django_assert_num_queries
):
    """Unknown to the gateway within the grace period: the audit row, the start of the grace, the next check."""
    now = timezone.now()
    order = Order.objects.create(
        account=account,
        merchant_order_no="QR-LOST",
        channel=Channel.TERMINAL,
        status=OrderStatus.UNKNOWN,
        currency="USD",
        amount=Decimal("10.00"),
        description="lost",
        terminal_sn=TERMINAL_SN,
        expires_at=now + timedelta(minutes=5),
        next_check_at=now - timedelta(seconds=1),
    )
    order = Order.objects.select_related("account").get(pk=order.pk)

    with django_assert_num_queries(3):
        assert order_reconcile(order=order) is None

    order.refresh_from_db()
    assert (order.status, order.not_found_since is not None, order.check_attempts) == (OrderStatus.UNKNOWN, True, 1)


def test_reconciling_a_paid_order_costs_eight_queries(account, sandbox_control, django_assert_num_queries):
    """
    Paid at the gateway: the audit row, one transaction (BEGIN, the row lock, the move to succeeded, its
    event, the look-up of event endpoints that want it, COMMIT), the counted check. Above the target of 3:
    money moves only under the row lock, in a transaction with its event and outbound event.
    """
    order = _due(_terminal_order(account, "QR-PAID"))
    sandbox_control.pay("QR-PAID")

    with django_assert_num_queries(8):
        change = order_reconcile(order=order)

    assert (change.from_status, change.to_status) == (OrderStatus.PENDING, OrderStatus.SUCCEEDED)
    order.refresh_from_db()
    assert (order.status, order.paid_amount, order.next_check_at) == (OrderStatus.SUCCEEDED, Decimal("10.00"), None)
