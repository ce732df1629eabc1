"""The deliveries admin: read-only evidence, escaped bodies, one query for the list, replay through the service."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from payments.models import Order, OrderStatus
from tests.factories import OrderFactory
from tests.webhooks.conftest import notification_fields
from webhooks.models import NotificationDelivery, NotificationReplay
from webhooks.services import notification_apply

CHANGELIST = "admin:webhooks_notificationdelivery_changelist"


def _applied_deliveries(gateway, account, count: int, prefix: str) -> None:
    for index in range(count):
        OrderFactory(account=account, merchant_order_no=f"{prefix}-{index}")
        gateway.notify(notification_fields(f"{prefix}-{index}"))
    for delivery_id in NotificationDelivery.objects.filter(merchant_order_no__startswith=prefix).values_list(
        "pk", flat=True
    ):
        notification_apply(delivery_id=delivery_id)


def _list_queries(admin_client, query: str = "") -> int:
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(CHANGELIST) + query)
    assert response.status_code == 200
    return len(queries)


def test_the_list_costs_the_same_queries_for_two_or_twelve_rows(gateway, notify_account, admin_client):
    """The changelist, with its order links, makes as many queries for 12 deliveries as for 2 (no per-row query)."""
    _applied_deliveries(gateway, notify_account, 2, "FEW")
    few = _list_queries(admin_client)
    _applied_deliveries(gateway, notify_account, 10, "MANY")

    assert _list_queries(admin_client) == few


def test_the_list_filters_and_searches(gateway, notify_account, admin_client):
    """Filters on verification and processing status and an exact search on merchant_order_no narrow the list."""
    _applied_deliveries(gateway, notify_account, 2, "FIND")
    gateway.post('{"merchant_order_no": "FIND-X", "sign": "AAAA"}')

    rejected = admin_client.get(reverse(CHANGELIST), {"verification__exact": "invalid_signature"})
    applied = admin_client.get(reverse(CHANGELIST), {"status__exact": "applied", "q": "FIND-1"})

    assert [row.merchant_order_no for row in rejected.context["cl"].result_list] == ["FIND-X"]
    assert [row.merchant_order_no for row in applied.context["cl"].result_list] == ["FIND-1"]
    order_url = reverse("admin:payments_order_change", args=[Order.objects.get(merchant_order_no="FIND-1").pk])
    assert f'<a href="{order_url}">FIND-1</a>' in applied.content.decode()


def test_nothing_can_be_added_changed_or_deleted(gateway, notify_account, admin_client):
    """The add and delete views answer 403, and the detail view shows no save button and no editable field."""
    gateway.notify(notification_fields("RO-1"))
    delivery = NotificationDelivery.objects.get()

    add = admin_client.get(reverse("admin:webhooks_notificationdelivery_add"))
    delete = admin_client.post(
        reverse("admin:webhooks_notificationdelivery_delete", args=[delivery.pk]), {"post": "yes"}
    )
    detail = admin_client.get(reverse("admin:webhooks_notificationdelivery_change", args=[delivery.pk]))

    assert (add.status_code, delete.status_code, detail.status_code) == (403, 403, 200)
    assert (b'name="_save"' in detail.content, b"<textarea" in detail.content) == (False, False)
    assert NotificationDelivery.objects.count() == 1


def test_the_raw_body_is_shown_escaped(gateway, notify_account, admin_client):
    """A body carrying markup (in attach) is pretty-printed escaped: no live <script> reaches the page."""
    gateway.notify(notification_fields("XSS-1", attach="<script>alert('x')</script>"))
    delivery = NotificationDelivery.objects.get()

    page = admin_client.get(reverse("admin:webhooks_notificationdelivery_change", args=[delivery.pk])).content.decode()

    assert "<script>alert(" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&quot;merchant_order_no&quot;: &quot;XSS-1&quot;" in page


def test_the_replay_action_applies_through_the_service_and_is_audited(gateway, notify_account, admin_client):
    """
    The replay action applies a selected delivery that was never applied, records a NotificationReplay by
    "admin:<username>" and an admin log entry, and reports the count.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="ACT-1")
    gateway.notify(notification_fields("ACT-1"))
    delivery = NotificationDelivery.objects.get()

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "replay", "_selected_action": [delivery.pk]}, follow=True
    )

    assert "Replayed 1 deliveries; 1 changed status." in response.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED
    assert list(NotificationReplay.objects.values_list("actor", "status_before", "status_after")) == [
        ("admin:admin", "received", "applied")
    ]
    assert LogEntry.objects.get().change_message.startswith("Replayed: received -> applied")


def test_a_failed_delivery_shows_its_whole_traceback_escaped(gateway, notify_account, admin_client):
    """The detail page shows ``last_traceback`` in full, indentation kept (in a <pre>) and escaped."""
    gateway.notify(notification_fields("TB-1"))
    delivery = NotificationDelivery.objects.get()
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: <b>bad</b>\n'
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        last_error="ValueError: <b>bad</b>", last_traceback=trace
    )

    page = admin_client.get(reverse("admin:webhooks_notificationdelivery_change", args=[delivery.pk])).content.decode()

    assert "Last traceback" in page
    assert (
        '<pre style="white-space: pre-wrap">Traceback (most recent call last):\n'
        "  File &quot;x.py&quot;, line 1, in &lt;module&gt;\nValueError: &lt;b&gt;bad&lt;/b&gt;\n</pre>"
    ) in page
