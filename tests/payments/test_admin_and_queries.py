"""The admin shows every transaction's story read-only; lists cost a constant number of queries."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from payments.models import OrderEvent, OrderStatus
from tests.factories import OrderFactory, RefundFactory


def _list_queries(client, page_size):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/api/v1/orders/?page_size={page_size}")
    assert response.status_code == 200
    assert len(response.json()["results"]) == page_size
    return len(queries)


def test_order_list_costs_the_same_queries_for_any_page_size(account, api_key):
    """Listing 2 or 40 orders, each with refunds, takes the same number of queries."""
    for _ in range(40):
        order = OrderFactory(account=account, status=OrderStatus.SUCCEEDED, paid_amount=Decimal("10.00"))
        RefundFactory(order=order, account=account, amount=Decimal("1.00"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key[1]}")
    _list_queries(client, 2)  # the first request also reads the API key, which the process then keeps for seconds
    assert _list_queries(client, 2) == _list_queries(client, 40)


def test_admin_order_list_and_story(admin_client, account):
    """The changelist lists orders in constant queries; the detail page shows the story, with no save button."""
    for _ in range(3):
        order = OrderFactory(account=account)
        OrderEvent.objects.create(
            order=order, kind="status_changed", source="test", to_status="pending", message="pushed to terminal"
        )
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get("/admin/payments/order/").status_code == 200
    for _ in range(10):
        OrderFactory(account=account)
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get("/admin/payments/order/").status_code == 200
    assert len(few) == len(many)
    detail = admin_client.get(f"/admin/payments/order/{order.pk}/change/")
    assert detail.status_code == 200
    assert b"pushed to terminal" in detail.content
    assert b'name="_save"' not in detail.content
    assert admin_client.post(f"/admin/payments/order/{order.pk}/delete/").status_code == 403


@pytest.mark.parametrize(
    "path", ["order", "refund", "gatewaycall", "batchclose", "merchantaccount", "batchcloseschedule", "apikey"]
)
def test_admin_pages_load(admin_client, account, path):
    assert admin_client.get(f"/admin/payments/{path}/").status_code == 200


def test_admin_sync_action_goes_through_the_service_and_is_audited(admin_client, api, sandbox_control, admin_user):
    """The sync action queries the gateway, applies the answer and leaves an admin event on the order."""
    from payments.models import Order

    api.post(
        "/api/v1/orders/",
        json={
            "channel": "terminal",
            "amount": "5.00",
            "currency": "USD",
            "description": "x",
            "terminal_sn": "WPYB002248000865",
            "merchant_order_no": "ADMIN-SYNC-1",
        },
    )
    sandbox_control.pay("ADMIN-SYNC-1")
    order = Order.objects.get(merchant_order_no="ADMIN-SYNC-1")
    response = admin_client.post(
        "/admin/payments/order/", {"action": "sync_with_gateway", "_selected_action": [order.pk]}
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED
    assert list(order.events.filter(source="admin").values_list("kind", "message")) == [
        ("admin_sync", f"by {admin_user.get_username()}"),
        ("status_changed", ""),
    ]
