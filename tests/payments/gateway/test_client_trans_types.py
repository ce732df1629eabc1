"""
``create_cloud_order`` with every trans_type the reference lists for ``wisehub.cloud.pay.order``, against the
sandbox over real HTTP: each accepted order is queried back for its trans_type and amounts.

Stand-alone types (1 sale, 4 pre-auth, 11 cashback, 12 cash withdrawal) need nothing else; the follow-ups
(2 void, 3 refund, 6 pre-auth completion) name an original paid in the sandbox by orig_merchant_order_no.
Types 5, 7 and 8 (pre-auth cancel, completion cancel, completion refund) only arise from other calls and
are refused by the sandbox as an invalid trans_type.
"""

import uuid
from decimal import Decimal

import pytest
import requests

from payments.gateway import signing
from payments.gateway.client import CodePayClient
from payments.gateway.errors import GatewayDeclined
from tests.conftest import APP_ID, MERCHANT_NO, VECTORS

TERMINAL = "WPYB002248000865"
INVALID_TRANS_TYPE_MESSAGE = "[E00101]Invalid parameter: trans_type must be one of 1, 2, 3, 4, 6, 11, 12"


@pytest.fixture
def client(sandbox):
    return CodePayClient(
        base_url=sandbox.base_url,
        app_id=APP_ID,
        merchant_no=MERCHANT_NO,
        private_key=signing.load_private_key(VECTORS["app_private_key_pem"]),
        gateway_public_key=signing.load_public_key(VECTORS["gateway_public_key_b64der"]),
        read_timeout=2.0,
        connect_timeout=1.0,
        sleep=lambda seconds: None,
    )


def number(prefix):
    return f"{prefix}{uuid.uuid4().hex[:20]}"


def pay(sandbox, merchant_order_no):
    """The terminal completes the order (the customer pays, or the card is authorized)."""
    response = requests.post(f"{sandbox.base_url}/sandbox/orders/{merchant_order_no}/pay", json={}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def cloud_order(client, trans_type, amount, **extra):
    merchant_order_no = number(f"TT{trans_type}X")
    created = client.create_cloud_order(
        merchant_order_no=merchant_order_no,
        terminal_sn=TERMINAL,
        trans_type=trans_type,
        amount=Decimal(amount),
        currency="USD",
        description=f"trans_type {trans_type}",
        expires=300,
        **extra,
    )
    return merchant_order_no, created


def paid_original(client, sandbox, trans_type, amount):
    merchant_order_no, _ = cloud_order(client, trans_type, amount)
    pay(sandbox, merchant_order_no)
    assert client.query_order(merchant_order_no=merchant_order_no).trans_status == "2"
    return merchant_order_no


@pytest.mark.parametrize(
    ("trans_type", "amount", "cashback", "trans_amount"),
    [
        ("1", "20.00", None, "20.00"),
        ("4", "50.00", None, "50.00"),
        ("11", "20.00", "5.00", "25.00"),
        ("12", "40.00", None, "40.00"),
    ],
    ids=["sale", "pre-auth", "cashback", "cash-withdrawal"],
)
def test_stand_alone_trans_type_is_accepted_and_queried_back(
    client, sandbox, trans_type, amount, cashback, trans_amount
):
    """
    Sale, pre-auth, cashback (with cashback_amount) and cash withdrawal are accepted for an online terminal
    and wait on it (status 9) with the amounts sent; paid, the paid amount is the whole transaction amount.
    """
    extra = {"cashback_amount": Decimal(cashback)} if cashback else {}
    merchant_order_no, created = cloud_order(client, trans_type, amount, **extra)
    assert created.terminal_online_status == "online"
    assert created.trans_no.startswith("5") and len(created.trans_no) == 23

    info = client.query_order(merchant_order_no=merchant_order_no)
    assert (info.merchant_order_no, info.trans_no, info.trans_type, info.trans_status) == (
        merchant_order_no,
        created.trans_no,
        trans_type,
        "9",
    )
    assert (info.order_amount, info.cashback_amount, info.tip_amount) == (
        Decimal(amount),
        Decimal(cashback or "0.00"),
        Decimal("0.00"),
    )
    assert (info.trans_amount, info.paid_amount, info.price_currency) == (Decimal(trans_amount), Decimal("0.00"), "USD")

    pay(sandbox, merchant_order_no)
    paid = client.query_order(trans_no=created.trans_no)
    assert (paid.trans_type, paid.trans_status, paid.paid_amount) == (trans_type, "2", Decimal(trans_amount))


def test_void_of_a_paid_sale_is_accepted_and_cancels_the_sale_once_done(client, sandbox):
    """Trans_type 2 names the paid sale; it waits on the terminal, and once done the sale is cancelled (3)."""
    sale_no = paid_original(client, sandbox, "1", "20.00")
    void_no, created = cloud_order(client, "2", "20.00", orig_merchant_order_no=sale_no)

    info = client.query_order(merchant_order_no=void_no)
    assert (info.trans_no, info.trans_type, info.trans_status, info.order_amount, info.trans_amount) == (
        created.trans_no,
        "2",
        "9",
        Decimal("20.00"),
        Decimal("20.00"),
    )
    assert pay(sandbox, void_no)["orig_merchant_order_no"] == sale_no
    assert client.query_order(merchant_order_no=void_no).trans_status == "2"
    sale = client.query_order(merchant_order_no=sale_no)
    assert (sale.trans_type, sale.trans_status, sale.paid_amount) == ("1", "3", Decimal("0.00"))


def test_refund_of_a_paid_sale_is_accepted_and_reads_back_as_a_refund(client, sandbox):
    """Trans_type 3 names the paid sale; a partial refund waits on the terminal, then reads back as done."""
    sale_no = paid_original(client, sandbox, "1", "20.00")
    refund_no, created = cloud_order(client, "3", "7.50", orig_merchant_order_no=sale_no)

    info = client.query_order(merchant_order_no=refund_no)
    assert (info.trans_no, info.trans_type, info.trans_status, info.order_amount, info.trans_amount) == (
        created.trans_no,
        "3",
        "9",
        Decimal("7.50"),
        Decimal("7.50"),
    )
    pay(sandbox, refund_no)
    refund = client.query_refund(merchant_order_no=refund_no)
    assert (refund.trans_no, refund.trans_status, refund.order_amount) == (created.trans_no, "2", Decimal("7.50"))
    assert refund.data["orig_merchant_order_no"] == sale_no
    assert client.query_order(merchant_order_no=sale_no).trans_status == "2"


def test_completion_of_a_paid_pre_auth_is_accepted_and_reads_back_as_a_completion(client, sandbox):
    """Trans_type 6 names the authorized pre-auth; a partial completion waits on the terminal, then is done."""
    auth_no = paid_original(client, sandbox, "4", "50.00")
    completion_no, created = cloud_order(client, "6", "42.00", orig_merchant_order_no=auth_no)

    info = client.query_order(merchant_order_no=completion_no)
    assert (info.trans_no, info.trans_type, info.trans_status, info.order_amount, info.trans_amount) == (
        created.trans_no,
        "6",
        "9",
        Decimal("42.00"),
        Decimal("42.00"),
    )
    pay(sandbox, completion_no)
    done = client.query_order(merchant_order_no=completion_no)
    assert (done.trans_type, done.trans_status, done.paid_amount) == ("6", "2", Decimal("42.00"))
    authorization = client.query_order(merchant_order_no=auth_no)
    assert (authorization.trans_type, authorization.trans_status, authorization.order_amount) == (
        "4",
        "2",
        Decimal("50.00"),
    )


@pytest.mark.parametrize("trans_type", ["2", "3", "6"], ids=["void", "refund", "completion"])
def test_follow_up_without_orig_merchant_order_no_is_refused(client, trans_type):
    """A void, refund or completion that names no original is refused as a missing parameter (E00100)."""
    with pytest.raises(GatewayDeclined) as refused:
        cloud_order(client, trans_type, "1.00")
    assert (refused.value.code, refused.value.message) == (
        "E00100",
        "[E00100]Missing required parameter: orig_merchant_order_no",
    )


@pytest.mark.parametrize(
    ("follow_up", "original", "code"),
    [("2", "4", "E04131"), ("6", "1", "E04131"), ("3", "4", "E04131")],
    ids=["void-of-a-pre-auth", "completion-of-a-sale", "refund-of-a-pre-auth"],
)
def test_follow_up_of_the_wrong_kind_of_original_is_refused(client, sandbox, follow_up, original, code):
    """A sale is voided and refunded, a pre-auth completed; the other pairings are refused (E04131)."""
    original_no = paid_original(client, sandbox, original, "10.00")
    with pytest.raises(GatewayDeclined) as refused:
        cloud_order(client, follow_up, "10.00", orig_merchant_order_no=original_no)
    assert refused.value.code == code
    assert refused.value.message.startswith("[E04131]Transaction type does not allow this operation")


@pytest.mark.parametrize(
    "trans_type", ["5", "7", "8"], ids=["pre-auth-cancel", "completion-cancel", "completion-refund"]
)
def test_trans_types_that_only_arise_from_other_calls_are_refused(client, sandbox, trans_type):
    """
    Pre-auth cancel (5), completion cancel (7) and completion refund (8) are not terminal orders: the sandbox
    refuses them as an invalid parameter (E00101) even with a valid original, and creates nothing.
    """
    auth_no = paid_original(client, sandbox, "4", "10.00")
    with pytest.raises(GatewayDeclined) as refused:
        merchant_order_no = number(f"TT{trans_type}X")
        client.create_cloud_order(
            merchant_order_no=merchant_order_no,
            terminal_sn=TERMINAL,
            trans_type=trans_type,
            amount=Decimal("10.00"),
            currency="USD",
            description="not a terminal order",
            expires=300,
            orig_merchant_order_no=auth_no,
        )
    assert (refused.value.code, refused.value.message) == ("E00101", INVALID_TRANS_TYPE_MESSAGE)
    with pytest.raises(GatewayDeclined) as missing:
        client.query_order(merchant_order_no=merchant_order_no)
    assert missing.value.code == "E04111"
