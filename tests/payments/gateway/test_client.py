"""The CodePay client against the sandbox gateway over real HTTP: every method and every error class."""

import uuid
from decimal import Decimal

import pytest
import requests

from payments.gateway import signing
from payments.gateway.client import CardDetails, CodePayClient
from payments.gateway.errors import (
    GatewayConfigurationError,
    GatewayDeclined,
    GatewayOutcomeUnknown,
    GatewayRequestNotSent,
)
from payments.gateway.methods import ORDER_NOT_FOUND_CODE, Method
from tests.conftest import APP_ID, MERCHANT_NO, VECTORS

TERMINAL = "WPYB002248000865"


def make_client(base_url, **overrides):
    records = overrides.pop("records", None)
    options = {
        "base_url": base_url,
        "app_id": APP_ID,
        "merchant_no": MERCHANT_NO,
        "private_key": signing.load_private_key(VECTORS["app_private_key_pem"]),
        "gateway_public_key": signing.load_public_key(VECTORS["gateway_public_key_b64der"]),
        "read_timeout": 2.0,
        "connect_timeout": 1.0,
        "sleep": lambda seconds: None,
        "on_call": records.append if records is not None else None,
    }
    options.update(overrides)
    return CodePayClient(**options)


@pytest.fixture
def client(sandbox):
    return make_client(sandbox.base_url)


def number(prefix="T"):
    return f"{prefix}{uuid.uuid4().hex[:20]}"


def pay(sandbox, merchant_order_no):
    response = requests.post(f"{sandbox.base_url}/sandbox/orders/{merchant_order_no}/pay", json={}, timeout=10)
    assert response.status_code == 200, response.text


def paid_sale(client, sandbox, amount="20.00", trans_type="1"):
    merchant_order_no = number("S")
    created = client.create_cloud_order(
        merchant_order_no=merchant_order_no,
        terminal_sn=TERMINAL,
        trans_type=trans_type,
        amount=Decimal(amount),
        currency="USD",
        description="sale",
        expires=300,
    )
    pay(sandbox, merchant_order_no)
    return merchant_order_no, created.trans_no


def test_cloud_order_query_and_close(client, sandbox):
    """Create a terminal order (status 9), query it, and close it while it waits."""
    merchant_order_no = number()
    created = client.create_cloud_order(
        merchant_order_no=merchant_order_no,
        terminal_sn=TERMINAL,
        trans_type="1",
        amount=Decimal("144.34"),
        tip_amount=Decimal("30.00"),
        currency="USD",
        description="ECR",
        expires=300,
        on_screen_tip=False,
        reject_when_terminal_offline=True,
    )
    assert created.trans_no and created.terminal_online_status == "online" and created.psn
    info = client.query_order(merchant_order_no=merchant_order_no)
    assert (info.trans_status, info.order_amount, info.tip_amount, info.price_currency) == (
        "9",
        Decimal("144.34"),
        Decimal("30.00"),
        "USD",
    )
    assert (
        client.close_cloud_order(merchant_order_no=merchant_order_no, terminal_sn=TERMINAL).trans_no == created.trans_no
    )
    assert client.query_order(trans_no=created.trans_no).trans_status == "1"


def test_hosted_and_merchant_checkout(client):
    """pay.checkout answers a pay_url; pay.merchant.checkout charges an encrypted card synchronously."""
    checkout = client.create_checkout(
        merchant_order_no=number(),
        amount=Decimal("150.34"),
        currency="USD",
        description="Iphone 16 – déjà vu 日本",  # noqa: RUF001 (the dash is non-ASCII input on purpose)
        expires=3600,
        return_url="https://shop.example.com/return?x=1&y=2",
        order_detail={"items": [{"name": "x"}]},
    )
    assert checkout.pay_url.startswith("http")
    card = CardDetails(pan="4111111111111111", expiry="1230", cvv="123", holder="TEST HOLDER")
    assert "4111" not in repr(card)
    charged = client.create_card_checkout(
        merchant_order_no=number(),
        card=card,
        billing_address={"country": "US"},
        amount=Decimal("34.50"),
        currency="USD",
        description="shoes",
        expires=300,
    )
    assert (charged.trans_status, charged.pay_method_id) == ("2", "Visa")


def test_authorization_increment_capture_and_cancel(client, sandbox):
    """Pre-auth (trans_type 4), increment, capture under a new number; a second auth is voided."""
    _auth_no, auth_trans_no = paid_sale(client, sandbox, trans_type="4")
    client.increment_authorization(trans_no=auth_trans_no, amount=Decimal("5.00"), currency="USD")
    with pytest.raises(GatewayDeclined) as too_much:
        client.capture(merchant_order_no=number("C"), trans_no=auth_trans_no, amount=Decimal("25.01"), currency="USD")
    assert too_much.value.code == "E04133"
    captured = client.capture(
        merchant_order_no=number("C"), trans_no=auth_trans_no, amount=Decimal("25.00"), currency="USD"
    )
    assert captured.trans_status == "2" and captured.trans_no != auth_trans_no
    _, other_auth = paid_sale(client, sandbox, trans_type="4")
    assert client.cancel_payment(merchant_order_no=number("V"), trans_no=other_auth).trans_status == "2"


def test_refunds_by_submit_and_by_trans_no(client, sandbox):
    """order.refund.submit and the trans_no refund both work; their sum never exceeds what was paid."""
    sale_no, sale_trans_no = paid_sale(client, sandbox)
    refund_no = number("R")
    submitted = client.submit_refund(
        merchant_order_no=refund_no,
        orig_merchant_order_no=sale_no,
        amount=Decimal("5.00"),
        currency="USD",
        description="refund",
    )
    assert submitted.trans_status == "2" and submitted.trans_amount == Decimal("5.00")
    refund = client.query_refund(merchant_order_no=refund_no)
    assert (refund.trans_status, refund.order_amount) == ("2", Decimal("5.00"))
    client.refund_payment(
        merchant_order_no=number("R"), trans_no=sale_trans_no, amount=Decimal("15.00"), currency="USD"
    )
    with pytest.raises(GatewayDeclined) as exceeded:
        client.submit_refund(
            merchant_order_no=number("R"),
            orig_merchant_order_no=sale_no,
            amount=Decimal("0.01"),
            currency="USD",
            description="x",
        )
    assert exceeded.value.code == "E04132"


def test_tips_recall_revoke_and_batches(client, sandbox):
    """Both tip forms, recall, revoke of an online order, open batch and both batch close forms."""
    sale_no, sale_trans_no = paid_sale(client, sandbox, amount="10.00")
    client.adjust_tip_by_trans_no(trans_no=sale_trans_no, tip_amount=Decimal("1.50"), currency="USD")
    client.adjust_tip(merchant_order_no=sale_no, tip_amount=Decimal("2.00"), currency="USD")
    recalled = client.recall(merchant_order_no=sale_no)
    assert (recalled.trans_no, recalled.tip_amount) == (sale_trans_no, Decimal("2.00"))
    online_no = number("O")
    client.create_checkout(
        merchant_order_no=online_no, amount=Decimal("3.00"), currency="USD", description="x", expires=600
    )
    client.revoke_order(merchant_order_no=online_no)
    assert client.query_order(merchant_order_no=online_no).trans_status in ("1", "3")
    open_batch = client.get_open_batch(terminal_sn_list=[TERMINAL])
    assert open_batch.count >= 1 and open_batch.total_amount >= Decimal("12.00")
    closed = client.close_batch_for_terminals(terminal_sn_list=[TERMINAL])
    assert closed.count == open_batch.count
    client.close_batch(terminal_sn=TERMINAL)
    assert client.get_open_batch(terminal_sn_list=[TERMINAL]).count == 0


def test_amounts_and_booleans_go_out_as_exact_text(client):
    """Decimal amounts use the currency's digits, booleans are lowercase, empty fields are dropped."""
    body = client.build_request(
        Method.CLOUD_PAY_ORDER, {"order_amount": "200", "flag": False, "attach": "", "tip": None}
    )
    assert body["flag"] == "false" and "attach" not in body and "tip" not in body
    assert body["timestamp"].isdigit() and len(body["timestamp"]) == 13
    assert signing.verify(body, body["sign"], signing.load_private_key(VECTORS["app_private_key_pem"]).public_key())
    with pytest.raises(TypeError):
        client.build_request(Method.ORDER_QUERY, {"order_amount": 1.5})


def test_basic_auth_mode(sandbox):
    """sign_type NONE authenticates with Basic Auth and sends no sign."""
    client = make_client(
        sandbox.base_url, sign_type="NONE", private_key=None, basic_auth=("sandbox-user", "sandbox-pass")
    )
    assert "sign" not in client.build_request(Method.ORDER_QUERY, {"merchant_order_no": "X"})
    with pytest.raises(GatewayDeclined) as missing:
        client.query_order(merchant_order_no="NOPE-1")
    assert missing.value.code == ORDER_NOT_FOUND_CODE
    wrong = make_client(sandbox.base_url, sign_type="NONE", private_key=None, basic_auth=("sandbox-user", "wrong"))
    with pytest.raises((GatewayDeclined, GatewayConfigurationError)):
        wrong.query_order(merchant_order_no="NOPE-1")


def test_gateway_no_is_declined_with_code_and_message(client):
    """code != "0": GatewayDeclined carrying the gateway's code and message."""
    with pytest.raises(GatewayDeclined) as declined:
        client.query_order(merchant_order_no="NEVER-SEEN")
    assert declined.value.code == ORDER_NOT_FOUND_CODE
    assert "Merchant order number is invalid" in declined.value.message


def test_wrong_app_key_is_refused_by_the_gateway(sandbox):
    """A request signed with the wrong key is refused; the error names the signature problem, not the key."""
    client = make_client(sandbox.base_url, private_key=signing.load_private_key(VECTORS["gateway_private_key_pem"]))
    with pytest.raises(GatewayDeclined) as refused:
        client.query_order(merchant_order_no="X1")
    assert refused.value.code == "E00203"
    assert "PRIVATE KEY" not in str(refused.value)


def test_wrong_gateway_public_key_makes_success_untrusted(sandbox):
    """A success answer whose signature does not verify is an unknown outcome naming the setting to fix."""
    app_public = signing.load_private_key(VECTORS["app_private_key_pem"]).public_key()
    client = make_client(sandbox.base_url, gateway_public_key=app_public)
    with pytest.raises(GatewayOutcomeUnknown) as unknown:
        client.create_checkout(
            merchant_order_no=number(), amount=Decimal("1.00"), currency="USD", description="x", expires=300
        )
    assert "CODEPAY_GATEWAY_PUBLIC_KEY" in unknown.value.message


def test_unreachable_gateway_is_not_sent_and_retried(sandbox):
    """Connection refused: nothing left, so it is safe to retry; retried max_retries times, then raised."""
    sleeps, records = [], []
    client = make_client("http://127.0.0.1:1", sleep=sleeps.append, records=records, max_retries=2)
    with pytest.raises(GatewayRequestNotSent):
        client.create_cloud_order(
            merchant_order_no=number(),
            terminal_sn=TERMINAL,
            trans_type="1",
            amount=Decimal("1.00"),
            currency="USD",
            description="x",
            expires=300,
        )
    assert sleeps == [0.5, 1.0]
    assert [r.outcome for r in records] == ["not_sent"] * 3


def test_timeout_after_create_is_unknown_and_never_resent(client, sandbox):
    """The gateway created the order but the answer was lost: unknown, sent once, found by query."""
    requests.post(
        f"{sandbox.base_url}/sandbox/faults",
        json={"method": "wisehub.cloud.pay.order", "fault": "timeout_after_create", "seconds": 3},
        timeout=5,
    )
    records = []
    client = make_client(sandbox.base_url, records=records)
    merchant_order_no = number()
    with pytest.raises(GatewayOutcomeUnknown):
        client.create_cloud_order(
            merchant_order_no=merchant_order_no,
            terminal_sn=TERMINAL,
            trans_type="1",
            amount=Decimal("1.00"),
            currency="USD",
            description="x",
            expires=300,
        )
    assert [r.outcome for r in records] == ["unknown"]
    assert client.query_order(merchant_order_no=merchant_order_no).trans_status == "9"


def test_read_only_calls_are_retried_after_a_5xx(client, sandbox):
    """A query hit by a 500 is retried (it cannot move money) and then succeeds."""
    merchant_order_no, _ = paid_sale(client, sandbox, amount="1.00")
    requests.post(
        f"{sandbox.base_url}/sandbox/faults", json={"method": "order.query", "fault": "http_500", "times": 1}, timeout=5
    )
    records = []
    retrying = make_client(sandbox.base_url, records=records)
    assert retrying.query_order(merchant_order_no=merchant_order_no).trans_status == "2"
    assert [r.outcome for r in records] == ["unknown", "ok"]


def test_audit_records_are_redacted(sandbox):
    """The audit record of a card checkout has no card data, no signature and the call's timing."""
    records = []
    client = make_client(sandbox.base_url, records=records)
    client.create_card_checkout(
        merchant_order_no=number(),
        card=CardDetails(pan="4111111111111111", expiry="1230", cvv="123", holder="T"),
        billing_address={"country": "US"},
        amount=Decimal("1.00"),
        currency="USD",
        description="x",
        expires=300,
    )
    (record,) = records
    assert record.request["card"] == "[redacted]" and record.request["sign"] == "[redacted]"
    assert "4111111111111111" not in repr(record) and record.method == "pay.merchant.checkout"
    assert record.outcome == "ok" and record.gateway_code == "0" and record.duration_ms >= 0


def test_missing_configuration_is_one_readable_error():
    """RSA2 without keys, or NONE without a password, names what is missing."""
    with pytest.raises(GatewayConfigurationError, match="RSA2 needs the app private key and the gateway public key"):
        CodePayClient(base_url="http://x", app_id="a", merchant_no="m")
    with pytest.raises(GatewayConfigurationError, match="needs the Basic Auth user and password"):
        CodePayClient(base_url="http://x", app_id="a", merchant_no="m", sign_type="NONE")
    with pytest.raises(GatewayConfigurationError, match="needs base_url"):
        CodePayClient(base_url="", app_id="a", merchant_no="m", sign_type="NONE", basic_auth=("u", "p"))


def test_terminal_sn_list_goes_out_as_a_compact_json_array_string_the_sandbox_reads(client, sandbox):
    """
    terminal_sn_list is sent as the JSON text of the array, signed as that text (docs/protocol.md, "Arrays
    and objects"); the sandbox reads it back as the list, and refuses the array sent as a raw JSON value.
    """
    body = client.build_request(Method.OPEN_BATCH, {"terminal_sn_list": ["WPYB1", "WPYB2"]})
    assert body["terminal_sn_list"] == '["WPYB1","WPYB2"]'
    assert client.get_open_batch(terminal_sn_list=["WPYB-NONE"]).count == 0

    raw = {**body, "terminal_sn_list": ["WPYB1", "WPYB2"]}
    answer = requests.post(f"{sandbox.base_url}/api/entry", json=raw, timeout=5).json()
    assert (answer["code"], answer["msg"]) == (
        "E00101",
        "[E00101]Invalid parameter: terminal_sn_list must be sent as a JSON string",
    )
