"""Pre-authorizations on the sandbox: capture within the authorized total, increments, cancel."""

from payments.gateway.methods import Method


def _authorization(codepay, merchant_order_no: str, amount: str) -> str:
    """A pre-auth (trans_type 4) authorized on the terminal; its trans_no."""
    assert codepay.terminal_order(merchant_order_no, amount, trans_type="4").code == "0"
    return codepay.pay(merchant_order_no)["trans_no"]


def test_capture_is_limited_to_the_authorized_total_including_increments(codepay):
    """Captures may total the original authorization plus increments, never more."""
    auth_trans_no = _authorization(codepay, "AUTH-1", "100.00")

    over = codepay.call(Method.CAPTURE, merchant_order_no="CAP-0", trans_no=auth_trans_no, trans_amount="120.00")
    increment = codepay.call(Method.INCREMENTAL_AUTH, trans_no=auth_trans_no, trans_amount="30.00")
    first = codepay.call(Method.CAPTURE, merchant_order_no="CAP-1", trans_no=auth_trans_no, trans_amount="120.00")
    beyond = codepay.call(Method.CAPTURE, merchant_order_no="CAP-2", trans_no=auth_trans_no, trans_amount="10.01")
    last = codepay.call(Method.CAPTURE, merchant_order_no="CAP-3", trans_no=auth_trans_no, trans_amount="10.00")

    assert (over.code, over.msg) == (
        "E04133",
        "[E04133]Capture amount exceeds the remaining authorized amount: at most 100.00 can be captured",
    )
    assert increment.data == {
        "trans_status": "2",
        "auth_no": auth_trans_no[-6:],
        "resp_code": "000",
        "resp_msg": "[000]APPROVAL",
        "trans_time": increment.data["trans_time"],
    }
    assert first.data["trans_status"] == "2" and first.data["trans_no"] != auth_trans_no
    assert beyond.code == "E04133"
    assert last.code == "0"
    assert codepay.query("AUTH-1")["trans_amount"] == "130.00"
    capture = codepay.query("CAP-1")
    assert capture == {
        "trans_no": first.data["trans_no"],
        "merchant_order_no": "CAP-1",
        "trans_type": "6",
        "trans_status": "2",
        "price_currency": "USD",
        "order_amount": "120.00",
        "tip_amount": "0.00",
        "cashback_amount": "0.00",
        "trans_amount": "120.00",
        "paid_amount": "120.00",
        "attach": "",
        "pay_method_id": "Visa",
        "pay_scenario": "SWIPE_CARD",
        "terminal_sn": "WPYB002248000865",
        "store_no": "",
        "trans_end_time": capture["trans_end_time"],
    }


def test_capture_of_a_sale_is_refused(codepay):
    """Only a pre-auth (trans_type 4) can be captured."""
    sale = codepay.paid_sale("NOT-AUTH")

    answer = codepay.call(Method.CAPTURE, merchant_order_no="CAP-S", trans_no=sale["trans_no"], trans_amount="1.00")

    assert answer.code == "E04131"


def test_cancel_releases_an_uncaptured_authorization(codepay):
    """pay.cancel turns the authorization into status 3; it can no longer be captured."""
    auth_trans_no = _authorization(codepay, "AUTH-2", "50.00")

    cancel = codepay.call(Method.CANCEL_PAYMENT, merchant_order_no="CANCEL-2", trans_no=auth_trans_no)
    capture = codepay.call(Method.CAPTURE, merchant_order_no="CAP-4", trans_no=auth_trans_no, trans_amount="1.00")

    assert (cancel.code, cancel.data["trans_status"]) == ("0", "2")
    assert cancel.data["trans_no"] != auth_trans_no
    assert codepay.query("AUTH-2")["trans_status"] == "3"
    assert codepay.query("CANCEL-2")["trans_type"] == "5"
    assert capture.code == "E04130"


def test_cancel_after_a_capture_is_refused(codepay):
    """A captured authorization cannot be cancelled; the capture is refunded instead."""
    auth_trans_no = _authorization(codepay, "AUTH-3", "50.00")
    codepay.call(Method.CAPTURE, merchant_order_no="CAP-5", trans_no=auth_trans_no, trans_amount="20.00")

    cancel = codepay.call(Method.CANCEL_PAYMENT, merchant_order_no="CANCEL-3", trans_no=auth_trans_no)
    refund = codepay.refund("CAP-5", "CAP-5-R", "20.00")

    assert cancel.code == "E04130"
    assert refund.code == "0"


def test_terminal_completion_captures_the_authorization(codepay):
    """A terminal completion (trans_type 6) is checked against the authorization when it is completed."""
    _authorization(codepay, "AUTH-4", "40.00")

    over = codepay.terminal_order("COMP-0", "40.01", trans_type="6", orig_merchant_order_no="AUTH-4")
    completion = codepay.terminal_order("COMP-1", "40.00", trans_type="6", orig_merchant_order_no="AUTH-4")
    codepay.pay("COMP-1")

    assert over.code == "E04133"
    assert completion.code == "0"
    assert codepay.query("COMP-1")["trans_status"] == "2"
    assert codepay.terminal_order("COMP-2", "0.01", trans_type="6", orig_merchant_order_no="AUTH-4").code == "E04133"
