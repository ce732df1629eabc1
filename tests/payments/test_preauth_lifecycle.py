"""
Pre-authorizations end to end: the REST API over real HTTP, the sandbox gateway over real HTTP, its signed
notifications to the live receiver (confirmed by query), and the order's final state.

Which transaction each follow-up names after a capture is ``payments.gateway.methods.FOLLOW_UPS``; the
sandbox enforces it, so these flows fail if the service names the wrong one.
"""

from __future__ import annotations

import pytest

from payments.models import GatewayCall, OrderEvent
from tests.webhooks.conftest import wait_for
from webhooks.models import NotificationDelivery
from webhooks.tasks import apply_due_notifications

TERMINAL_SN = "WPYB002248000865"
AUTH = {
    "channel": "terminal",
    "trans_type": "auth",
    "currency": "USD",
    "description": "Bar tab",
    "terminal_sn": TERMINAL_SN,
}


@pytest.fixture
def notified(settings, live_server, account, sandbox_reset):
    """The sandbox notifies the live receiver; every notification is confirmed by a signed order.query."""
    from codepay_service.celery import app
    from payments.services.accounts import gateway_clients_reset

    settings.CODEPAY_NOTIFY_URL = f"{live_server.url}/webhooks/codepay/"
    settings.CODEPAY_CONFIRM_NOTIFICATIONS = True
    settings.CODEPAY_NOTIFICATION_ALLOWED_NETWORKS = []
    settings.CODEPAY_NOTIFICATION_RETRY_DELAYS = (0, 0)
    settings.CODEPAY_NOTIFICATION_UNMATCHED_RETRY_DELAYS = (0, 0)
    settings.CODEPAY_NOTIFICATION_SWEEP_GRACE_SECONDS = 0
    gateway_clients_reset()
    yield
    gateway_clients_reset()
    app.control.purge()


def notifications_applied(merchant_order_no: str, count: int = 1) -> list[tuple[str, str]]:
    """Wait for ``count`` notifications about ``merchant_order_no``, apply them; their (trans_status, status)."""

    def arrived():
        return NotificationDelivery.objects.filter(merchant_order_no=merchant_order_no).count() >= count

    wait_for(arrived)
    apply_due_notifications()
    return list(
        NotificationDelivery.objects.filter(merchant_order_no=merchant_order_no)
        .order_by("id")
        .values_list("trans_status", "status")
    )


def authorized(api, sandbox_control, merchant_order_no: str, amount: str) -> dict:
    """A pre-auth pushed to the terminal, authorized there, and learnt from the gateway's notification."""
    created = api.post("/api/v1/orders/", json={**AUTH, "amount": amount, "merchant_order_no": merchant_order_no})
    assert (created.status_code, created.json()["status"]) == (201, "pending"), created.text
    sandbox_control.pay(merchant_order_no)
    assert notifications_applied(merchant_order_no) == [("2", "applied")]
    order = api.get(f"/api/v1/orders/{merchant_order_no}/").json()
    assert (order["status"], order["authorized_amount"], order["paid_amount"]) == ("authorized", amount, "0.00")
    return order


def gateway_view(sandbox_control, merchant_order_no: str) -> dict:
    response = sandbox_control.get(f"orders/{merchant_order_no}")
    assert response.status_code == 200, response.text
    return response.json()


def amounts(order: dict) -> dict:
    keys = (
        "status",
        "authorized_amount",
        "captured_amount",
        "tip_amount",
        "paid_amount",
        "refunded_amount",
        "refundable_amount",
    )
    return {key: order[key] for key in keys}


def test_auth_partial_capture_two_partial_refunds_and_an_over_refund_refused(api, sandbox_control, notified):
    """
    50.00 authorized, 30.00 captured (the rest released), 10.00 and 15.00 refunded as completion refunds of the
    capture (trans_type 8), then 5.01 refused: refunds never exceed what was captured.
    """
    authorized(api, sandbox_control, "TAB-1", "50.00")

    captured = api.post("/api/v1/orders/TAB-1/capture/", json={"amount": "30.00"})
    assert captured.status_code == 200, captured.text
    capture = captured.json()["operations"][0]
    assert (capture["kind"], capture["status"], capture["amount"]) == ("capture", "succeeded", "30.00")
    assert captured.json()["paid_at"] is not None
    second_capture = api.post("/api/v1/orders/TAB-1/capture/", json={"amount": "10.00"})
    assert second_capture.status_code == 409
    assert (
        second_capture.json()["error"]["message"] == "Only an authorized order can be captured; this one is succeeded."
    )

    first = api.post(
        "/api/v1/orders/TAB-1/refunds/",
        json={"amount": "10.00", "reason": "corked wine", "merchant_order_no": "TAB-1-R1"},
    )
    second = api.post(
        "/api/v1/orders/TAB-1/refunds/", json={"amount": "15.00", "reason": "cold", "merchant_order_no": "TAB-1-R2"}
    )
    over = api.post("/api/v1/orders/TAB-1/refunds/", json={"amount": "5.01", "reason": "again"})

    assert (first.status_code, first.json()["status"]) == (201, "succeeded"), first.text
    assert (second.status_code, second.json()["status"]) == (201, "succeeded"), second.text
    assert over.status_code == 400
    assert over.json()["error"]["details"] == {"amount": ["At most 5.00 USD can still be refunded on this order."]}
    for refund_no in ("TAB-1-R1", "TAB-1-R2"):
        view = gateway_view(sandbox_control, refund_no)
        assert (view["trans_type"], view["orig_merchant_order_no"], view["trans_status"]) == (
            "8",
            capture["merchant_order_no"],
            "2",
        )
        assert notifications_applied(refund_no) == [("2", "applied")]
    assert gateway_view(sandbox_control, capture["merchant_order_no"])["trans_type"] == "6"
    order = api.get("/api/v1/orders/TAB-1/").json()
    assert amounts(order) == {
        "status": "succeeded",
        "authorized_amount": "50.00",
        "captured_amount": "30.00",
        "tip_amount": "0.00",
        "paid_amount": "30.00",
        "refunded_amount": "25.00",
        "refundable_amount": "5.00",
    }


def test_auth_increment_capture_tip_adjustment_and_batch_close(api, sandbox_control, notified):
    """
    40.00 authorized, raised by 10.00, 45.00 captured, a 5.00 then 6.00 tip set on the capture (the new total,
    not added), then the terminal's batch closed with the published batch.close: 51.00 settled.
    """
    authorized(api, sandbox_control, "TAB-2", "40.00")

    incremented = api.post("/api/v1/orders/TAB-2/increment/", json={"amount": "10.00"})
    captured = api.post("/api/v1/orders/TAB-2/capture/", json={"amount": "45.00"})
    api.post("/api/v1/orders/TAB-2/tip/", json={"tip_amount": "5.00"})
    tipped = api.post("/api/v1/orders/TAB-2/tip/", json={"tip_amount": "6.00"})

    assert incremented.json()["authorized_amount"] == "50.00"
    assert captured.status_code == 200, captured.text
    assert tipped.status_code == 200, tipped.text
    capture_no = captured.json()["operations"][1]["merchant_order_no"]
    capture = gateway_view(sandbox_control, capture_no)
    assert (capture["tip_amount"], capture["trans_amount"], capture["paid_amount"]) == ("6.00", "51.00", "51.00")
    assert amounts(tipped.json()) == {
        "status": "succeeded",
        "authorized_amount": "50.00",
        "captured_amount": "45.00",
        "tip_amount": "6.00",
        "paid_amount": "51.00",
        "refunded_amount": "0.00",
        "refundable_amount": "51.00",
    }
    assert notifications_applied(capture_no) == [("2", "ignored")]  # the capture was applied from its answer

    closed = api.post("/api/v1/batches/close/", json={"terminal_sn_list": [TERMINAL_SN]})

    assert closed.status_code == 201, closed.text
    assert (closed.json()["status"], closed.json()["count"], closed.json()["total_amount"]) == ("succeeded", 1, "51")
    assert GatewayCall.objects.filter(method="batch.close", outcome="ok").count() == 1
    assert gateway_view(sandbox_control, capture_no)["batched"] is True
    late_tip = api.post("/api/v1/orders/TAB-2/tip/", json={"tip_amount": "7.00"})
    assert late_tip.status_code == 502
    assert "E04134" in late_tip.json()["error"]["message"]


def test_auth_void_releases_the_authorization(api, sandbox_control, notified):
    """Cancelling an authorized pre-auth voids it (trans_type 5 on the authorization); nothing was paid."""
    authorized(api, sandbox_control, "TAB-3", "20.00")

    voided = api.post("/api/v1/orders/TAB-3/cancel/")

    assert voided.status_code == 200, voided.text
    void_no = voided.json()["operations"][0]["merchant_order_no"]
    assert gateway_view(sandbox_control, void_no)["trans_type"] == "5"
    assert gateway_view(sandbox_control, "TAB-3")["trans_status"] == "3"
    assert notifications_applied("TAB-3", 2) == [("2", "applied"), ("3", "applied")]
    order = api.get("/api/v1/orders/TAB-3/").json()
    assert amounts(order) == {
        "status": "cancelled",
        "authorized_amount": "20.00",
        "captured_amount": "0.00",
        "tip_amount": "0.00",
        "paid_amount": "0.00",
        "refunded_amount": "0.00",
        "refundable_amount": "0.00",
    }
    assert api.post("/api/v1/orders/TAB-3/capture/", json={"amount": "1.00"}).status_code == 409


def test_a_capture_is_voided_before_its_batch_closes_and_refused_with_409_after(api, sandbox_control, notified):
    """
    Voiding a captured authorization voids the capture (trans_type 7, named by the capture's trans_no) and
    releases the authorization; once the terminal's batch is closed the gateway refuses, and the API says
    409 with what to do instead.
    """
    authorized(api, sandbox_control, "TAB-4", "30.00")
    api.post("/api/v1/orders/TAB-4/capture/", json={"amount": "25.00"})

    voided = api.post("/api/v1/orders/TAB-4/cancel/")

    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "cancelled"
    capture_no, void_no = (op["merchant_order_no"] for op in voided.json()["operations"])
    assert gateway_view(sandbox_control, void_no)["trans_type"] == "7"
    assert gateway_view(sandbox_control, void_no)["orig_merchant_order_no"] == capture_no
    assert (
        gateway_view(sandbox_control, capture_no)["trans_status"],
        gateway_view(sandbox_control, "TAB-4")["trans_status"],
    ) == ("3", "3")
    assert api.post("/api/v1/orders/TAB-4/refunds/", json={"amount": "1.00", "reason": "x"}).status_code == 409

    authorized(api, sandbox_control, "TAB-5", "30.00")
    api.post("/api/v1/orders/TAB-5/capture/", json={"amount": "30.00"})
    assert api.post("/api/v1/batches/close/", json={"terminal_sn_list": [TERMINAL_SN]}).json()["status"] == "succeeded"

    refused = api.post("/api/v1/orders/TAB-5/cancel/")

    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == (
        "The gateway no longer allows voiding this capture (for instance after its batch closed); refund it instead. "
        "The gateway answered: [E04134]Transaction is in a closed batch; refund it instead"
    )
    assert api.get("/api/v1/orders/TAB-5/").json()["status"] == "succeeded"
    assert (
        api.post("/api/v1/orders/TAB-5/refunds/", json={"amount": "30.00", "reason": "void refused"}).status_code == 201
    )


def test_an_uncaptured_authorization_that_expires_is_released(api, sandbox_control, notified):
    """
    An authorization never captured expires at the gateway (the hold is released, trans_status 3); its
    notification, confirmed by query, ends the order as cancelled with the reason, and it can no longer be
    captured.
    """
    authorized(api, sandbox_control, "TAB-6", "15.00")

    expired = sandbox_control.post("orders/TAB-6/expire")

    assert expired.status_code == 200, expired.text
    assert notifications_applied("TAB-6", 2) == [("2", "applied"), ("3", "applied")]
    order = api.get("/api/v1/orders/TAB-6/").json()
    assert (order["status"], order["paid_amount"], order["failure_code"], order["failure_message"]) == (
        "cancelled",
        "0.00",
        "AUTH_EXPIRED",
        "[AUTH_EXPIRED]AUTHORIZATION EXPIRED",
    )
    refused = api.post("/api/v1/orders/TAB-6/capture/", json={"amount": "15.00"})
    assert refused.status_code == 409
    assert (
        OrderEvent.objects.filter(
            order__merchant_order_no="TAB-6", kind="status_changed", to_status="cancelled"
        ).count()
        == 1
    )


def test_a_store_bound_key_closes_only_its_own_stores_terminals(api, make_api_client, notified):
    """A key bound to a store may close a terminal its store's orders used; another terminal is refused with 400."""
    from payments.models import MerchantAccount
    from payments.services.accounts import api_key_create

    account = MerchantAccount.objects.get()
    api.post("/api/v1/orders/", json={**AUTH, "amount": "1.00", "store_no": "STORE-A", "terminal_sn": "TERM-A"})
    _, key = api_key_create(name="store-a", account=account, store_no="STORE-A")
    store_a = make_api_client(key)

    refused = store_a.post("/api/v1/batches/close/", json={"terminal_sn_list": ["TERM-A", "TERM-B"]})
    allowed = store_a.post("/api/v1/batches/close/", json={"terminal_sn_list": ["TERM-A"]})

    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == {
        "terminal_sn_list": [
            "Not a terminal of store STORE-A: TERM-B. This API key closes its own store's terminals only."
        ]
    }
    assert (allowed.status_code, allowed.json()["status"]) == (201, "succeeded")


def test_a_decline_on_the_terminal_is_stored_and_shown_with_its_reason(api, sandbox_control, notified):
    """A payment declined on the terminal ends failed with the gateway's trans_error_code and trans_error_msg."""
    api.post(
        "/api/v1/orders/", json={**AUTH, "trans_type": "sale", "amount": "9.00", "merchant_order_no": "DECLINED-1"}
    )

    assert sandbox_control.post("orders/DECLINED-1/decline").status_code == 200
    assert notifications_applied("DECLINED-1") == [("1", "applied")]

    order = api.get("/api/v1/orders/DECLINED-1/").json()
    assert (order["status"], order["failure_code"], order["failure_message"], order["gateway_code"]) == (
        "failed",
        "05",
        "[05]DO NOT HONOR",
        "0",
    )


@pytest.mark.django_db
def test_the_database_holds_one_capture_per_authorization():
    """A second capture that succeeded or may have is refused by the database itself; a failed one leaves room."""
    from django.db import IntegrityError, transaction

    from payments.models import OrderOperation
    from tests.factories import OrderFactory

    order = OrderFactory(trans_type="auth", status="authorized")
    OrderOperation.objects.create(order=order, kind="capture", amount="1.00", status="failed")
    OrderOperation.objects.create(order=order, kind="capture", amount="1.00", status="unknown")
    for status in ("unknown", "succeeded"):
        with pytest.raises(IntegrityError), transaction.atomic():
            OrderOperation.objects.create(order=order, kind="capture", amount="1.00", status=status)
    assert OrderOperation.objects.filter(order=order, kind="capture").count() == 2
