"""Refunds on the sandbox: never more than was paid, even when requests race; asynchronous completion."""

import threading
from concurrent.futures import ThreadPoolExecutor

from payments.gateway.methods import Method


def test_partial_refunds_stop_at_the_paid_amount(codepay):
    """Partial refunds add up to the paid amount and not a cent more."""
    sale = codepay.paid_sale("PAID-1", "10.00")

    first = codepay.refund("PAID-1", "PAID-1-R1", "6.00")
    too_much = codepay.refund("PAID-1", "PAID-1-R2", "4.01")
    rest = codepay.refund("PAID-1", "PAID-1-R3", "4.00", orig_trans_no=sale["trans_no"])

    assert first.code == "0"
    assert first.data == {"trans_no": first.data["trans_no"], "trans_amount": "6.00", "trans_status": "2"}
    assert (too_much.code, too_much.msg) == (
        "E04132",
        "[E04132]Refund amount exceeds the refundable amount: at most 4.00 USD is refundable",
    )
    assert rest.code == "0"
    assert codepay.refund("PAID-1", "PAID-1-R4", "0.01").code == "E04132"


def test_refund_query_answers_the_refund_and_its_original(codepay):
    """order.refund.query shows the refund as trans_type 3 pointing at the original order."""
    codepay.paid_sale("RQ-1", "20.00")
    refund = codepay.refund("RQ-1", "RQ-1-R1", "7.50")

    answer = codepay.call(Method.REFUND_QUERY, merchant_order_no="RQ-1-R1")

    assert answer.data == {
        "trans_no": refund.data["trans_no"],
        "merchant_order_no": "RQ-1-R1",
        "orig_merchant_order_no": "RQ-1",
        "trans_type": "3",
        "trans_status": "2",
        "price_currency": "USD",
        "order_amount": "7.50",
        "trans_end_time": answer.data["trans_end_time"],
    }
    assert codepay.call(Method.REFUND_QUERY, merchant_order_no="RQ-1").code == "E04111"


def _two_refunds_at_once(codepay, merchant_order_no: str, amount: str) -> list[str]:
    """Submit two refunds released by a barrier at the same instant; their answer codes, sorted."""
    barrier = threading.Barrier(2)

    def refund(suffix: str) -> str:
        barrier.wait()
        return codepay.refund(merchant_order_no, f"{merchant_order_no}-{suffix}", amount).code

    with ThreadPoolExecutor(max_workers=2) as pool:
        return sorted(pool.map(refund, ("A", "B")))


def test_concurrent_refunds_cannot_both_spend_the_same_paid_amount(codepay):
    """Two refunds of 6.00 on a 10.00 sale, released at the same instant: exactly one succeeds, every time."""
    for round_no in range(5):
        codepay.paid_sale(f"RACE-{round_no}", "10.00")

        assert _two_refunds_at_once(codepay, f"RACE-{round_no}", "6.00") == ["0", "E04132"]


def test_refund_in_another_currency_is_refused(codepay):
    """price_currency must match the original order's."""
    codepay.paid_sale("CUR-1")

    answer = codepay.call(
        Method.REFUND_SUBMIT,
        orig_merchant_order_no="CUR-1",
        merchant_order_no="CUR-1-R",
        price_currency="EUR",
        order_amount="1.00",
        description="x",
    )

    assert answer.code == "E04122"


def test_refund_of_an_unpaid_order_is_refused(codepay):
    """Only a paid (status 2) original can be refunded."""
    codepay.terminal_order("UNPAID-1")

    assert codepay.refund("UNPAID-1", "UNPAID-1-R", "1.00").code == "E04130"


def test_refund_needs_its_original_named(codepay):
    """orig_merchant_order_no or orig_trans_no is required."""
    answer = codepay.call(
        Method.REFUND_SUBMIT, merchant_order_no="ORPHAN", price_currency="USD", order_amount="1.00", description="x"
    )

    assert answer.msg == "[E00100]Missing required parameter: orig_merchant_order_no or orig_trans_no"


def test_async_refund_holds_its_amount_until_completed(codepay):
    """With refund_async a refund stays in progress (0) and holds its amount until the control API completes it."""
    codepay.paid_sale("ASYNC-1", "10.00")
    codepay.control("POST", "faults", {"method": "order.refund.submit", "fault": "refund_async"})

    pending = codepay.refund("ASYNC-1", "ASYNC-1-R1", "10.00")

    assert pending.data["trans_status"] == "0"
    assert codepay.refund("ASYNC-1", "ASYNC-1-R2", "0.01").code == "E04132"
    completed = codepay.control("POST", "refunds/ASYNC-1-R1/complete").json()
    assert completed["trans_status"] == "2"
    assert codepay.call(Method.REFUND_QUERY, merchant_order_no="ASYNC-1-R1").data["trans_status"] == "2"


def test_failed_async_refund_releases_its_amount(codepay):
    """A refund failed via control ends in status 1 and the amount can be refunded again."""
    codepay.paid_sale("ASYNC-2", "10.00")
    codepay.control("POST", "faults", {"method": "*", "fault": "refund_async"})
    codepay.refund("ASYNC-2", "ASYNC-2-R1", "10.00")

    failed = codepay.control("POST", "refunds/ASYNC-2-R1/fail").json()

    assert failed["trans_status"] == "1"
    assert codepay.refund("ASYNC-2", "ASYNC-2-R2", "10.00").data["trans_status"] == "2"


def test_refund_payment_by_trans_no_includes_the_tip(codepay):
    """pay.refund refunds order and tip amounts of a sale; together they cannot exceed what was paid."""
    sale = codepay.paid_sale("TIPPED-1", "10.00", tip_amount="2.00")

    refund = codepay.call(
        Method.REFUND_PAYMENT,
        merchant_order_no="TIPPED-1-R",
        trans_no=sale["trans_no"],
        order_amount="10.00",
        tip_amount="2.00",
    )
    more = codepay.call(
        Method.REFUND_PAYMENT, merchant_order_no="TIPPED-1-R2", trans_no=sale["trans_no"], order_amount="0.01"
    )

    assert refund.data == {
        "trans_no": refund.data["trans_no"],
        "trans_status": "2",
        "auth_no": refund.data["trans_no"][-6:],
        "resp_code": "000",
        "resp_msg": "[000]APPROVAL",
        "trans_time": refund.data["trans_time"],
    }
    assert codepay.call(Method.REFUND_QUERY, merchant_order_no="TIPPED-1-R").data["order_amount"] == "10.00"
    assert more.code == "E04132"
