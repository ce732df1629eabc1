"""Orders on the sandbox: terminal (cloud) orders, hosted checkout, close, revoke and expiry."""

import re
import time

import pytest
import requests

from payments.gateway.methods import Method


def test_order_paid_on_the_terminal_queries_as_success_with_exact_amounts(codepay):
    """Created orders wait in status 9; once paid (with a tip on screen) order.query shows status 2."""
    created = codepay.terminal_order("SALE-1", "144.34", attach="till-7", store_no="4021000008")
    assert codepay.query("SALE-1")["trans_status"] == "9"

    codepay.pay("SALE-1", pay_method_id="MasterCard", tip_amount="30.00")

    query = codepay.query("SALE-1")
    assert query == {
        "trans_no": created.data["trans_no"],
        "merchant_order_no": "SALE-1",
        "trans_type": "1",
        "trans_status": "2",
        "price_currency": "USD",
        "order_amount": "144.34",
        "tip_amount": "30.00",
        "cashback_amount": "0.00",
        "trans_amount": "174.34",
        "paid_amount": "174.34",
        "attach": "till-7",
        "pay_method_id": "MasterCard",
        "pay_scenario": "SWIPE_CARD",
        "terminal_sn": "WPYB002248000865",
        "store_no": "4021000008",
        "trans_end_time": query["trans_end_time"],
        "trans_error_code": "",
        "trans_error_msg": "",
        "discount_bpc": "0.00",
        "discount_bmopc": "0.00",
        "trans_fee_c": "0.00",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", query["trans_end_time"])


def test_query_by_trans_no_wins_over_merchant_order_no(codepay):
    """With both given, order.query looks the transaction up by trans_no."""
    first = codepay.terminal_order("BOTH-1")
    codepay.terminal_order("BOTH-2")

    answer = codepay.call(Method.ORDER_QUERY, trans_no=first.data["trans_no"], merchant_order_no="BOTH-2")

    assert answer.data["merchant_order_no"] == "BOTH-1"


def test_amounts_follow_the_currency_digits(codepay):
    """JPY has no minor digits: "200" is accepted and answered as "200"; "200.5" is refused."""
    assert codepay.terminal_order("JPY-1", "200", price_currency="JPY").code == "0"
    assert codepay.query("JPY-1")["order_amount"] == "200"
    assert codepay.terminal_order("JPY-2", "200.5", price_currency="JPY").msg == (
        "[E04120]Invalid amount: order_amount"
    )


def test_booleans_must_be_lowercase_text(codepay):
    """ "True" (Python's str(True)) is not a protocol boolean."""
    answer = codepay.terminal_order("BOOL-1", on_screen_tip="True")

    assert answer.msg == "[E00101]Invalid parameter: on_screen_tip must be one of true, false"


def test_close_works_only_while_the_order_waits_on_the_terminal(codepay):
    """wisehub.cloud.pay.close turns status 9 into 1; a paid order cannot be closed."""
    codepay.terminal_order("CLOSE-1")
    codepay.paid_sale("CLOSE-2")
    close = {"terminal_sn": "WPYB002248000865", "message_receiving_application": "CodePay Register"}

    closed = codepay.call(Method.CLOUD_PAY_CLOSE, merchant_order_no="CLOSE-1", **close)
    refused = codepay.call(Method.CLOUD_PAY_CLOSE, merchant_order_no="CLOSE-2", **close)

    assert closed.code == "0"
    assert set(closed.data) == {"message_id", "trans_no"}
    assert codepay.query("CLOSE-1")["trans_status"] == "1"
    assert refused.code == "E04130"
    assert codepay.query("CLOSE-2")["trans_status"] == "2"


def test_offline_terminal_rejects_the_order_only_when_asked(codepay):
    """A terminal_sn starting OFFLINE is offline: refused with reject_trade_when_terminal_offline, else queued."""
    rejected = codepay.terminal_order("OFF-1", terminal_sn="OFFLINE-1", reject_trade_when_terminal_offline="true")
    queued = codepay.terminal_order("OFF-2", terminal_sn="OFFLINE-1")

    assert (rejected.code, rejected.msg) == ("E05001", "[E05001]Terminal is offline")
    assert queued.data["terminal_online_status"] == "offline"
    assert codepay.query("OFF-2")["trans_status"] == "9"


def test_terminal_refund_needs_its_original(codepay):
    """trans_type 2, 3 and 6 require orig_merchant_order_no."""
    answer = codepay.terminal_order("REF-T-1", trans_type="3")

    assert answer.msg == "[E00100]Missing required parameter: orig_merchant_order_no"


def test_terminal_void_cancels_the_original_sale(codepay):
    """A void (trans_type 2) completed on the terminal turns the original sale into status 3."""
    codepay.paid_sale("VOIDED-1")
    codepay.terminal_order("VOID-1", trans_type="2", orig_merchant_order_no="VOIDED-1")

    codepay.pay("VOID-1")

    assert codepay.query("VOID-1")["trans_status"] == "2"
    assert codepay.query("VOIDED-1")["trans_status"] == "3"


@pytest.mark.parametrize(
    ("action", "reason"), [("decline", "declined"), ("abandon", "abandoned"), ("expire", "expired")]
)
def test_customer_declining_or_leaving_closes_the_order(codepay, action, reason):
    """The control API's decline, abandon and expire all end an open order in status 1."""
    codepay.terminal_order("GONE-1")

    view = codepay.control("POST", f"orders/GONE-1/{action}").json()

    assert (view["trans_status"], view["close_reason"]) == ("1", reason)
    assert codepay.query("GONE-1")["paid_amount"] == "0.00"


def test_paying_a_closed_order_is_a_conflict(codepay):
    """The control API refuses to pay an order that is no longer open: 409 with the sandbox code."""
    codepay.terminal_order("LATE-1")
    codepay.control("POST", "orders/LATE-1/decline")

    response = codepay.control("POST", "orders/LATE-1/pay")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "E04130"


def test_order_past_its_expiry_is_closed_when_read(codepay):
    """An order still waiting after `expires` seconds reads as closed (status 1), lazily."""
    codepay.terminal_order("EXP-1", expires="1")

    time.sleep(1.05)

    assert codepay.query("EXP-1")["trans_status"] == "1"
    assert codepay.control("POST", "orders/EXP-1/pay").status_code == 409


def test_hosted_checkout_answers_a_pay_url_that_serves_the_payment_page(codepay):
    """pay.checkout creates a waiting order and a pay_url under /sandbox/checkout/ with Pay and Decline."""
    answer = codepay.call(
        Method.CHECKOUT,
        merchant_order_no="WEB-1",
        price_currency="USD",
        order_amount="150.34",
        expires="3600",
        description="Iphone 16 – déjà vu",  # noqa: RUF001 (the dash is non-ASCII input on purpose)
        order_detail='{"items":[{"name":"Iphone 16","quantity":1}]}',
        return_url="https://shop.example.com/return?x=1&y=2",
    )

    assert answer.code == "0"
    assert answer.data == {
        "pay_url": f"{codepay.base_url}/sandbox/checkout/WEB-1",
        "trans_no": answer.data["trans_no"],
    }
    page = requests.get(answer.data["pay_url"], timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "déjà vu" in page.text and ">Pay</button>" in page.text and ">Decline</button>" in page.text
    assert codepay.query("WEB-1")["trans_status"] == "9"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("expires", "604801", "[E00101]Invalid parameter: expires is at most 604800"),
        ("order_detail", "{not json", "[E00101]Invalid parameter: order_detail must be a JSON object sent as a string"),
        ("price_currency", "XYZ", "[E04121]Invalid currency: price_currency"),
    ],
)
def test_hosted_checkout_validates_its_fields(codepay, field, value, message):
    """Expiry beyond 7 days, an unparsable order_detail and an unknown currency are refused."""
    business = {
        "merchant_order_no": "WEB-2",
        "price_currency": "USD",
        "order_amount": "1.00",
        "expires": "300",
        "description": "x",
    }

    assert codepay.call(Method.CHECKOUT, **{**business, field: value}).msg == message


def test_revoke_closes_unpaid_and_refunds_paid_online_orders(codepay):
    """order.revoker: an unpaid order becomes 1, a paid hosted-checkout or QR order becomes 3."""
    checkout = {"price_currency": "USD", "order_amount": "5.00", "expires": "300", "description": "x"}
    codepay.call(Method.CHECKOUT, merchant_order_no="REV-UNPAID", **checkout)
    codepay.call(Method.CHECKOUT, merchant_order_no="REV-PAID", **checkout)
    codepay.pay("REV-PAID")
    codepay.paid_sale("REV-QR", pay_scenario="BSCANQR_PAY")

    answers = [codepay.call(Method.ORDER_REVOKE, merchant_order_no=n) for n in ("REV-UNPAID", "REV-PAID", "REV-QR")]

    assert [a.code for a in answers] == ["0", "0", "0"]
    assert set(answers[0].data) == {"message_id", "trans_no"}
    assert [codepay.query(n)["trans_status"] for n in ("REV-UNPAID", "REV-PAID", "REV-QR")] == ["1", "3", "3"]


def test_revoke_refuses_a_card_present_sale(codepay):
    """A paid SWIPE_CARD terminal sale cannot be revoked; it stays paid and must be refunded instead."""
    codepay.paid_sale("REV-CARD")

    answer = codepay.call(Method.ORDER_REVOKE, merchant_order_no="REV-CARD")

    assert answer.code == "E04135"
    assert codepay.query("REV-CARD")["trans_status"] == "2"


def test_recall_answers_the_transaction_like_order_query(codepay):
    """pay.recall by trans_no answers the same fields as order.query."""
    sale = codepay.paid_sale("RECALL-1")

    answer = codepay.call(Method.RECALL, trans_no=sale["trans_no"])

    assert answer.data == codepay.query("RECALL-1")


def test_control_view_of_an_unknown_order_is_404(codepay):
    """The control API answers 404 with the gateway's not-found code."""
    response = codepay.control("GET", "orders/NOPE")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "E04111", "message": "[E04111]Merchant order number is invalid"}}
