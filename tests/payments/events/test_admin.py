"""Outbound events in the admin: the delivery log with its attempts, replay, endpoints and their secrets."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.urls import reverse

from payments.events.models import DeliveryStatus, EventDelivery, EventEndpoint
from payments.models import Order, OrderStatus
from payments.services.orders import order_transition
from tests.factories import OrderFactory


def failed_delivery(account, endpoint) -> EventDelivery:
    order = OrderFactory(account=account)
    locked = Order.objects.select_for_update().get(pk=order.pk)
    order_transition(locked, OrderStatus.FAILED, source="test")
    delivery = EventDelivery.objects.get(endpoint=endpoint)
    EventDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED, attempts=12)
    return delivery


def test_the_delivery_log_shows_each_delivery_and_its_body(account, endpoint, admin_client):
    """The changelist lists the delivery with its type; its page shows the exact body sent."""
    delivery = failed_delivery(account, endpoint)
    listed = admin_client.get(reverse("admin:payments_eventdelivery_changelist"))
    assert listed.status_code == 200
    assert "order.failed" in listed.content.decode()
    page = admin_client.get(reverse("admin:payments_eventdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert f"evt_{delivery.event_id}" in page.content.decode()


def test_replay_in_the_admin_sends_the_delivery_again_and_logs_it(account, endpoint, receiver, admin_client):
    """The replay action posts the event now, marks it succeeded, and records it under the operator's name."""
    delivery = failed_delivery(account, endpoint)
    response = admin_client.post(
        reverse("admin:payments_eventdelivery_changelist"),
        {"action": "replay_deliveries", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 13)
    assert [a.trigger for a in delivery.attempt_log.all()] == ["replay:admin"]
    assert receiver.event_types() == ["order.failed"]
    assert LogEntry.objects.get(object_id=str(delivery.pk)).change_message == "Replayed: HTTP 200"


def test_an_endpoint_added_in_the_admin_gets_a_generated_secret_and_never_shows_it_again(account, admin_client):
    """Adding an endpoint generates its secret, shown once in the message; the change page does not show it."""
    response = admin_client.post(
        reverse("admin:payments_eventendpoint_add"),
        {
            "account": account.pk,
            "store_no": "",
            "url": "https://pos.example.com/hooks",
            "description": "",
            "event_types": "[]",
            "is_active": "on",
        },
        follow=True,
    )
    endpoint = EventEndpoint.objects.get(url="https://pos.example.com/hooks")
    assert endpoint.secret.startswith("whsec_")
    assert f"(shown once): {endpoint.secret}" in response.content.decode()
    page = admin_client.get(reverse("admin:payments_eventendpoint_change", args=[endpoint.pk]))
    assert endpoint.secret not in page.content.decode()
