"""Batches and tips on the sandbox: open-batch totals, closing by terminal, what a closed batch forbids."""

import json

from payments.gateway.methods import Method

TERMINAL_A = "WPYB002248000865"
TERMINAL_B = "WPYB002248000999"


def _sale(codepay, merchant_order_no: str, amount: str, terminal_sn: str, store_no: str = "4021000008") -> dict:
    return codepay.paid_sale(merchant_order_no, amount, terminal_sn=terminal_sn, store_no=store_no)


def _terminals(*terminal_sns: str) -> str:
    return json.dumps(list(terminal_sns), separators=(",", ":"))


def test_open_batch_counts_successful_card_present_transactions_net_of_refunds(codepay):
    """batch.open.query counts paid terminal sales and refunds (refunds subtract), per terminal or for all."""
    _sale(codepay, "B-1", "10.00", TERMINAL_A)
    _sale(codepay, "B-2", "5.50", TERMINAL_A)
    _sale(codepay, "B-3", "7.00", TERMINAL_B, store_no="4021000009")
    codepay.refund("B-1", "B-1-R", "2.00")
    codepay.terminal_order("B-UNPAID", "99.00")

    everything = codepay.call(Method.OPEN_BATCH)
    terminal_a = codepay.call(Method.OPEN_BATCH, terminal_sn_list=_terminals(TERMINAL_A))
    store_b = codepay.call(Method.OPEN_BATCH, store_no="4021000009")

    assert everything.data == {"count": "4", "total_amount": "20.50"}
    assert terminal_a.data == {"count": "3", "total_amount": "13.50"}
    assert store_b.data == {"count": "1", "total_amount": "7.00"}


def test_batch_close_closes_only_the_named_terminal(codepay):
    """batch.close settles one terminal's open batch; the other terminal's stays open."""
    _sale(codepay, "BC-1", "10.00", TERMINAL_A)
    _sale(codepay, "BC-2", "3.00", TERMINAL_B)

    closed = codepay.call(Method.BATCH_CLOSE, terminal_sn=TERMINAL_A)

    assert (closed.code, closed.data) == ("0", {})
    assert codepay.call(Method.OPEN_BATCH).data == {"count": "1", "total_amount": "3.00"}


def test_batch_close_terminals_reports_what_it_closed(codepay):
    """batch.close.terminals with an empty list closes every terminal and answers count and total."""
    _sale(codepay, "BT-1", "10.00", TERMINAL_A)
    _sale(codepay, "BT-2", "3.00", TERMINAL_B)

    closed = codepay.call(Method.BATCH_CLOSE_TERMINALS, terminal_sn_list=_terminals())

    assert closed.data == {"count": "2", "total_amount": "13.00"}
    assert codepay.call(Method.OPEN_BATCH).data == {"count": "0", "total_amount": "0"}


def test_closed_batch_allows_refunds_but_not_voids_or_tip_changes(codepay):
    """After a batch close a sale can be refunded, but not voided or tip-adjusted."""
    sale = _sale(codepay, "BV-1", "10.00", TERMINAL_A)
    codepay.call(Method.BATCH_CLOSE, terminal_sn=TERMINAL_A)

    void = codepay.terminal_order("BV-1-VOID", trans_type="2", orig_merchant_order_no="BV-1")
    tip = codepay.call(Method.TIP_ADJUST_BY_TRANS_NO, trans_no=sale["trans_no"], tip_amount="1.00")
    refund = codepay.refund("BV-1", "BV-1-R", "10.00")

    assert (void.code, void.msg) == ("E04134", "[E04134]Transaction is in a closed batch; refund it instead")
    assert tip.code == "E04134"
    assert refund.code == "0"


def test_tip_adjustment_sets_the_tip_of_an_open_sale(codepay):
    """pay.tip.adjust and tip.adjustment set the tip; trans_amount and paid_amount follow."""
    sale = _sale(codepay, "TIP-1", "20.00", TERMINAL_A)

    by_trans_no = codepay.call(Method.TIP_ADJUST_BY_TRANS_NO, trans_no=sale["trans_no"], tip_amount="3.00")
    after_first = codepay.query("TIP-1")
    by_order_no = codepay.call(Method.TIP_ADJUSTMENT, merchant_order_no="TIP-1", tip_adjustment_amount="4.50")

    assert by_trans_no.data == {"trans_time": after_first["trans_end_time"], "trans_status": "2"}
    assert (after_first["tip_amount"], after_first["trans_amount"]) == ("3.00", "23.00")
    assert (by_order_no.code, by_order_no.data) == ("0", {})
    query = codepay.query("TIP-1")
    assert (query["tip_amount"], query["trans_amount"], query["paid_amount"]) == ("4.50", "24.50", "24.50")
