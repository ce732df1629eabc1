"""Pre-authorizations on the sandbox: one capture within the authorized total, increments, voids, and the
follow-ups after a capture, all as ``payments.gateway.methods.FOLLOW_UPS`` says."""

from payments.gateway.methods import Method


def _authorization(codepay, merchant_order_no: str, amount: str) -> str:
    """A pre-auth (trans_type 4) authorized on the terminal; its trans_no."""
    assert codepay.terminal_order(merchant_order_no, amount, trans_type="4").code == "0"
    return codepay.pay(merchant_order_no)["trans_no"]


def test_one_capture_within_the_authorized_total_including_increments(codepay):
    """A capture may take the authorization plus increments, never more; it is the only capture."""
    auth_trans_no = _authorization(codepay, "AUTH-1", "100.00")

    over = codepay.call(Method.CAPTURE, merchant_order_no="CAP-0", trans_no=auth_trans_no, trans_amount="120.00")
    increment = codepay.call(Method.INCREMENTAL_AUTH, trans_no=auth_trans_no, trans_amount="30.00")
    beyond = codepay.call(Method.CAPTURE, merchant_order_no="CAP-1", trans_no=auth_trans_no, trans_amount="130.01")
    first = codepay.call(Method.CAPTURE, merchant_order_no="CAP-2", trans_no=auth_trans_no, trans_amount="120.00")
    second = codepay.call(Method.CAPTURE, merchant_order_no="CAP-3", trans_no=auth_trans_no, trans_amount="10.00")
    late_increment = codepay.call(Method.INCREMENTAL_AUTH, trans_no=auth_trans_no, trans_amount="1.00")

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
    assert beyond.code == "E04133"
    assert first.data["trans_status"] == "2" and first.data["trans_no"] != auth_trans_no
    assert (second.code, second.msg) == (
        "E04130",
        "[E04130]Transaction status does not allow this operation: the authorization is already captured; "
        "one capture per authorization",
    )
    assert late_increment.code == "E04130"
    assert codepay.query("AUTH-1")["trans_amount"] == "130.00"
    capture = codepay.query("CAP-2")
    assert capture == {
        "trans_no": first.data["trans_no"],
        "merchant_order_no": "CAP-2",
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
        "trans_error_code": "",
        "trans_error_msg": "",
        "discount_bpc": "0.00",
        "discount_bmopc": "0.00",
        "trans_fee_c": "0.00",
    }


def test_captured_money_is_refunded_and_retipped_through_the_capture_only(codepay):
    """
    Refunds and tip adjustments after a capture name the capture (FOLLOW_UPS): the authorization's
    trans_no is refused with E04131; the capture's refund is a completion refund (trans_type 8).
    """
    auth_trans_no = _authorization(codepay, "AUTH-R", "50.00")
    capture = codepay.call(Method.CAPTURE, merchant_order_no="CAP-R", trans_no=auth_trans_no, trans_amount="40.00")

    by_auth = codepay.call(
        Method.REFUND_PAYMENT, merchant_order_no="R-AUTH", trans_no=auth_trans_no, order_amount="1.00"
    )
    submit_by_auth = codepay.refund("AUTH-R", "R-AUTH-2", "1.00")
    tip_by_auth = codepay.call(Method.TIP_ADJUST_BY_TRANS_NO, trans_no=auth_trans_no, tip_amount="5.00")
    tip = codepay.call(Method.TIP_ADJUST_BY_TRANS_NO, trans_no=capture.data["trans_no"], tip_amount="5.00")
    tip_again = codepay.call(Method.TIP_ADJUST_BY_TRANS_NO, trans_no=capture.data["trans_no"], tip_amount="6.00")
    refund = codepay.call(
        Method.REFUND_PAYMENT, merchant_order_no="R-CAP", trans_no=capture.data["trans_no"], order_amount="10.00"
    )
    submitted = codepay.refund("CAP-R", "R-CAP-2", "36.00")
    over = codepay.refund("CAP-R", "R-CAP-3", "0.01")

    assert (by_auth.code, by_auth.msg) == (
        "E04131",
        "[E04131]Transaction type does not allow this operation: an authorization moved no money; refund its "
        "capture (trans_type 6) by the capture's trans_no",
    )
    assert submit_by_auth.code == "E04131"
    assert tip_by_auth.code == "E04131"
    assert (tip.code, tip_again.code, refund.code, submitted.code) == ("0", "0", "0", "0")
    assert codepay.query("CAP-R")["tip_amount"] == "6.00"  # the new total, not 5.00 + 6.00
    assert codepay.query("CAP-R")["paid_amount"] == "46.00"
    assert codepay.query("R-CAP")["trans_type"] == "8"
    assert over.code == "E04132"


def test_a_capture_is_voided_by_its_own_trans_no_until_its_batch_closes(codepay):
    """pay.cancel on the capture makes a trans_type 7 and releases the authorization; after a batch close it is
    refused."""
    auth_trans_no = _authorization(codepay, "AUTH-C7", "30.00")
    capture = codepay.call(Method.CAPTURE, merchant_order_no="CAP-C7", trans_no=auth_trans_no, trans_amount="30.00")
    void = codepay.call(Method.CANCEL_PAYMENT, merchant_order_no="VOID-C7", trans_no=capture.data["trans_no"])

    second_auth = _authorization(codepay, "AUTH-C7B", "30.00")
    second = codepay.call(Method.CAPTURE, merchant_order_no="CAP-C7B", trans_no=second_auth, trans_amount="30.00")
    codepay.call(Method.BATCH_CLOSE, terminal_sn="WPYB002248000865")
    late = codepay.call(Method.CANCEL_PAYMENT, merchant_order_no="VOID-C7B", trans_no=second.data["trans_no"])

    assert (void.code, codepay.query("VOID-C7")["trans_type"]) == ("0", "7")
    assert (codepay.query("CAP-C7")["trans_status"], codepay.query("AUTH-C7")["trans_status"]) == ("3", "3")
    assert (late.code, codepay.query("CAP-C7B")["trans_status"]) == ("E04134", "2")


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

    assert (cancel.code, cancel.msg) == (
        "E04130",
        "[E04130]Transaction status does not allow this operation: the authorization is already captured; "
        "void the capture by its own trans_no",
    )
    assert refund.code == "0"


def test_terminal_completion_captures_the_authorization(codepay):
    """A terminal completion (trans_type 6) is checked against the authorization; a second one is refused."""
    _authorization(codepay, "AUTH-4", "40.00")

    over = codepay.terminal_order("COMP-0", "40.01", trans_type="6", orig_merchant_order_no="AUTH-4")
    completion = codepay.terminal_order("COMP-1", "40.00", trans_type="6", orig_merchant_order_no="AUTH-4")
    codepay.pay("COMP-1")

    assert over.code == "E04133"
    assert completion.code == "0"
    assert codepay.query("COMP-1")["trans_status"] == "2"
    assert codepay.terminal_order("COMP-2", "0.01", trans_type="6", orig_merchant_order_no="AUTH-4").code == "E04130"
