"""
The API contract at its edges, over real HTTP against the sandbox gateway over real HTTP: gateway refusals
(502), list filters by store and creation time, cashback orders, an Idempotency-Key twin still in flight,
and the walls between stores and between merchant accounts.

Every test starts from an empty sandbox (``sandbox_reset``), so merchant order numbers can be fixed and read.
"""

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from payments.gateway import signing
from payments.gateway.client import CodePayClient
from payments.models import GatewayCall, Order, OrderStatus, Refund, RefundStatus
from tests.conftest import APP_ID, MERCHANT_NO, STORE_NO, VECTORS

pytestmark = pytest.mark.usefixtures("sandbox_reset")

TERMINAL = "WPYB002248000865"
TERMINAL_ORDER = {
    "channel": "terminal",
    "amount": "12.34",
    "currency": "USD",
    "description": "Coffee and cake",
    "terminal_sn": TERMINAL,
}


def create(api, **overrides):
    return api.post("/api/v1/orders/", json={**TERMINAL_ORDER, **overrides})


def paid_order(api, sandbox_control, merchant_order_no, **overrides):
    """A terminal order created through the API, paid on the sandbox terminal and synced; its representation."""
    created = create(api, merchant_order_no=merchant_order_no, **overrides)
    assert created.status_code == 201, created.text
    sandbox_control.pay(merchant_order_no)
    synced = api.post(f"/api/v1/orders/{merchant_order_no}/sync/")
    assert synced.status_code == 200, synced.text
    return synced.json()


def numbers(response):
    return [order["merchant_order_no"] for order in response.json()["results"]]


# --- 502: CodePay refused -------------------------------------------------------------------------------


def test_order_to_an_offline_terminal_that_must_not_queue_is_refused_with_502(api):
    """
    With reject_when_terminal_offline the gateway refuses an order for an offline terminal (E05001): the API
    answers 502 ``gateway_refused`` carrying the gateway's code and message, and the order is stored failed.
    """
    response = create(
        api, merchant_order_no="OFFLINE-ORDER-1", terminal_sn="OFFLINE-T1", reject_when_terminal_offline=True
    )

    assert response.status_code == 502, response.text
    assert response.json() == {
        "error": {
            "code": "gateway_refused",
            "message": "CodePay refused the order: [E05001]Terminal is offline",
            "details": {
                "gateway_code": "E05001",
                "gateway_message": "[E05001]Terminal is offline",
                "merchant_order_no": "OFFLINE-ORDER-1",
            },
        }
    }
    order = Order.objects.get(merchant_order_no="OFFLINE-ORDER-1")
    assert (order.status, order.gateway_code, order.gateway_message) == (
        OrderStatus.FAILED,
        "E05001",
        "[E05001]Terminal is offline",
    )
    assert order.trans_no == ""
    stored = api.get("/api/v1/orders/OFFLINE-ORDER-1/").json()
    assert (stored["status"], stored["gateway_code"]) == ("failed", "E05001")
    call = GatewayCall.objects.get(merchant_order_no="OFFLINE-ORDER-1")
    assert (call.method, call.outcome, call.gateway_code) == ("wisehub.cloud.pay.order", "declined", "E05001")


def test_order_to_an_offline_terminal_that_may_queue_is_accepted(api):
    """Without reject_when_terminal_offline the same order is accepted, pending, and reported offline."""
    response = create(api, merchant_order_no="OFFLINE-ORDER-2", terminal_sn="OFFLINE-T1")
    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["terminal_online_status"]) == ("pending", "offline")


def test_refund_the_gateway_refuses_is_502_and_stored_failed(api, sandbox, sandbox_control):
    """
    A sale already refunded in full at a terminal (outside this service) has nothing left at the gateway:
    our refund passes our own check (the service does not know), the gateway refuses it with E04132, the
    API answers 502 with the gateway's code and message, and the refund is stored failed without booking.
    """
    paid_order(api, sandbox_control, "SALE-REFUSED", amount="20.00")
    terminal = CodePayClient(
        base_url=sandbox.base_url,
        app_id=APP_ID,
        merchant_no=MERCHANT_NO,
        private_key=signing.load_private_key(VECTORS["app_private_key_pem"]),
        gateway_public_key=signing.load_public_key(VECTORS["gateway_public_key_b64der"]),
    )
    terminal.create_cloud_order(
        merchant_order_no="TERMINAL-REFUND-1",
        orig_merchant_order_no="SALE-REFUSED",
        terminal_sn=TERMINAL,
        trans_type="3",
        amount=Decimal("20.00"),
        currency="USD",
        description="refund at the till",
        expires=300,
    )
    sandbox_control.pay("TERMINAL-REFUND-1")

    response = api.post(
        "/api/v1/orders/SALE-REFUSED/refunds/",
        json={"amount": "5.00", "reason": "cold", "merchant_order_no": "SALE-REFUSED-R1"},
    )

    message = "[E04132]Refund amount exceeds the refundable amount: at most 0.00 USD is refundable"
    assert response.status_code == 502, response.text
    assert response.json() == {
        "error": {
            "code": "gateway_refused",
            "message": f"CodePay refused the refund: {message}",
            "details": {"gateway_code": "E04132", "gateway_message": message, "merchant_order_no": "SALE-REFUSED-R1"},
        }
    }
    refund = Refund.objects.get(merchant_order_no="SALE-REFUSED-R1")
    assert (refund.status, refund.gateway_code, refund.gateway_message) == (RefundStatus.FAILED, "E04132", message)
    order = api.get("/api/v1/orders/SALE-REFUSED/").json()
    assert order["refunded_amount"] == "0.00"
    assert [(r["merchant_order_no"], r["status"], r["amount"]) for r in order["refunds"]] == [
        ("SALE-REFUSED-R1", "failed", "5.00")
    ]


# --- list filters -------------------------------------------------------------------------------------


def test_list_filters_by_store_no(api):
    """store_no narrows the list to that store's orders, newest first; an unused store lists nothing."""
    create(api, merchant_order_no="STORE-A-1", store_no="STORE-A")
    create(api, merchant_order_no="STORE-B-1", store_no="STORE-B")
    create(api, merchant_order_no="STORE-A-2", store_no="STORE-A")
    create(api, merchant_order_no="STORE-DEFAULT-1")

    assert numbers(api.get("/api/v1/orders/", params={"store_no": "STORE-A"})) == ["STORE-A-2", "STORE-A-1"]
    assert numbers(api.get("/api/v1/orders/", params={"store_no": "STORE-B"})) == ["STORE-B-1"]
    assert numbers(api.get("/api/v1/orders/", params={"store_no": STORE_NO})) == ["STORE-DEFAULT-1"]
    assert numbers(api.get("/api/v1/orders/", params={"store_no": "NO-SUCH-STORE"})) == []


def test_list_filters_by_creation_time_from_inclusive_to_exclusive(api):
    """
    created_after keeps orders created at or after the instant, created_before those strictly before it;
    together they select a window. Instants are ISO 8601 and any UTC offset means the same instant.
    """
    for n in range(1, 4):
        assert create(api, merchant_order_no=f"TIME-{n}").status_code == 201
    created = {
        order["merchant_order_no"]: order["created_at"] for order in api.get("/api/v1/orders/").json()["results"]
    }
    first, second, third = created["TIME-1"], created["TIME-2"], created["TIME-3"]
    assert first < second < third

    assert numbers(api.get("/api/v1/orders/", params={"created_after": second})) == ["TIME-3", "TIME-2"]
    assert numbers(api.get("/api/v1/orders/", params={"created_before": second})) == ["TIME-1"]
    assert numbers(api.get("/api/v1/orders/", params={"created_after": first, "created_before": third})) == [
        "TIME-2",
        "TIME-1",
    ]
    in_kolkata = datetime.fromisoformat(second).astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert numbers(api.get("/api/v1/orders/", params={"created_after": in_kolkata})) == ["TIME-3", "TIME-2"]
    later = (datetime.fromisoformat(third) + timedelta(seconds=1)).isoformat()
    assert numbers(api.get("/api/v1/orders/", params={"created_after": later})) == []


@pytest.mark.parametrize(
    "params",
    [
        {"created_after": "yesterday"},
        {"created_before": "2024-13-01T00:00:00Z"},
        {"created_after": "2024-02-30T10:00:00Z", "created_before": "soon"},
    ],
)
def test_invalid_creation_time_filter_is_400_naming_the_field(api, params):
    """A value that is not an ISO 8601 date-time answers 400 ``invalid_request`` naming each such field."""
    create(api, merchant_order_no="TIME-BAD-1")
    response = api.get("/api/v1/orders/", params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"] == {field: ["Enter a valid date/time."] for field in params}


# --- cashback ---------------------------------------------------------------------------------------


def test_cashback_order_without_cashback_amount_is_refused(api):
    """trans_type cashback needs cashback_amount: 400 naming it, nothing stored and nothing sent."""
    response = create(api, merchant_order_no="CASHBACK-NONE", trans_type="cashback")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"] == {
        "cashback_amount": ["Required for trans_type 'cashback', greater than zero."]
    }
    assert Order.objects.count() == 0
    assert GatewayCall.objects.count() == 0


def test_cashback_order_with_zero_cashback_amount_is_refused(api):
    """A cashback of zero is no cashback: 400 naming cashback_amount, nothing stored and nothing sent."""
    response = create(api, merchant_order_no="CASHBACK-ZERO", trans_type="cashback", cashback_amount="0.00")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"] == {
        "cashback_amount": ["Required for trans_type 'cashback', greater than zero."]
    }
    assert GatewayCall.objects.count() == 0


def test_cashback_amount_on_a_sale_is_refused(api):
    """Only a cashback order takes a cashback_amount; a sale with one is refused rather than sent."""
    response = create(api, merchant_order_no="SALE-CASHBACK", cashback_amount="5.00")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"] == {
        "cashback_amount": ["Only trans_type 'cashback' takes a cashback_amount."]
    }


def test_cashback_order_is_sent_as_trans_type_11_and_pays_amount_plus_cashback(api, sandbox_control):
    """
    A cashback order goes to the terminal as trans_type 11 with its cashback_amount; once paid and synced it
    is succeeded and the paid amount is the amount plus the cashback.
    """
    response = create(
        api, merchant_order_no="CASHBACK-1", trans_type="cashback", amount="20.00", cashback_amount="5.00"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["trans_type"], body["status"], body["amount"], body["cashback_amount"], body["tip_amount"]) == (
        "cashback",
        "pending",
        "20.00",
        "5.00",
        "0.00",
    )
    call = GatewayCall.objects.get(merchant_order_no="CASHBACK-1")
    assert (call.request["trans_type"], call.request["order_amount"], call.request["cashback_amount"]) == (
        "11",
        "20.00",
        "5.00",
    )
    at_gateway = sandbox_control.get("orders/CASHBACK-1").json()
    assert (at_gateway["trans_type"], at_gateway["cashback_amount"], at_gateway["trans_amount"]) == (
        "11",
        "5.00",
        "25.00",
    )

    sandbox_control.pay("CASHBACK-1")
    synced = api.post("/api/v1/orders/CASHBACK-1/sync/")
    assert synced.status_code == 200, synced.text
    body = synced.json()
    assert (body["trans_type"], body["status"], body["amount"], body["cashback_amount"]) == (
        "cashback",
        "succeeded",
        "20.00",
        "5.00",
    )
    order = Order.objects.get(merchant_order_no="CASHBACK-1")
    assert (order.paid_amount, order.cashback_amount, order.amount) == (
        Decimal("25.00"),
        Decimal("5.00"),
        Decimal("20.00"),
    )


# --- Idempotency-Key twin still in flight ---------------------------------------------------------------


def test_twin_of_a_request_still_in_flight_is_409_then_the_answer_is_replayed(api, sandbox_control, settings):
    """
    While the first request with a key waits on a slow gateway, a twin with the same key and body gets 409
    ``idempotency_key_in_use``; once the first has answered, the same key replays its 201 and body. The
    gateway is called exactly once.
    """
    from payments.services.accounts import gateway_clients_reset

    # The gateway answers after 2 s: slow, not lost. The test settings' 2 s read timeout would turn that
    # into an unknown outcome (202), which is another contract.
    settings.CODEPAY_READ_TIMEOUT = 5.0
    gateway_clients_reset()
    sandbox_control.fault(method="wisehub.cloud.pay.order", fault="latency", seconds=2, times=1)
    body = {**TERMINAL_ORDER, "merchant_order_no": "TWIN-FLIGHT-1"}
    answers = {}

    def send(name):
        answers[name] = api.post("/api/v1/orders/", json=body, idempotency_key="twin-in-flight")

    first = threading.Thread(target=send, args=("first",))
    first.start()
    time.sleep(0.5)
    send("second")
    first.join()

    assert [answers["first"].status_code, answers["second"].status_code] == [201, 409]
    assert answers["second"].json()["error"]["code"] == "idempotency_key_in_use"
    assert "Idempotent-Replayed" not in answers["first"].headers

    third = api.post("/api/v1/orders/", json=body, idempotency_key="twin-in-flight")
    assert third.status_code == 201, third.text
    assert third.json() == answers["first"].json()
    assert third.headers["Idempotent-Replayed"] == "true"
    assert GatewayCall.objects.filter(merchant_order_no="TWIN-FLIGHT-1").count() == 1
    assert Order.objects.filter(merchant_order_no="TWIN-FLIGHT-1").count() == 1


# --- stores and accounts ------------------------------------------------------------------------------


def test_a_store_bound_key_cannot_read_another_stores_refund(api, account, sandbox_control, make_api_client):
    """A refund of a store's order is 404 to a key bound to another store, and readable by that store's key."""
    from payments.services.accounts import api_key_create

    paid_order(api, sandbox_control, "STORE-SALE-1", amount="20.00")
    refunded = api.post(
        "/api/v1/orders/STORE-SALE-1/refunds/",
        json={"amount": "4.00", "reason": "x", "merchant_order_no": "STORE-SALE-1-R1"},
    )
    assert refunded.status_code == 201, refunded.text
    _, other_store_key = api_key_create(name="store-2", account=account, store_no="STORE-2")
    _, own_store_key = api_key_create(name="store-own", account=account, store_no=STORE_NO)

    response = make_api_client(other_store_key).get("/api/v1/refunds/STORE-SALE-1-R1/")
    assert response.status_code == 404, response.text
    assert response.json() == {
        "error": {"code": "not_found", "message": "No refund 'STORE-SALE-1-R1' for this API key.", "details": {}}
    }
    own = make_api_client(own_store_key).get("/api/v1/refunds/STORE-SALE-1-R1/")
    assert own.status_code == 200, own.text
    assert (own.json()["orig_merchant_order_no"], own.json()["amount"]) == ("STORE-SALE-1", "4.00")


def test_another_accounts_refund_is_404(api):
    """A refund of another merchant account is 404 on its own URL, whatever its number."""
    from tests.factories import MerchantAccountFactory, OrderFactory, RefundFactory

    other_account = MerchantAccountFactory()
    other_order = OrderFactory(
        account=other_account,
        merchant_order_no="THEIR-SALE",
        status=OrderStatus.SUCCEEDED,
        paid_amount=Decimal("10.00"),
    )
    RefundFactory(order=other_order, merchant_order_no="THEIR-REFUND")

    response = api.get("/api/v1/refunds/THEIR-REFUND/")
    assert response.status_code == 404, response.text
    assert response.json() == {
        "error": {"code": "not_found", "message": "No refund 'THEIR-REFUND' for this API key.", "details": {}}
    }
    refund = api.post("/api/v1/orders/THEIR-SALE/refunds/", json={"amount": "1.00", "reason": "x"})
    assert refund.status_code == 404, refund.text
    assert Refund.objects.filter(order=other_order).count() == 1


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("capture", {"amount": "1.00"}),
        ("cancel", None),
        ("sync", None),
        ("increment", {"amount": "1.00"}),
        ("tip", {"tip_amount": "1.00"}),
    ],
)
def test_actions_on_another_accounts_order_are_404_and_call_nothing(api, action, body):
    """A POST action on another account's order is 404 ``not_found``: no gateway call, no change to the order."""
    from tests.factories import MerchantAccountFactory, OrderFactory

    other_order = OrderFactory(
        account=MerchantAccountFactory(),
        merchant_order_no="THEIR-AUTH",
        trans_type="auth",
        status=OrderStatus.AUTHORIZED,
        authorized_amount=Decimal("10.00"),
        trans_no="5000000000000000001",
    )

    response = api.post(f"/api/v1/orders/THEIR-AUTH/{action}/", json=body)

    assert response.status_code == 404, response.text
    assert response.json() == {
        "error": {"code": "not_found", "message": "No order 'THEIR-AUTH' for this API key.", "details": {}}
    }
    assert GatewayCall.objects.count() == 0
    other_order.refresh_from_db()
    assert (other_order.status, other_order.captured_amount, other_order.authorized_amount) == (
        OrderStatus.AUTHORIZED,
        Decimal(0),
        Decimal("10.00"),
    )
    assert other_order.operations.count() == 0
