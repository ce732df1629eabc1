"""
A gateway that never signs its error answers (the sandbox's ``unsigned_errors`` fault): money-moving calls
it refuses stay ``unknown``, and reconciliation still ends every one of them, because a query's unsigned
"order not found" is believed once it has lasted past the grace period.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments.models import Order, OrderOperation, Refund
from payments.services.accounts import gateway_client_for
from payments.services.reconcile import reconciliation_run

TERMINAL = {"channel": "terminal", "currency": "USD", "description": "Lunch", "terminal_sn": "WPYB002248000865"}


@pytest.fixture
def unsigned_errors(settings, sandbox_control, sandbox_reset):
    """Every error answer of the sandbox goes out unsigned; "not found" past the grace period (0 s) is believed."""
    settings.CODEPAY_UNKNOWN_GRACE_SECONDS = 0
    sandbox_control.fault(fault="unsigned_errors", rate=1)
    return sandbox_control


def paid(api, sandbox_control, merchant_order_no: str, amount: str, trans_type: str = "sale") -> None:
    created = api.post(
        "/api/v1/orders/",
        json={**TERMINAL, "amount": amount, "trans_type": trans_type, "merchant_order_no": merchant_order_no},
    )
    assert created.status_code == 201, created.text
    sandbox_control.pay(merchant_order_no)
    assert api.post(f"/api/v1/orders/{merchant_order_no}/sync/").json()["status"] in ("succeeded", "authorized")


def test_nothing_stays_unknown_when_the_gateway_never_signs_its_errors(api, account, unsigned_errors):
    """
    An order refused at creation (terminal offline), a refund refused (already refunded at the gateway) and a
    capture refused (authorization already voided there) are each answered 202 ``unknown``: an unsigned
    refusal is not trusted. One reconciliation pass queries each by its own number, gets an unsigned
    E04111 and, past the grace period, settles it ``failed``; nothing is left unknown.
    """
    offline = api.post(
        "/api/v1/orders/",
        json={
            **TERMINAL,
            "amount": "5.00",
            "terminal_sn": "OFFLINE-1",
            "reject_when_terminal_offline": True,
            "merchant_order_no": "OFF-1",
        },
    )
    paid(api, unsigned_errors, "SALE-U", "20.00")
    client = gateway_client_for(account)
    client.submit_refund(
        merchant_order_no="ELSEWHERE-R",
        orig_merchant_order_no="SALE-U",
        amount=Decimal("20.00"),
        currency="USD",
        description="at the till",
    )
    refund = api.post(
        "/api/v1/orders/SALE-U/refunds/", json={"amount": "5.00", "reason": "late", "merchant_order_no": "SALE-U-R"}
    )
    paid(api, unsigned_errors, "AUTH-U", "30.00", trans_type="auth")
    client.cancel_payment(
        merchant_order_no="ELSEWHERE-V", trans_no=Order.objects.get(merchant_order_no="AUTH-U").trans_no
    )
    capture = api.post("/api/v1/orders/AUTH-U/capture/", json={"amount": "30.00"})

    assert (offline.status_code, offline.json()["status"]) == (202, "unknown")
    assert offline.json()["gateway_message"].startswith("unsigned error answer [E05001]")
    assert (refund.status_code, refund.json()["status"]) == (202, "unknown")
    assert (capture.status_code, capture.json()["operations"][0]["status"]) == (202, "unknown")

    report = reconciliation_run(due_only=False)

    assert report.errors == 0
    assert Order.objects.get(merchant_order_no="OFF-1").status == "failed"
    assert (Order.objects.get(merchant_order_no="OFF-1").failure_code) == "E04111"
    assert Refund.objects.get(merchant_order_no="SALE-U-R").status == "failed"
    assert OrderOperation.objects.get(kind="capture").status == "failed"
    assert Order.objects.get(merchant_order_no="AUTH-U").status == "authorized"
    unknown = (
        Order.objects.filter(status="unknown").count(),
        Refund.objects.filter(status="unknown").count(),
        OrderOperation.objects.filter(status="unknown").count(),
    )
    assert unknown == (0, 0, 0)


def test_an_unsigned_not_found_within_the_grace_period_changes_nothing(api, settings, unsigned_errors):
    """Right after a create, "not found" can be transient: unsigned and within the grace period, the order stays
    unknown."""
    settings.CODEPAY_UNKNOWN_GRACE_SECONDS = 900
    api.post(
        "/api/v1/orders/",
        json={
            **TERMINAL,
            "amount": "5.00",
            "terminal_sn": "OFFLINE-2",
            "reject_when_terminal_offline": True,
            "merchant_order_no": "OFF-2",
        },
    )

    reconciliation_run(due_only=False)

    order = Order.objects.get(merchant_order_no="OFF-2")
    assert (order.status, order.not_found_since is not None) == ("unknown", True)
