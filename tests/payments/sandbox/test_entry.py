"""The sandbox's /api/entry envelope: authentication, validation and signed answers."""

import base64
import json
import re
import time

import pytest
import requests

from payments.gateway import signing
from payments.gateway.methods import Method
from payments.sandbox import errors


def test_signed_request_is_accepted_and_the_answer_is_signed_by_the_gateway(codepay):
    """A valid RSA2 request succeeds; the answer verifies with the gateway public key over its raw data string."""
    fields = codepay.signed(
        codepay.fields(
            Method.CLOUD_PAY_ORDER,
            terminal_sn="WPYB002248000865",
            message_receiving_application="CodePay Register",
            price_currency="USD",
            order_amount="144.34",
            tip_amount="30.00",
            trans_type="1",
            merchant_order_no="1709106082732",
            description="ECRCloudPurchase",
            expires="300",
            api_version="2.0",
        )
    )
    envelope = codepay.send(fields).json()

    assert set(envelope) == {"code", "msg", "psn", "sign", "data"}
    assert (envelope["code"], envelope["msg"]) == ("0", "success")
    assert re.fullmatch(r"\d{20}", envelope["psn"])
    assert isinstance(envelope["data"], str)
    data = json.loads(envelope["data"])
    assert envelope["data"] == json.dumps(data, separators=(",", ":"))
    assert set(data) == {"message_id", "trans_no", "terminal_online_status"}
    assert data["terminal_online_status"] == "online"
    assert signing.verify(envelope, envelope["sign"], codepay.gateway_public_key) is True
    assert signing.verify({**envelope, "msg": "fail"}, envelope["sign"], codepay.gateway_public_key) is False


def test_request_tampered_after_signing_is_rejected_and_creates_nothing(codepay):
    """Changing a signed field breaks the signature: E00203, and no order exists afterwards."""
    fields = codepay.signed(
        codepay.fields(
            Method.CHECKOUT,
            merchant_order_no="T-1",
            price_currency="USD",
            order_amount="1.00",
            expires="300",
            description="x",
        )
    )
    fields["order_amount"] = "0.01"

    answer = codepay.answer(codepay.send(fields))

    assert (answer.code, answer.msg) == ("E00203", "[E00203]Signature verification failed")
    assert answer.data is None
    assert codepay.call(Method.ORDER_QUERY, merchant_order_no="T-1").code == "E04111"


def test_missing_signature_is_named(codepay):
    """An RSA2 request without `sign` is refused naming the field."""
    answer = codepay.answer(codepay.send(codepay.fields(Method.ORDER_QUERY, merchant_order_no="X")))

    assert answer.msg == "[E00100]Missing required parameter: sign"


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_with_sign_type_none_is_accepted(codepay):
    """sign_type NONE with the app's Basic pair and no `sign` is accepted; the answer is still signed."""
    fields = codepay.fields(Method.ORDER_QUERY, sign_type="NONE", merchant_order_no="NOT-THERE")

    answer = codepay.answer(codepay.send(fields, headers=_basic(*codepay.basic_auth)))

    assert answer.code == "E04111"  # authenticated: the order lookup ran


@pytest.mark.parametrize(
    "headers",
    [_basic("sandbox-user", "wrong"), _basic("someone", "sandbox-pass"), {"Authorization": "Bearer x"}, {}],
    ids=["wrong-password", "wrong-user", "other-scheme", "no-header"],
)
def test_basic_auth_with_wrong_credentials_is_rejected(codepay, headers):
    """sign_type NONE without the exact Basic pair is refused with E00204."""
    fields = codepay.fields(Method.ORDER_QUERY, sign_type="NONE", merchant_order_no="X")

    answer = codepay.answer(codepay.send(fields, headers=headers))

    assert (answer.code, answer.msg) == ("E00204", "[E00204]Basic authentication failed")


@pytest.mark.parametrize("offset_minutes", [-16, 16])
def test_timestamp_more_than_15_minutes_off_is_rejected(codepay, offset_minutes):
    """A timestamp beyond +-15 minutes of gateway time is refused with E00103."""
    fields = codepay.fields(Method.ORDER_QUERY, merchant_order_no="X")
    fields["timestamp"] = str(int((time.time() + offset_minutes * 60) * 1000))

    answer = codepay.answer(codepay.send(codepay.signed(fields)))

    assert answer.code == "E00103"


def test_timestamp_14_minutes_old_is_accepted(codepay):
    """Within the window the request is processed (here: the unknown order is reported)."""
    fields = codepay.fields(Method.ORDER_QUERY, merchant_order_no="X")
    fields["timestamp"] = str(int((time.time() - 14 * 60) * 1000))

    assert codepay.answer(codepay.send(codepay.signed(fields))).code == "E04111"


def test_missing_business_field_is_named(codepay):
    """A missing required field is refused with E00100 and its name."""
    answer = codepay.call(
        Method.CHECKOUT, merchant_order_no="M-1", price_currency="USD", order_amount="1.00", expires="300"
    )

    assert (answer.code, answer.msg) == ("E00100", "[E00100]Missing required parameter: description")


def test_missing_common_field_is_named(codepay):
    """The common fields are required on every method."""
    fields = codepay.fields(Method.ORDER_QUERY, merchant_order_no="X")
    del fields["version"]

    assert codepay.answer(codepay.send(codepay.signed(fields))).msg == "[E00100]Missing required parameter: version"


def test_unknown_app_and_foreign_merchant_are_rejected(codepay):
    """An app_id the gateway does not know, or a merchant_no that is not the app's, is refused."""
    unknown_app = codepay.signed({**codepay.fields(Method.ORDER_QUERY, merchant_order_no="X"), "app_id": "wz0"})
    foreign = codepay.signed({**codepay.fields(Method.ORDER_QUERY, merchant_order_no="X"), "merchant_no": "1"})

    assert codepay.answer(codepay.send(unknown_app)).code == "E00201"
    assert codepay.answer(codepay.send(foreign)).code == "E00202"


def test_unknown_method_is_rejected(codepay):
    """A method outside the method table is refused with E00102 naming it."""
    fields = {**codepay.fields(Method.ORDER_QUERY), "method": "order.teleport"}

    assert codepay.answer(codepay.send(codepay.signed(fields))).msg == "[E00102]Unsupported method: order.teleport"


def test_values_must_arrive_as_json_strings(codepay):
    """A number or nested object would be signed as text the client never signed: refused, naming the field."""
    fields = codepay.fields(Method.ORDER_QUERY, merchant_order_no="X")
    fields["timestamp"] = int(fields["timestamp"])

    answer = codepay.answer(codepay.send(fields))

    assert answer.msg == "[E00101]Invalid parameter: timestamp must be sent as a JSON string"


def test_form_encoded_body_is_accepted(codepay):
    """The gateway also takes application/x-www-form-urlencoded bodies."""
    fields = codepay.signed(codepay.fields(Method.ORDER_QUERY, merchant_order_no="NOT-THERE"))

    answer = codepay.answer(requests.post(f"{codepay.base_url}/api/entry", data=fields, timeout=5))

    assert answer.code == "E04111"


@pytest.mark.parametrize("merchant_order_no", ["has space", "x" * 33, "déjà", "semi;colon"])
def test_malformed_merchant_order_no_is_rejected(codepay, merchant_order_no):
    """merchant_order_no is 1-32 letters, digits or _ - | * @; anything else is E04101."""
    answer = codepay.terminal_order(merchant_order_no)

    assert answer.code == "E04101"


def test_merchant_order_no_with_every_allowed_symbol_is_accepted(codepay):
    """All of _ - | * @ are allowed, up to 32 characters."""
    assert codepay.terminal_order("Ab9_-|*@" + "x" * 24).code == "0"


def test_duplicate_merchant_order_no_is_rejected_across_orders_and_refunds(codepay):
    """A merchant_order_no is unique per merchant, whether it names an order or a refund."""
    codepay.paid_sale("DUP-1")

    again = codepay.terminal_order("DUP-1")
    refund_reusing_it = codepay.refund("DUP-1", "DUP-1", "1.00")

    assert (again.code, again.msg) == ("E04102", "[E04102]Merchant order number already exists")
    assert refund_reusing_it.code == "E04102"


@pytest.mark.parametrize("method", [Method.ORDER_QUERY, Method.REFUND_QUERY])
def test_query_for_an_unknown_order_answers_e04111(codepay, method):
    """order.query and order.refund.query for an unknown number answer E04111 exactly, signed."""
    answer = codepay.call(method, merchant_order_no="NEVER-CREATED")

    assert (answer.code, answer.msg) == ("E04111", "[E04111]Merchant order number is invalid")
    assert set(answer.envelope) == {"code", "msg", "psn", "sign"}


def test_sandbox_error_codes_are_unique_and_codepay_shaped():
    """Every sandbox error code is "E" + 5 digits, and no two errors share one."""
    codes = [error.code for error in errors.ALL_ERROR_CODES]

    assert all(re.fullmatch(r"E\d{5}", code) for code in codes)
    assert len(codes) == len(set(codes))
    assert errors.ORDER_NOT_FOUND.code == "E04111"


def test_calls_are_logged_without_business_data(codepay):
    """GET /sandbox/calls lists method, merchant_order_no, time, code and any fault, nothing more."""
    codepay.terminal_order("LOG-1")
    codepay.call(Method.ORDER_QUERY, merchant_order_no="LOG-2")

    calls = codepay.control("GET", "calls").json()["calls"]

    assert [(c["method"], c["merchant_order_no"], c["code"], c["fault"]) for c in calls] == [
        ("wisehub.cloud.pay.order", "LOG-1", "0", ""),
        ("order.query", "LOG-2", "E04111", ""),
    ]
    assert set(calls[0]) == {"time", "method", "merchant_order_no", "code", "fault"}
