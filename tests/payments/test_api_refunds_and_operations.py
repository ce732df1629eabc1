"""Refunds, authorizations (capture, increment, void), tips, cancel and batches over the real HTTP stack."""

import threading
from decimal import Decimal

import pytest

from payments.models import GatewayCall, Order, Refund

TERMINAL_ORDER = {
    "channel": "terminal",
    "amount": "20.00",
    "currency": "USD",
    "description": "Dinner",
    "terminal_sn": "WPYB002248000865",
}


@pytest.fixture
def paid_order(api, sandbox_control):
    """A terminal sale of 20.00 USD paid on the terminal and synced."""

    def make(merchant_order_no, **overrides):
        response = api.post(
            "/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": merchant_order_no, **overrides}
        )
        assert response.status_code == 201, response.text
        sandbox_control.pay(merchant_order_no)
        synced = api.post(f"/api/v1/orders/{merchant_order_no}/sync/")
        assert synced.json()["status"] in ("succeeded", "authorized"), synced.text
        return synced.json()

    return make


def test_partial_refunds_add_up_and_cannot_exceed_what_was_paid(api, paid_order):
    """Two partial refunds succeed and are summed; a third above the rest is refused with the refundable amount."""
    paid_order("SALE-1")
    first = api.post(
        "/api/v1/orders/SALE-1/refunds/",
        json={"amount": "5.00", "reason": "cold soup", "merchant_order_no": "SALE-1-R1"},
    )
    assert first.status_code == 201, first.text
    assert first.json() == {
        **first.json(),
        "merchant_order_no": "SALE-1-R1",
        "orig_merchant_order_no": "SALE-1",
        "status": "succeeded",
        "amount": "5.00",
        "currency": "USD",
        "reason": "cold soup",
    }
    assert api.post("/api/v1/orders/SALE-1/refunds/", json={"amount": "10.00", "reason": "late"}).status_code == 201
    too_much = api.post("/api/v1/orders/SALE-1/refunds/", json={"amount": "5.01", "reason": "again"})
    assert too_much.status_code == 400
    assert too_much.json()["error"]["details"] == {"amount": ["At most 5.00 USD can still be refunded on this order."]}
    order = api.get("/api/v1/orders/SALE-1/").json()
    assert order["refunded_amount"] == "15.00"
    assert len(order["refunds"]) == 2 and "SALE-1-R1" in [r["merchant_order_no"] for r in order["refunds"]]
    refund = api.get("/api/v1/refunds/SALE-1-R1/")
    assert refund.status_code == 200 and refund.json()["amount"] == "5.00"


def test_concurrent_refunds_never_exceed_the_paid_amount(api, paid_order):
    """Five simultaneous 6.00 refunds of a 20.00 sale: exactly three succeed, the others are refused."""
    paid_order("SALE-RACE")
    results = []

    def refund(n):
        results.append(api.post("/api/v1/orders/SALE-RACE/refunds/", json={"amount": "6.00", "reason": f"race {n}"}))

    threads = [threading.Thread(target=refund, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in results) == [201, 201, 201, 400, 400]
    order = Order.objects.get(merchant_order_no="SALE-RACE")
    assert order.refunded_amount == Decimal("18.00")
    assert Refund.objects.filter(order=order, status="succeeded").count() == 3


def test_refund_of_an_unpaid_order_is_a_conflict(api):
    """A pending order has nothing to refund: 409, and no gateway call is made."""
    api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "UNPAID-1"})
    response = api.post("/api/v1/orders/UNPAID-1/refunds/", json={"amount": "1.00", "reason": "x"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "state_conflict"
    assert GatewayCall.objects.filter(method="order.refund.submit").count() == 0


def test_refund_input_is_validated_for_the_order_currency(api, paid_order):
    """Zero, negative and over-precise refund amounts are refused per field."""
    paid_order("SALE-V")
    for amount, message in (
        ("0", "Must be greater than zero."),
        ("-1.00", "Must be greater than zero."),
        ("1.001", "USD amounts have at most 2 decimal places; got '1.001'."),
    ):
        response = api.post("/api/v1/orders/SALE-V/refunds/", json={"amount": amount, "reason": "x"})
        assert response.status_code == 400
        assert response.json()["error"]["details"]["amount"] == [message]


def test_authorization_increment_then_partial_capture(api, paid_order):
    """An auth of 20.00 incremented by 5.00 can capture up to 25.00; a partial 18.50 capture settles it."""
    order = paid_order("AUTH-1", trans_type="auth")
    assert order["status"] == "authorized"
    incremented = api.post("/api/v1/orders/AUTH-1/increment/", json={"amount": "5.00"})
    assert incremented.status_code == 200, incremented.text
    assert incremented.json()["authorized_amount"] == "25.00"
    over = api.post("/api/v1/orders/AUTH-1/capture/", json={"amount": "25.01"})
    assert over.status_code == 400
    assert over.json()["error"]["details"] == {"amount": ["At most 25.00 USD can be captured."]}
    captured = api.post("/api/v1/orders/AUTH-1/capture/", json={"amount": "18.50"})
    assert captured.status_code == 200, captured.text
    body = captured.json()
    assert body["status"] == "succeeded"
    assert body["captured_amount"] == "18.50"
    assert [op["kind"] for op in body["operations"]] == ["increment", "capture"]
    assert all(op["status"] == "succeeded" for op in body["operations"])


def test_capture_of_a_sale_is_a_conflict(api, paid_order):
    """Only authorizations are captured."""
    paid_order("SALE-C")
    response = api.post("/api/v1/orders/SALE-C/capture/", json={"amount": "1.00"})
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "Only an authorization can be captured; this order is a sale."


def test_cancel_voids_an_authorization(api, paid_order):
    """Cancelling an authorization voids it at the gateway under a new merchant_order_no."""
    paid_order("AUTH-V", trans_type="auth")
    response = api.post("/api/v1/orders/AUTH-V/cancel/")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["operations"][0]["kind"] == "void"


def test_cancel_closes_a_waiting_terminal_order_and_refuses_a_paid_one(api, paid_order):
    """A waiting terminal order is closed at the gateway; a paid one must be refunded instead."""
    api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "WAIT-1"})
    closed = api.post("/api/v1/orders/WAIT-1/cancel/")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "cancelled"
    assert (
        GatewayCall.objects.filter(merchant_order_no="WAIT-1", method="wisehub.cloud.pay.close", outcome="ok").count()
        == 1
    )
    paid_order("PAID-1")
    refused = api.post("/api/v1/orders/PAID-1/cancel/")
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == "The order is paid; refund it instead of cancelling it."


def test_cancel_revokes_a_waiting_checkout(api):
    """A hosted checkout not yet paid is revoked."""
    api.post(
        "/api/v1/orders/",
        json={
            "channel": "checkout",
            "amount": "9.99",
            "currency": "USD",
            "description": "x",
            "merchant_order_no": "CO-1",
        },
    )
    response = api.post("/api/v1/orders/CO-1/cancel/")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["operations"][0]["kind"] == "revoke"


def test_tip_adjustment_changes_the_tip_and_the_paid_amount(api, paid_order):
    """A tip set after payment is sent to the gateway and raises what was paid."""
    paid_order("TIP-1")
    response = api.post("/api/v1/orders/TIP-1/tip/", json={"tip_amount": "3.00"})
    assert response.status_code == 200, response.text
    assert response.json()["tip_amount"] == "3.00"
    assert Order.objects.get(merchant_order_no="TIP-1").paid_amount == Decimal("23.00")


def test_batches_open_close_and_list(api, paid_order):
    """The open batch counts paid sales; closing it is recorded with the gateway's count and total."""
    paid_order("BATCH-1")
    paid_order("BATCH-2")
    opened = api.get("/api/v1/batches/open/?terminal_sn=WPYB002248000865")
    assert opened.status_code == 200, opened.text
    assert opened.json()["count"] >= 2
    closed = api.post("/api/v1/batches/close/", json={"terminal_sn_list": ["WPYB002248000865"]})
    assert closed.status_code == 201, closed.text
    assert closed.json()["status"] == "succeeded"
    assert closed.json()["count"] == opened.json()["count"]
    listed = api.get("/api/v1/batches/").json()["results"]
    assert [b["id"] for b in listed] == [closed.json()["id"]]
    assert api.get("/api/v1/batches/open/?terminal_sn=WPYB002248000865").json()["count"] == 0
