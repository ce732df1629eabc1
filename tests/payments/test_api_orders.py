"""The orders API over real HTTP (live server) against the sandbox gateway over real HTTP."""

import json
import threading
from decimal import Decimal

import pytest

from payments.models import GatewayCall, Order, OrderEvent, OrderStatus

TERMINAL_ORDER = {
    "channel": "terminal",
    "amount": "12.34",
    "currency": "USD",
    "description": "Coffee and cake",
    "terminal_sn": "WPYB002248000865",
}
BILLING = {"name": "Test", "country": "US", "zip": "10001"}
VISA_OK = {"pan": "4111111111111111", "holder": "TEST HOLDER", "cvv": "123", "expiry": "1230"}


def create(api, **overrides):
    return api.post("/api/v1/orders/", json={**TERMINAL_ORDER, **overrides})


def test_terminal_order_is_created_pending_and_turns_succeeded_when_paid(api, sandbox_control):
    """A terminal order is pushed to the terminal (pending); once paid, a sync makes it succeeded."""
    response = create(api, merchant_order_no="POS-1001", tip_amount="2.00")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["merchant_order_no"] == "POS-1001"
    assert body["status"] == "pending"
    assert body["amount"] == "12.34"
    assert body["tip_amount"] == "2.00"
    assert body["currency"] == "USD"
    assert body["trans_no"] != ""
    assert body["terminal_online_status"] == "online"
    assert body["refunds"] == []
    assert (
        GatewayCall.objects.filter(merchant_order_no="POS-1001", method="wisehub.cloud.pay.order", outcome="ok").count()
        == 1
    )

    sandbox_control.pay("POS-1001")
    synced = api.post("/api/v1/orders/POS-1001/sync/")
    assert synced.status_code == 200, synced.text
    assert synced.json()["status"] == "succeeded"
    order = Order.objects.get(merchant_order_no="POS-1001")
    assert order.paid_amount == Decimal("14.34")


def test_generated_merchant_order_no_follows_the_gateway_rule(api):
    """Without merchant_order_no the service generates one of at most 32 allowed characters."""
    response = create(api)
    assert response.status_code == 201, response.text
    number = response.json()["merchant_order_no"]
    assert 1 <= len(number) <= 32 and number.isalnum()


def test_jpy_amounts_have_no_decimals(api):
    """JPY has no minor unit: "200" is accepted and rendered as "200"; "1.5" is refused."""
    ok = create(api, amount="200", currency="JPY")
    assert ok.status_code == 201, ok.text
    assert ok.json()["amount"] == "200"
    bad = create(api, amount="1.5", currency="JPY")
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["amount"] == ["JPY amounts have at most 0 decimal places; got '1.5'."]


def test_checkout_order_answers_the_hosted_page_url(api):
    """A hosted checkout answers CodePay's pay_url and waits for the customer."""
    response = api.post(
        "/api/v1/orders/",
        json={
            "channel": "checkout",
            "amount": "150.34",
            "currency": "USD",
            "description": "Phone",
            "return_url": "https://shop.example.com/return",
            "order_detail": {"items": [{"name": "Phone", "quantity": 1}]},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert "/sandbox/checkout/" + body["merchant_order_no"] in body["pay_url"]


def test_card_order_is_charged_and_the_card_is_never_stored_echoed_or_logged(api, caplog):
    """A merchant-hosted card payment succeeds synchronously; PAN and CVV appear in no answer, row or log line."""
    caplog.set_level("DEBUG")
    response = api.post(
        "/api/v1/orders/",
        json={
            "channel": "card",
            "amount": "34.50",
            "currency": "USD",
            "description": "Shoes",
            "card": VISA_OK,
            "billing_address": {"name": "Test", "country": "US", "zip": "10001"},
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "succeeded"
    assert "4111111111111111" not in response.text and "cvv" not in response.text
    order = Order.objects.get(merchant_order_no=response.json()["merchant_order_no"])
    call = GatewayCall.objects.get(merchant_order_no=order.merchant_order_no)
    assert call.request["card"] == "[redacted]"
    stored = json.dumps(
        [order.options, call.request, call.response, list(OrderEvent.objects.filter(order=order).values())], default=str
    )
    assert "4111111111111111" not in stored
    assert '"123"' not in stored
    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "codepay call" in logged
    assert "4111111111111111" not in logged and "'cvv'" not in logged


def test_declined_card_is_answered_and_stored_as_failed(api):
    """A card the issuer declines (trans_status 1 in a successful answer) is a created order that failed, and
    says why: the answer's trans_error_code and trans_error_msg."""
    response = api.post(
        "/api/v1/orders/",
        json={
            "channel": "card",
            "amount": "10.00",
            "currency": "USD",
            "description": "Declined",
            "merchant_order_no": "CARD-DECLINE-1",
            "card": {**VISA_OK, "pan": "4000000000000002"},
            "billing_address": BILLING,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["failure_code"], body["failure_message"]) == ("failed", "05", "[05]DO NOT HONOR")
    assert (body["paid_amount"], body["paid_at"], body["refundable_amount"]) == ("0.00", None, "0.00")
    assert Order.objects.get(merchant_order_no="CARD-DECLINE-1").status == OrderStatus.FAILED


def test_card_needing_3ds_answers_the_challenge_url(api):
    """A card that needs 3-D Secure is not paid yet and carries the redirect URL for the customer."""
    response = api.post(
        "/api/v1/orders/",
        json={
            "channel": "card",
            "amount": "10.00",
            "currency": "USD",
            "description": "3DS",
            "card": {**VISA_OK, "pan": "4000000000003220"},
            "billing_address": BILLING,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "processing"
    assert "/sandbox/3ds/" in body["redirect_url_3dsecure"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"merchant_order_no": "bad number!"}, "merchant_order_no", "letters, digits and _ - | * @"),
        ({"merchant_order_no": "X" * 33}, "merchant_order_no", "1 to 32 characters"),
        ({"amount": "1.234"}, "amount", "USD amounts have at most 2 decimal places"),
        ({"currency": "XYZ"}, "currency", "is not an ISO 4217 currency code"),
        ({"amount": "-5.00"}, "amount", "greater than zero"),
        ({"amount": "0"}, "amount", "greater than zero"),
        ({"amount": 12.34}, "amount", "not JSON numbers"),
        ({"terminal_sn": None}, "terminal_sn", ""),
        ({"status": "succeeded"}, "status", "Read-only"),
        ({"refunded_amount": "1.00"}, "refunded_amount", "Read-only"),
        ({"card": VISA_OK}, "card", "Not used by channel 'terminal'"),
        ({"expires_in": 10}, "expires_in", ""),
    ],
)
def test_invalid_create_is_refused_with_the_field_named(api, overrides, field, message):
    """Each invalid input answers 400 naming the field and the fix, and nothing is stored."""
    body = {**TERMINAL_ORDER, **overrides}
    body = {key: value for key, value in body.items() if value is not None}
    response = api.post("/api/v1/orders/", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["details"]
    assert message in " ".join(error["details"][field])
    assert Order.objects.count() == 0


def test_missing_terminal_sn_and_card_are_named_per_channel(api):
    """Each channel says which field it needs."""
    terminal = api.post(
        "/api/v1/orders/", json={"channel": "terminal", "amount": "1.00", "currency": "USD", "description": "x"}
    )
    assert terminal.json()["error"]["details"] == {"terminal_sn": ["Required for channel 'terminal'."]}
    card = api.post(
        "/api/v1/orders/", json={"channel": "card", "amount": "1.00", "currency": "USD", "description": "x"}
    )
    assert card.json()["error"]["details"] == {"card": ["Required for channel 'card': pan, holder, cvv, expiry."]}


@pytest.mark.parametrize("billing_address", [None, {}], ids=["absent", "empty"])
def test_card_order_without_billing_address_is_refused_naming_the_field(api, billing_address):
    """The gateway requires billing_address for a card payment: 400 naming it, nothing stored or sent."""
    body = {"channel": "card", "amount": "1.00", "currency": "USD", "description": "x", "card": VISA_OK}
    if billing_address is not None:
        body["billing_address"] = billing_address
    response = api.post("/api/v1/orders/", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"] == {
        "billing_address": ["Required for channel 'card': an object with the cardholder's billing address."]
    }
    assert (Order.objects.count(), GatewayCall.objects.count()) == (0, 0)


def test_invalid_card_number_is_refused_without_echoing_it(api):
    """A PAN failing the check digit is refused; the error never repeats the number."""
    response = api.post(
        "/api/v1/orders/",
        json={
            "channel": "card",
            "amount": "1.00",
            "currency": "USD",
            "description": "x",
            "card": {**VISA_OK, "pan": "4111111111111112"},
            "billing_address": BILLING,
        },
    )
    assert response.status_code == 400
    assert "4111111111111112" not in response.text
    assert response.json()["error"]["details"]["card"] == {"pan": ["Not a valid card number (check digit)."]}


def test_duplicate_merchant_order_no_is_a_conflict(api):
    """A merchant_order_no already used for the account answers 409 and creates nothing new."""
    assert create(api, merchant_order_no="DUP-1").status_code == 201
    again = create(api, merchant_order_no="DUP-1")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate_merchant_order_no"
    assert Order.objects.filter(merchant_order_no="DUP-1").count() == 1


def test_create_whose_answer_is_lost_is_stored_unknown_and_answers_202(api, sandbox_control):
    """A timeout after the gateway created the order: 202 with the order stored as `unknown`, never resent."""
    sandbox_control.fault(method="wisehub.cloud.pay.order", fault="timeout_after_create", seconds=3, times=1)
    response = create(api, merchant_order_no="LOST-1")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "unknown"
    assert GatewayCall.objects.filter(merchant_order_no="LOST-1", method="wisehub.cloud.pay.order").count() == 1
    synced = api.post("/api/v1/orders/LOST-1/sync/")
    assert synced.json()["status"] == "pending"


def test_gateway_unreachable_answers_503_and_keeps_nothing_but_the_call_audit(api, settings):
    """Nothing sent: 503 without our network details; no order blocks the number, the call audit keeps the reason."""
    from payments.models import GatewayCall
    from payments.services.accounts import gateway_clients_reset

    settings.CODEPAY_BASE_URL = "http://127.0.0.1:1"
    gateway_clients_reset()
    response = create(api, merchant_order_no="DOWN-1")
    assert response.status_code == 503
    assert response.json()["error"] == {
        "code": "gateway_unavailable",
        "message": (
            "CodePay could not be reached; the order was not sent; nothing was kept. "
            "Retry, with the same merchant_order_no if you like."
        ),
        "details": {"merchant_order_no": "DOWN-1"},
    }
    assert not Order.objects.filter(merchant_order_no="DOWN-1").exists()
    assert {call.outcome for call in GatewayCall.objects.filter(merchant_order_no="DOWN-1")} == {"not_sent"}


def test_requests_without_a_valid_key_are_401(live_server, api_key):
    """No key, a malformed header or an unknown key: 401 in the error shape."""
    import requests

    url = live_server.url + "/api/v1/orders/"
    for headers in ({}, {"Authorization": "Bearer x"}, {"Authorization": "Api-Key nope.nope"}):
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")


def test_orders_of_other_accounts_and_stores_are_404(api, account, make_api_client):
    """A key sees only its account's orders, and only its store's when bound to one."""
    from payments.services.accounts import api_key_create
    from tests.factories import MerchantAccountFactory, OrderFactory

    create(api, merchant_order_no="MINE-1", store_no="4021000008")
    other_account = MerchantAccountFactory()
    OrderFactory(account=other_account, merchant_order_no="THEIRS-1")
    _, store_key = api_key_create(name="store-2", account=account, store_no="STORE-2")
    store_api = make_api_client(store_key)

    assert api.get("/api/v1/orders/THEIRS-1/").status_code == 404
    assert store_api.get("/api/v1/orders/MINE-1/").status_code == 404
    assert store_api.post("/api/v1/orders/MINE-1/refunds/", json={"amount": "1.00", "reason": "x"}).status_code == 404
    assert store_api.get("/api/v1/orders/").json()["results"] == []
    assert [o["merchant_order_no"] for o in api.get("/api/v1/orders/").json()["results"]] == ["MINE-1"]


def test_a_store_bound_key_creates_orders_in_its_store_only(account, make_api_client):
    """A store key's orders go to its store; naming another store is refused."""
    from payments.services.accounts import api_key_create

    _, key = api_key_create(name="store-9", account=account, store_no="STORE-9")
    store_api = make_api_client(key)
    assert store_api.post("/api/v1/orders/", json=TERMINAL_ORDER).json()["store_no"] == "STORE-9"
    refused = store_api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "store_no": "OTHER"})
    assert refused.status_code == 400
    assert "store_no" in refused.json()["error"]["details"]


def test_list_is_newest_first_cursor_paginated_and_filtered(api):
    """Orders list newest first in cursor pages; filters narrow by status, channel and terminal."""
    for n in range(5):
        create(api, merchant_order_no=f"LIST-{n}", terminal_sn="T1" if n % 2 else "T2")
    page = api.get("/api/v1/orders/?page_size=2").json()
    assert [o["merchant_order_no"] for o in page["results"]] == ["LIST-4", "LIST-3"]
    second = api.get(page["next"].replace(api.base_url, "")).json()
    assert [o["merchant_order_no"] for o in second["results"]] == ["LIST-2", "LIST-1"]
    filtered = api.get("/api/v1/orders/?terminal_sn=T1&status=pending&channel=terminal").json()
    assert [o["merchant_order_no"] for o in filtered["results"]] == ["LIST-3", "LIST-1"]
    assert api.get("/api/v1/orders/?status=succeeded").json()["results"] == []
    bad = api.get("/api/v1/orders/?status=nonsense")
    assert bad.status_code == 400 and "status" in bad.json()["error"]["details"]


def test_idempotent_create_replays_without_a_second_gateway_call(api):
    """The same key and body answer the same status and body; the gateway is called once."""
    first = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "IDEM-1"}, idempotency_key="k-1")
    second = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "IDEM-1"}, idempotency_key="k-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert GatewayCall.objects.filter(merchant_order_no="IDEM-1").count() == 1
    other = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "IDEM-2"}, idempotency_key="k-1")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_concurrent_twins_with_one_key_call_the_gateway_once(api, sandbox_control):
    """Two simultaneous requests with one key: one creates, the other gets 409 or the replay; one gateway call."""
    sandbox_control.fault(method="wisehub.cloud.pay.order", fault="latency", seconds=1, times=1)
    results = []

    def send():
        results.append(
            api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "TWIN-1"}, idempotency_key="twin")
        )

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(r.status_code for r in results)
    assert codes in ([201, 409], [201, 201])
    assert GatewayCall.objects.filter(merchant_order_no="TWIN-1").count() == 1
    assert Order.objects.filter(merchant_order_no="TWIN-1").count() == 1


def test_throttling_limits_each_api_key(api, monkeypatch):
    """Past its rate, a key gets 429 in the error shape."""
    from payments.throttling import ApiKeyRateThrottle

    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/minute"})
    codes = [api.get("/api/v1/orders/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_an_invalid_request_does_not_use_up_its_idempotency_key(api):
    """A 400 did nothing: the client fixes the body and sends it again with the same key."""
    bad = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "amount": "1.234"}, idempotency_key="fix-me")
    assert bad.status_code == 400
    fixed = api.post("/api/v1/orders/", json=TERMINAL_ORDER, idempotency_key="fix-me")
    assert fixed.status_code == 201, fixed.text
