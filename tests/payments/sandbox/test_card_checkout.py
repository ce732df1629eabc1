"""Merchant-hosted card checkout on the sandbox: encrypted card data, outcomes by PAN, 3-D Secure."""

import json

import pytest
import requests

from payments.gateway import signing
from payments.gateway.methods import Method

BILLING_ADDRESS = json.dumps(
    {"name": "Test Holder", "country": "US", "city": "Austin", "address1": "1 Main St", "zip": "78701"},
    separators=(",", ":"),
)


def _card(codepay, pan: str, *, expiry: str = "1230", cvv: str = "123") -> str:
    card = {"card_type": "CREDIT", "pan": pan, "expiry": expiry, "cvv": cvv, "holder": "TEST HOLDER"}
    return signing.encrypt_card(json.dumps(card, separators=(",", ":")), codepay.gateway_public_key)


def _checkout(codepay, merchant_order_no: str, card: str):
    return codepay.call(
        Method.MERCHANT_CHECKOUT,
        card=card,
        billing_address=BILLING_ADDRESS,
        merchant_order_no=merchant_order_no,
        price_currency="USD",
        order_amount="34.50",
        expires="300",
        description="IPhone White X2",
        return_url="https://shop.example.com/return",
    )


def test_approved_card_is_paid_at_once_and_only_its_last_four_digits_are_kept(codepay):
    """A valid card decrypts and pays (status 2); the sandbox keeps last4 and brand, no PAN anywhere."""
    answer = _checkout(codepay, "CARD-OK", _card(codepay, "4242424242424242"))

    assert answer.data == {
        "trans_no": answer.data["trans_no"],
        "trans_status": "2",
        "pay_method_id": "Visa",
        "trans_end_time": answer.data["trans_end_time"],
    }
    view = codepay.order_view("CARD-OK")
    assert (view["trans_status"], view["card_last4"], view["paid_amount"]) == ("2", "4242", "34.50")
    calls = codepay.control("GET", "calls").text
    assert "4242424242424242" not in json.dumps(view) + calls


def test_brand_follows_the_card_number(codepay):
    """The pay_method_id is the brand of the PAN (MasterCard here)."""
    assert _checkout(codepay, "CARD-MC", _card(codepay, "5555555555554444")).data["pay_method_id"] == "MasterCard"


def test_decline_test_card_is_declined(codepay):
    """4000000000000002 is declined: the call succeeds and the order ends in status 1."""
    answer = _checkout(codepay, "CARD-NO", _card(codepay, "4000000000000002"))

    assert (answer.code, answer.data["trans_status"]) == ("0", "1")
    assert codepay.query("CARD-NO")["paid_amount"] == "0.00"


def test_3ds_test_card_waits_for_authentication_then_pays(codepay):
    """4000000000003220 needs 3-D Secure: status 0 with a challenge URL; completing it pays the order."""
    answer = _checkout(codepay, "CARD-3DS", _card(codepay, "4000000000003220"))

    assert answer.data["trans_status"] == "0"
    assert answer.data["redirect_url_3dsecure"] == f"{codepay.base_url}/sandbox/3ds/CARD-3DS"
    page = requests.get(answer.data["redirect_url_3dsecure"], timeout=5)
    assert ">Authenticate</button>" in page.text
    assert codepay.control("POST", "orders/CARD-3DS/3ds/complete").json()["trans_status"] == "2"
    assert codepay.query("CARD-3DS")["trans_status"] == "2"


def test_failed_3ds_closes_the_order(codepay):
    """A failed challenge ends the order in status 1."""
    _checkout(codepay, "CARD-3DS-NO", _card(codepay, "4000000000003220"))

    assert codepay.control("POST", "orders/CARD-3DS-NO/3ds/fail").json()["trans_status"] == "1"
    assert codepay.query("CARD-3DS-NO")["trans_status"] == "1"


@pytest.mark.parametrize(
    ("card", "detail"),
    [
        ("bm90IGNpcGhlcnRleHQ=", "card cannot be decrypted"),
        ({"pan": "4242424242424241"}, "pan"),
        ({"pan": "4242424242424242", "cvv": "12"}, "cvv"),
        ({"pan": "4242424242424242", "expiry": "1399"}, "expiry"),
        ({"pan": "4242424242424242", "expiry": "0120"}, "expiry"),
    ],
    ids=["not-encrypted", "bad-luhn", "short-cvv", "bad-month", "expired"],
)
def test_unreadable_or_invalid_card_is_refused_without_echoing_it(codepay, card, detail):
    """Undecryptable or invalid card data is E05101 naming the problem, never the card number."""
    ciphertext = card if isinstance(card, str) else _card(codepay, **card)

    answer = _checkout(codepay, "CARD-BAD", ciphertext)

    assert (answer.code, answer.msg) == ("E05101", f"[E05101]Card data is invalid: {detail}")
    assert codepay.call(Method.ORDER_QUERY, merchant_order_no="CARD-BAD").code == "E04111"
