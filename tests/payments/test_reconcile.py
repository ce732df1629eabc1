"""Reconciliation against the sandbox gateway over real HTTP: back-off, unknown creates, expiry and its races."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from payments.gateway.results import OrderInfo
from payments.models import (
    Channel,
    GatewayCall,
    OperationKind,
    OperationStatus,
    Order,
    OrderEvent,
    OrderOperation,
    OrderStatus,
    Refund,
    RefundStatus,
)
from payments.services.orders import ApplyResult, order_apply_gateway_state, order_create, order_sync
from payments.services.reconcile import StatusChange, reconciliation_run
from payments.services.refunds import order_refund
from tests.factories import OrderFactory


class TerminalStream(StringIO):
    """stderr as an interactive terminal would present itself."""

    def isatty(self) -> bool:
        return True


TERMINAL_SN = "WPYB002248000865"
pytestmark = pytest.mark.usefixtures("sandbox_reset")


def terminal_order(account, **kwargs) -> Order:
    return order_create(
        account=account,
        api_key=None,
        channel=Channel.TERMINAL,
        amount=Decimal("10.00"),
        currency="USD",
        description="Flat white",
        terminal_sn=TERMINAL_SN,
        **kwargs,
    ).obj


def checkout_order(account) -> Order:
    return order_create(
        account=account,
        api_key=None,
        channel=Channel.CHECKOUT,
        amount=Decimal("25.00"),
        currency="USD",
        description="Gift card",
    ).obj


def make_expired(order: Order, now, settings) -> None:
    """Move the order's expiry back so that its grace period has just run out."""
    Order.objects.filter(pk=order.pk).update(
        expires_at=now - timedelta(seconds=settings.CODEPAY_EXPIRY_GRACE_SECONDS + 1),
        next_check_at=now - timedelta(seconds=1),
    )


def gateway_methods(merchant_order_no: str) -> list[str]:
    return list(
        GatewayCall.objects.filter(merchant_order_no=merchant_order_no).order_by("id").values_list("method", flat=True)
    )


def status_moves(order: Order) -> list[tuple[str, str, str]]:
    return list(
        OrderEvent.objects.filter(order=order, kind="status_changed")
        .order_by("id")
        .values_list("source", "from_status", "to_status")
    )


def test_open_order_checks_back_off_from_seconds_to_minutes(account):
    """Each check of a still-open order counts an attempt and waits longer before the next: 10 s, 20 s, 40 s ... 30
    min."""
    order = terminal_order(account)
    assert (order.status, order.check_attempts) == (OrderStatus.PENDING, 0)
    first_due = order.next_check_at

    now = first_due
    for expected_attempts, expected_delay in ((1, 10), (2, 20), (3, 40)):
        report = reconciliation_run(clock=lambda now=now: now)
        order.refresh_from_db()
        assert report.orders_checked == 1
        assert order.check_attempts == expected_attempts
        assert order.next_check_at == now + timedelta(seconds=expected_delay)
        now = order.next_check_at

    # Not yet due: nothing is asked.
    report = reconciliation_run(clock=lambda: now - timedelta(seconds=1))
    assert report.orders_checked == 0
    assert gateway_methods(order.merchant_order_no) == ["wisehub.cloud.pay.order"] + ["order.query"] * 3

    # A long-open order is asked every 30 minutes.
    Order.objects.filter(pk=order.pk).update(check_attempts=12)
    reconciliation_run(clock=lambda: now)
    order.refresh_from_db()
    assert order.check_attempts == 13
    assert order.next_check_at == now + timedelta(minutes=30)
    assert order.status == OrderStatus.PENDING


def test_unknown_create_that_reached_the_gateway_is_found_by_query(account, sandbox_control):
    """A create that timed out after the gateway created the order is found by query, never sent twice."""
    sandbox_control.fault(fault="timeout_after_create", method="wisehub.cloud.pay.order", seconds=3)
    order = terminal_order(account)
    assert (order.status, order.trans_no) == (OrderStatus.UNKNOWN, "")

    changes = reconciliation_run(clock=lambda: order.next_check_at).changes

    order.refresh_from_db()
    gateway_order = sandbox_control.get(f"orders/{order.merchant_order_no}").json()
    assert changes == [StatusChange("order", order.merchant_order_no, OrderStatus.UNKNOWN, OrderStatus.PENDING)]
    assert order.status == OrderStatus.PENDING
    assert order.trans_no == gateway_order["trans_no"]
    assert order.gateway_trans_status == "9"
    assert order.not_found_since is None
    assert gateway_methods(order.merchant_order_no) == ["wisehub.cloud.pay.order", "order.query"]


def test_unknown_order_the_gateway_never_received_fails_once_the_grace_from_the_first_not_found_ends(account, settings):
    """An unknown order the gateway does not know stays unknown for the grace period counted from the first
    "not found" (not from its creation), then fails; nothing is ever sent but queries."""
    now = timezone.now()
    order = OrderFactory(account=account, status=OrderStatus.UNKNOWN, next_check_at=now - timedelta(seconds=1))
    Order.objects.filter(pk=order.pk).update(created_at=now - timedelta(hours=2))

    reconciliation_run(clock=lambda: now)
    order.refresh_from_db()
    first_not_found = order.not_found_since
    assert order.status == OrderStatus.UNKNOWN
    assert first_not_found == now
    assert (order.check_attempts, order.next_check_at) == (1, now + timedelta(seconds=10))

    later = now + timedelta(seconds=10)
    reconciliation_run(clock=lambda: later)
    order.refresh_from_db()
    assert order.status == OrderStatus.UNKNOWN
    assert order.not_found_since == first_not_found

    # The grace period has now passed since the first "not found".
    Order.objects.filter(pk=order.pk).update(
        not_found_since=first_not_found - timedelta(seconds=settings.CODEPAY_UNKNOWN_GRACE_SECONDS)
    )
    changes = reconciliation_run(clock=lambda: order.next_check_at).changes
    order.refresh_from_db()
    assert changes == [StatusChange("order", order.merchant_order_no, OrderStatus.UNKNOWN, OrderStatus.FAILED)]
    assert (order.status, order.gateway_code, order.next_check_at) == (OrderStatus.FAILED, "E04111", None)
    assert gateway_methods(order.merchant_order_no) == ["order.query"] * 3


def test_expired_terminal_order_is_closed_at_the_gateway_and_marked_expired(account, sandbox_control, settings):
    """A terminal order still waiting after its expiry and grace is closed with wisehub.cloud.pay.close, then
    expired."""
    order = terminal_order(account)
    now = timezone.now()
    make_expired(order, now, settings)

    changes = reconciliation_run(clock=lambda: now).changes

    order.refresh_from_db()
    assert changes == [StatusChange("order", order.merchant_order_no, OrderStatus.PENDING, OrderStatus.EXPIRED)]
    assert (order.status, order.gateway_trans_status, order.next_check_at) == (OrderStatus.EXPIRED, "1", None)
    assert list(OrderOperation.objects.filter(order=order).values_list("kind", "status", "source")) == [
        (OperationKind.CLOSE, OperationStatus.SUCCEEDED, "reconcile")
    ]
    gateway_order = sandbox_control.get(f"orders/{order.merchant_order_no}").json()
    assert (gateway_order["trans_status"], gateway_order["close_reason"]) == ("1", "closed_by_merchant")
    assert gateway_methods(order.merchant_order_no) == [
        "wisehub.cloud.pay.order",
        "order.query",
        "wisehub.cloud.pay.close",
    ]


def test_expired_checkout_order_is_revoked_at_the_gateway_and_marked_expired(account, sandbox_control, settings):
    """An unpaid hosted checkout past its expiry is revoked (order.revoker), confirmed by query, then expired."""
    order = checkout_order(account)
    now = timezone.now()
    make_expired(order, now, settings)

    reconciliation_run(clock=lambda: now)

    order.refresh_from_db()
    assert (order.status, order.paid_amount) == (OrderStatus.EXPIRED, Decimal("0"))
    assert list(OrderOperation.objects.filter(order=order).values_list("kind", "status")) == [
        (OperationKind.REVOKE, OperationStatus.SUCCEEDED)
    ]
    assert sandbox_control.get(f"orders/{order.merchant_order_no}").json()["close_reason"] == "revoked"
    assert gateway_methods(order.merchant_order_no) == ["pay.checkout", "order.query", "order.revoker", "order.query"]


def test_expired_order_the_query_shows_paid_is_applied_and_never_closed(account, sandbox_control, settings):
    """An order past its expiry that the gateway reports paid becomes succeeded; no close is sent."""
    order = terminal_order(account)
    sandbox_control.pay(order.merchant_order_no)
    now = timezone.now()
    make_expired(order, now, settings)

    reconciliation_run(clock=lambda: now)

    order.refresh_from_db()
    assert (order.status, order.paid_amount, order.next_check_at) == (OrderStatus.SUCCEEDED, Decimal("10.00"), None)
    assert OrderOperation.objects.filter(order=order).count() == 0
    assert gateway_methods(order.merchant_order_no) == ["wisehub.cloud.pay.order", "order.query"]


def test_payment_landing_as_the_close_is_sent_wins(account, sandbox_control, settings):
    """The customer pays between our query and our close: the gateway refuses the close, the query after it
    finds the payment, and the order ends succeeded with the money recorded, never expired."""
    order = terminal_order(account)
    now = timezone.now()
    make_expired(order, now, settings)
    requests_sent = []

    def pay_just_before_the_close():
        requests_sent.append(len(requests_sent) + 1)
        if len(requests_sent) == 2:  # 1: order.query, 2: wisehub.cloud.pay.close
            sandbox_control.pay(order.merchant_order_no)

    changes = reconciliation_run(throttle=pay_just_before_the_close, clock=lambda: now).changes

    order.refresh_from_db()
    assert changes == [StatusChange("order", order.merchant_order_no, OrderStatus.PENDING, OrderStatus.SUCCEEDED)]
    assert (order.status, order.paid_amount, order.next_check_at) == (OrderStatus.SUCCEEDED, Decimal("10.00"), None)
    close = OrderOperation.objects.get(order=order)
    assert (close.kind, close.status, close.gateway_code) == (OperationKind.CLOSE, OperationStatus.FAILED, "E04130")
    assert status_moves(order) == [("api", "unknown", "pending"), ("reconcile", "pending", "succeeded")]
    assert gateway_methods(order.merchant_order_no) == [
        "wisehub.cloud.pay.order",
        "order.query",
        "wisehub.cloud.pay.close",
        "order.query",
    ]


def test_checkout_paid_just_before_the_revoke_ends_as_the_gateway_reports(account, sandbox_control, settings):
    """order.revoker refunds an online order that was paid a moment earlier: the query after the revoke sees
    it, and the order ends cancelled (the payment went back to the customer) rather than expired."""
    order = checkout_order(account)
    now = timezone.now()
    make_expired(order, now, settings)
    requests_sent = []

    def pay_just_before_the_revoke():
        requests_sent.append(len(requests_sent) + 1)
        if len(requests_sent) == 2:  # 1: order.query, 2: order.revoker
            sandbox_control.pay(order.merchant_order_no)

    reconciliation_run(throttle=pay_just_before_the_revoke, clock=lambda: now)

    order.refresh_from_db()
    assert (order.status, order.gateway_trans_status, order.next_check_at) == (OrderStatus.CANCELLED, "3", None)
    assert sandbox_control.get(f"orders/{order.merchant_order_no}").json()["trans_status"] == "3"
    assert status_moves(order) == [("api", "unknown", "pending"), ("reconcile", "pending", "cancelled")]


def test_paid_notification_after_the_order_was_marked_expired_wins(account, settings):
    """A payment confirmed after reconciliation expired the order moves it to succeeded: the money is kept."""
    order = terminal_order(account)
    now = timezone.now()
    make_expired(order, now, settings)
    reconciliation_run(clock=lambda: now)
    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED

    paid = OrderInfo.from_data(
        {
            "trans_no": order.trans_no,
            "merchant_order_no": order.merchant_order_no,
            "trans_type": "1",
            "trans_status": "2",
            "price_currency": "USD",
            "order_amount": "10.00",
            "trans_amount": "10.00",
            "paid_amount": "10.00",
        }
    )
    result = order_apply_gateway_state(order_id=order.pk, info=paid, source="notification")

    order.refresh_from_db()
    assert result is ApplyResult.APPLIED
    assert (order.status, order.paid_amount) == (OrderStatus.SUCCEEDED, Decimal("10.00"))
    assert status_moves(order) == [
        ("api", "unknown", "pending"),
        ("reconcile", "pending", "expired"),
        ("notification", "expired", "succeeded"),
    ]


def test_close_with_unknown_outcome_is_never_sent_again(account, sandbox_control, settings):
    """A close that times out is not resent; the next check finds the order closed and marks it expired."""
    order = terminal_order(account)
    now = timezone.now()
    make_expired(order, now, settings)
    sandbox_control.fault(fault="timeout_after_create", method="wisehub.cloud.pay.close", seconds=3)

    reconciliation_run(clock=lambda: now)
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert OrderOperation.objects.get(order=order).status == OperationStatus.UNKNOWN

    reconciliation_run(clock=lambda: order.next_check_at)
    order.refresh_from_db()
    assert (order.status, order.next_check_at) == (OrderStatus.EXPIRED, None)
    assert OrderOperation.objects.get(order=order).status == OperationStatus.SUCCEEDED
    assert gateway_methods(order.merchant_order_no) == [
        "wisehub.cloud.pay.order",
        "order.query",
        "wisehub.cloud.pay.close",
        "order.query",
    ]


def test_refund_completing_later_is_settled_by_reconcile(account, sandbox_control):
    """A refund the gateway keeps in progress stays pending until a check finds it completed."""
    order = terminal_order(account)
    sandbox_control.pay(order.merchant_order_no)
    order_sync(order=order)
    sandbox_control.fault(fault="refund_async", method="order.refund.submit")
    refund = order_refund(order=order, amount=Decimal("4.00"), reason="returned").obj
    assert refund.status == RefundStatus.PENDING

    now = timezone.now()
    Refund.objects.filter(pk=refund.pk).update(next_check_at=now - timedelta(seconds=1))
    report = reconciliation_run(clock=lambda: now)
    refund.refresh_from_db()
    assert (report.orders_checked, report.refunds_checked, report.changes) == (0, 1, [])
    assert (refund.status, refund.check_attempts, refund.next_check_at) == (
        RefundStatus.PENDING,
        1,
        now + timedelta(seconds=10),
    )

    assert sandbox_control.post(f"refunds/{refund.merchant_order_no}/complete").status_code == 200
    changes = reconciliation_run(clock=lambda: refund.next_check_at).changes
    refund.refresh_from_db()
    order.refresh_from_db()
    assert changes == [StatusChange("refund", refund.merchant_order_no, RefundStatus.PENDING, RefundStatus.SUCCEEDED)]
    assert (refund.status, refund.next_check_at) == (RefundStatus.SUCCEEDED, None)
    assert order.refunded_amount == Decimal("4.00")


def test_reconcile_command_prints_each_changed_row_at_verbosity_2(account, sandbox_control, capsys):
    """
    `manage.py reconcile --all -v 2` checks every open order, due or not, and prints merchant_order_no,
    old → new, before the summary.
    """
    paid = terminal_order(account)
    waiting = terminal_order(account)
    sandbox_control.pay(paid.merchant_order_no)

    call_command("reconcile", "--all", verbosity=2)

    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{paid.merchant_order_no} pending → succeeded",
        "Checked 2 orders, 0 refunds and 0 operations: 1 changed, 0 could not be checked.",
    ]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.check_attempts) == (OrderStatus.PENDING, 1)


def test_reconcile_command_shows_a_progress_bar_on_a_terminal_and_only_the_summary_on_stdout(account, sandbox_control):
    """
    At the default verbosity the per-row lines stay out of stdout; on a terminal, stderr carries a bar
    counting the rows checked against the open rows there were, left at its final count (3/3).
    """
    for _ in range(3):
        terminal_order(account)
    stdout, stderr = StringIO(), TerminalStream()

    call_command("reconcile", "--all", stdout=stdout, stderr=stderr)

    assert stdout.getvalue() == "Checked 3 orders, 0 refunds and 0 operations: 0 changed, 0 could not be checked.\n"
    assert "Reconciling" in stderr.getvalue() and "3/3" in stderr.getvalue()


def test_reconcile_command_draws_no_bar_when_stderr_is_not_a_terminal(account, sandbox_control):
    """Cron and pipes get no bar characters: stderr stays empty."""
    terminal_order(account)
    stderr = StringIO()
    call_command("reconcile", "--all", stdout=StringIO(), stderr=stderr)
    assert stderr.getvalue() == ""


def test_reconcile_command_since_limits_to_recent_orders(account, sandbox_control, capsys):
    """`--since 1h` leaves older orders alone."""
    old = terminal_order(account)
    recent = terminal_order(account)
    Order.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=3))
    for order in (old, recent):
        sandbox_control.pay(order.merchant_order_no)

    call_command("reconcile", "--all", "--since", "1h", verbosity=2)

    assert capsys.readouterr().out.splitlines()[0] == f"{recent.merchant_order_no} pending → succeeded"
    old.refresh_from_db()
    assert old.status == OrderStatus.PENDING
