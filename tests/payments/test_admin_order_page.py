"""
The order page for operators: a summary, one timeline, money actions behind their own permissions, each
confirmed on a page naming the amount and recorded under the operator's name; the site around it.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from payments.models import GatewayCall, Order, OrderEvent, OrderStatus, Refund
from payments.services.operations import order_increment
from payments.services.operators import OPERATOR_GROUP
from payments.services.orders import order_create, order_sync
from payments.services.refunds import order_refund
from tests.factories import OrderFactory, RefundFactory
from webhooks.models import NotificationDelivery

TERMINAL_SN = "WPYB002248000865"


def _paid(
    account, sandbox_control, merchant_order_no: str, *, trans_type: str = "sale", amount: str = "20.00"
) -> Order:
    """A terminal order stored, sent to the sandbox, paid on the terminal and synced."""
    order = order_create(
        account=account,
        api_key=None,
        channel="terminal",
        amount=Decimal(amount),
        currency="USD",
        description="Dinner",
        merchant_order_no=merchant_order_no,
        terminal_sn=TERMINAL_SN,
        trans_type=trans_type,
    ).obj
    sandbox_control.pay(merchant_order_no)
    order_sync(order=order, source="test")
    return Order.objects.get(pk=order.pk)


def _operator(*perms: str, username: str = "olivia") -> User:
    """A staff user in the read-only operator group, with extra permissions (``payments.refund_order``...)."""
    user = User.objects.create_user(username=username, password="operator-password", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATOR_GROUP))
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def _page(client, order: Order) -> str:
    response = client.get(reverse("admin:payments_order_change", args=[order.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _action_url(order: Order, action: str) -> str:
    return reverse("admin:payments_order_action", args=[order.pk, action])


def test_summary_shows_amounts_in_the_currency_digits_with_the_currency(admin_client, account):
    """
    Amounts read "12.34 USD" (never 12.340); the status is a badge; a failed order shows its decline reason;
    times are shown to the second.
    """
    order = OrderFactory(
        account=account,
        status=OrderStatus.FAILED,
        amount=Decimal("12.340"),
        gateway_code="2002",
        gateway_message="Insufficient funds",
        pay_method_id="Visa",
        pay_scenario="SWIPE_CARD",
    )

    page = _page(admin_client, order)

    assert "<dt>Amount</dt><dd>12.34 USD</dd>" in page
    assert "12.340" not in page.split('id="order-timeline"')[0]
    assert '<span class="cp-badge cp-failed">Failed</span>' in page
    assert "<dt>Paid with</dt><dd>Visa · SWIPE_CARD</dd>" in page
    assert '<dd class="cp-decline">Insufficient funds (code 2002)</dd>' in page
    assert f'<div class="readonly">{order.created_at:%Y-%m-%d %H:%M:%S}</div>' in page


def test_internal_fields_are_folded_and_inline_rows_have_names(admin_client, account):
    """Lease and raw gateway status columns sit in a collapsed "Internal" fieldset; no "object (n)" titles."""
    order = RefundFactory(account=account, order__account=account).order

    page = _page(admin_client, order)

    before, collapsed = page.split('<fieldset class="module aligned collapse"')
    assert (
        collapsed.index("<details><summary>") < collapsed.index("Internal</h2>") < collapsed.index("Check leased until")
    )
    assert ("Check leased until" in collapsed, "Gateway trans status" in collapsed) == (True, True)
    assert ("Check leased until" in before, "Gateway trans status" in before) == (False, False)
    assert "object (" not in page


def test_timeline_merges_events_gateway_calls_of_refunds_and_increments_and_notifications(
    admin_client, account, sandbox_control
):
    """
    One timeline, oldest first, with seconds: the order's events, the calls of the order, of its refund and
    of an increment addressed by trans_no only, and its notification deliveries, each linking to its page.
    """
    order = _paid(account, sandbox_control, "TL-1", trans_type="auth")
    order_increment(order=order, amount=Decimal("5.00"), source="test")
    NotificationDelivery.objects.create(
        account=account,
        account_code="default",
        received_at=timezone.now(),
        raw_body=b"{}",
        body_size=2,
        verification="valid",
        merchant_order_no="TL-1",
        trans_status="3",
        status="applied",
        order=order,
    )
    increment = GatewayCall.objects.get(method="pay.incremental.auth")

    page = _page(admin_client, order)
    timeline = page.split('id="order-timeline"')[1]

    for call in GatewayCall.objects.filter(merchant_order_no="TL-1"):
        assert reverse("admin:payments_gatewaycall_change", args=[call.pk]) in timeline
    assert reverse("admin:payments_gatewaycall_change", args=[increment.pk]) in timeline
    delivery = NotificationDelivery.objects.get()
    assert reverse("admin:webhooks_notificationdelivery_change", args=[delivery.pk]) in timeline
    for event in OrderEvent.objects.filter(order=order):
        assert reverse("admin:payments_orderevent_change", args=[event.pk]) in timeline
    first = OrderEvent.objects.filter(order=order).first()
    assert timezone.localtime(first.created_at).strftime("%Y-%m-%d %H:%M:%S") in timeline


def test_timeline_finds_the_refund_calls_of_a_paid_order(admin_client, account, sandbox_control):
    """A refund's gateway call, made under the refund's own number, is on the order's timeline."""
    order = _paid(account, sandbox_control, "TL-R")
    refund = order_refund(order=order, amount=Decimal("4.00"), reason="Broken", source="test").obj

    timeline = _page(admin_client, order).split('id="order-timeline"')[1]

    call = GatewayCall.objects.get(merchant_order_no=refund.merchant_order_no)
    assert (
        f'<a href="{reverse("admin:payments_gatewaycall_change", args=[call.pk])}">{call.method} '
        f"{refund.merchant_order_no}</a>" in timeline
    )


def test_order_page_costs_the_same_queries_for_two_or_ten_refunds(admin_client, account):
    """Refunds, their events and the timeline are read in a fixed number of queries (no per-row query)."""
    order = OrderFactory(account=account, status=OrderStatus.SUCCEEDED, paid_amount=Decimal("50.00"))

    def add_refunds(count):
        for _ in range(count):
            refund = RefundFactory(order=order, account=account)
            OrderEvent.objects.create(order=order, refund=refund, kind="refund_requested", source="test")

    add_refunds(2)
    with CaptureQueriesContext(connection) as few:
        _page(admin_client, order)
    add_refunds(8)
    with CaptureQueriesContext(connection) as many:
        _page(admin_client, order)

    assert len(many) == len(few)


def test_read_only_operator_sees_orders_but_no_action_and_cannot_open_one(client, account):
    """The read-only group views every list; the page offers no action and a direct action URL is 403."""
    order = OrderFactory(account=account, status=OrderStatus.SUCCEEDED, paid_amount=Decimal("10.00"))
    client.force_login(_operator())

    page = _page(client, order)

    assert 'class="cp-action"' not in page
    assert client.get(_action_url(order, "refund")).status_code == 403
    assert client.post(_action_url(order, "refund"), {"amount": "1.00", "reason": "x"}).status_code == 403
    for path in ("payments/refund/", "payments/gatewaycall/", "payments/batchclose/", "webhooks/notificationdelivery/"):
        assert client.get(f"/admin/{path}").status_code == 200
    assert client.get(reverse("admin:payments_order_changelist")).status_code == 200
    assert Refund.objects.count() == 0


def test_refund_from_the_admin_names_the_amount_goes_through_the_service_and_is_audited(
    client, account, sandbox_control
):
    """
    The refund page names what can still be refunded; confirming refunds at the gateway, leaves an event
    naming the operator and an admin log entry.
    """
    order = _paid(account, sandbox_control, "ADM-R")
    client.force_login(_operator("payments.refund_order"))

    confirm = client.get(_action_url(order, "refund")).content.decode()
    response = client.post(_action_url(order, "refund"), {"amount": "7.50", "reason": "Cold soup"})

    assert "at most 20.00 USD can still be refunded." in confirm
    assert 'value="20.00"' in confirm
    assert response.status_code == 302
    refund = Refund.objects.get(order=order)
    assert (refund.amount, refund.status, refund.reason) == (Decimal("7.50"), "succeeded", "Cold soup")
    assert OrderEvent.objects.filter(order=order, source="admin").values_list("kind", "message")[0] == (
        "admin_refund",
        "by olivia: refund 7.50 USD: Cold soup",
    )
    assert LogEntry.objects.get().change_message == "by olivia: refund 7.50 USD: Cold soup"


def test_refund_above_the_refundable_amount_is_refused_on_the_form(client, account, sandbox_control):
    """The service's refusal is shown on the amount field; nothing is refunded; the attempt is still on record."""
    order = _paid(account, sandbox_control, "ADM-OVER")
    client.force_login(_operator("payments.refund_order"))

    response = client.post(_action_url(order, "refund"), {"amount": "20.01", "reason": "Too much"})
    bad_digits = client.post(_action_url(order, "refund"), {"amount": "1.001", "reason": "x"})

    assert response.status_code == 200
    assert "At most 20.00 USD can still be refunded on this order." in response.content.decode()
    assert "USD amounts have at most 2 decimal places; got &#x27;1.001&#x27;." in bad_digits.content.decode()
    assert Refund.objects.count() == 0
    assert list(OrderEvent.objects.filter(order=order, source="admin").values_list("kind", flat=True)) == [
        "admin_refund"
    ]


def test_capture_tip_and_void_each_need_their_own_permission(client, account, sandbox_control):
    """An operator allowed to capture cannot void; capture and void of an authorization go through the services."""
    order = _paid(account, sandbox_control, "ADM-AUTH", trans_type="auth")
    client.force_login(_operator("payments.capture_order"))

    page = _page(client, order)
    assert client.get(_action_url(order, "void")).status_code == 403
    assert client.get(_action_url(order, "tip")).status_code == 403
    capture_page = client.get(_action_url(order, "capture")).content.decode()
    captured = client.post(_action_url(order, "capture"), {"amount": "12.00"})

    assert f'href="/admin/payments/order/{order.pk}/actions/capture/"' in page
    assert "/actions/void/" not in page
    assert "at most 20.00 USD can be captured." in capture_page
    assert captured.status_code == 302
    order.refresh_from_db()
    assert (order.status, order.captured_amount) == (OrderStatus.SUCCEEDED, Decimal("12.00"))
    assert OrderEvent.objects.filter(order=order, kind="admin_capture").get().message == "by olivia: capture 12.00 USD"


def test_void_of_an_authorization_from_the_admin(client, account, sandbox_control):
    """Void names the authorized amount released, voids at the gateway and records the operator."""
    order = _paid(account, sandbox_control, "ADM-VOID", trans_type="auth")
    client.force_login(_operator("payments.void_order"))

    confirm = client.get(_action_url(order, "void")).content.decode()
    response = client.post(_action_url(order, "void"), {"confirm": "Void"})

    assert "Void the authorization: 20.00 USD is released to the customer." in confirm
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert OrderEvent.objects.get(order=order, kind="admin_void").message == "by olivia: void"


def test_tip_adjustment_from_the_admin(client, account, sandbox_control):
    """The tip page shows the current tip; a new tip raises the paid amount through the service."""
    order = _paid(account, sandbox_control, "ADM-TIP")
    client.force_login(_operator("payments.adjust_tip_order"))

    response = client.post(_action_url(order, "tip"), {"tip_amount": "3.00"})

    assert response.status_code == 302
    order.refresh_from_db()
    assert (order.tip_amount, order.paid_amount) == (Decimal("3.00"), Decimal("23.00"))
    assert OrderEvent.objects.get(order=order, kind="admin_tip").message == "by olivia: adjust tip 3.00 USD"


def test_sync_from_the_order_page(client, account, sandbox_control):
    """Sync asks the gateway now: a paid order that was pending here becomes succeeded."""
    order = order_create(
        account=account,
        api_key=None,
        channel="terminal",
        amount=Decimal("9.00"),
        currency="USD",
        description="x",
        merchant_order_no="ADM-SYNC",
        terminal_sn=TERMINAL_SN,
    ).obj
    sandbox_control.pay("ADM-SYNC")
    client.force_login(_operator("payments.sync_order"))

    confirm = client.get(_action_url(order, "sync")).content.decode()
    response = client.post(_action_url(order, "sync"), {"confirm": "Sync"})

    assert "Ask CodePay about this 9.00 USD order now" in confirm
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED


def test_operator_group_holds_view_permissions_only(db):
    """The group exists after migrate, with every view permission of payments and webhooks and nothing else."""
    group = Group.objects.get(name=OPERATOR_GROUP)
    codenames = set(group.permissions.values_list("codename", flat=True))

    assert {
        "view_order",
        "view_refund",
        "view_gatewaycall",
        "view_batchclose",
        "view_notificationdelivery",
    } <= codenames
    assert all(codename.startswith("view_") for codename in codenames)
    assert "view_idempotencyrecord" not in codenames


def test_one_api_keys_entry_and_beat_models_only_for_superusers(client, admin_client, db):
    """The index lists "API keys" once; periodic tasks are hidden from staff and shown to superusers."""
    client.force_login(_operator())
    staff_index = client.get("/admin/").content.decode()
    super_index = admin_client.get("/admin/").content.decode()

    assert super_index.count(">API keys<") == 1
    assert "/admin/rest_framework_api_key/" not in super_index
    assert "Periodic tasks" in super_index
    assert "Periodic tasks" not in staff_index
    assert client.get("/admin/django_celery_beat/periodictask/").status_code == 403


def test_changelists_show_a_status_badge_in_few_columns(admin_client, account):
    """The order list has seven columns (plus the checkbox), the status as a badge."""
    OrderFactory(account=account, status=OrderStatus.SUCCEEDED)

    response = admin_client.get(reverse("admin:payments_order_changelist"))

    assert len(response.context["cl"].list_display) == 8
    assert '<span class="cp-badge cp-ok">succeeded</span>' in response.content.decode()


def test_an_event_linked_from_the_timeline_opens_with_its_data(admin_client, account):
    """An event's own page shows its data read-only."""
    order = OrderFactory(account=account)
    event = OrderEvent.objects.create(order=order, kind="conflict", source="test", data={"order_amount": "10.01"})

    response = admin_client.get(reverse("admin:payments_orderevent_change", args=[event.pk]))

    assert response.status_code == 200
    assert "10.01" in response.content.decode()
    assert b'name="_save"' not in response.content


def test_needs_an_operator_filter_lists_each_queue(admin_client, account):
    """The order list filters the queues of docs/operations.md: unknown orders, unknown refunds, conflicts."""
    unknown = OrderFactory(account=account, status=OrderStatus.UNKNOWN)
    conflicted = OrderFactory(account=account, status=OrderStatus.PENDING)
    OrderEvent.objects.create(order=conflicted, kind="conflict", source="notification", message="amount differs")
    OrderEvent.objects.create(order=conflicted, kind="conflict", source="sync", message="amount differs again")
    refund_unknown = RefundFactory(account=account, order__account=account, status="unknown").order
    OrderFactory(account=account, status=OrderStatus.SUCCEEDED)

    def listed(value):
        response = admin_client.get(reverse("admin:payments_order_changelist"), {"attention": value})
        return [order.pk for order in response.context["cl"].result_list]

    assert listed("unknown") == [unknown.pk]
    assert listed("conflict") == [conflicted.pk]
    assert listed("refund_unknown") == [refund_unknown.pk]
    assert listed("operation_unknown") == []


def test_a_capture_whose_answer_is_lost_is_reported_as_unknown(client, account, sandbox_control):
    """
    CodePay acts on the capture but answers 500: the operator is told the outcome is unknown (nothing is
    resent), the operation stays unknown for the reconciler, and the attempt is on record.
    """
    order = _paid(account, sandbox_control, "ADM-LOST", trans_type="auth")
    client.force_login(_operator("payments.capture_order"))
    sandbox_control.fault(method="pay.capture", fault="http_500_after")

    response = client.post(_action_url(order, "capture"), {"amount": "5.00"}, follow=True)

    assert "Capture: CodePay did not answer; the reconciler will find out." in response.content.decode()
    assert list(order.operations.values_list("kind", "status")) == [("capture", "unknown")]
    assert OrderEvent.objects.get(order=order, kind="admin_capture").message == "by olivia: capture 5.00 USD"


def test_an_unknown_action_or_order_is_not_found(admin_client, account):
    """Only the five declared actions exist; any other name, or a missing order, answers 404."""
    order = OrderFactory(account=account)

    assert admin_client.get(_action_url(order, "delete")).status_code == 404
    assert admin_client.get(reverse("admin:payments_order_action", args=[999999, "refund"])).status_code == 404
