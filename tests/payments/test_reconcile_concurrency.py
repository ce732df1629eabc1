"""Several workers reconciling at once: every due row is claimed, and checked, by exactly one of them."""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from payments.models import Channel, GatewayCall, Order
from payments.services.orders import order_create
from payments.services.reconcile import reconciliation_run

pytestmark = pytest.mark.usefixtures("sandbox_reset")


def test_two_workers_claim_disjoint_due_orders_and_check_each_once(transactional_db, account):
    """Two passes run in parallel threads (own database connections) over 12 due orders, 3 per claim: each
    order is queried exactly once, and both workers did part of the work at the same time."""
    orders = [
        order_create(
            account=account,
            api_key=None,
            channel=Channel.TERMINAL,
            amount=Decimal("5.00"),
            currency="USD",
            description=f"Order {n}",
            terminal_sn="WPYB002248000865",
        ).order
        for n in range(12)
    ]
    now = timezone.now()
    Order.objects.update(next_check_at=now - timedelta(seconds=1))

    started = {"a": threading.Event(), "b": threading.Event()}
    reports, failures = {}, []

    def worker(name: str, other: str) -> None:
        first = True

        def throttle():
            # Each worker waits, holding its first claimed chunk, until the other has claimed one too.
            nonlocal first
            if first:
                first = False
                started[name].set()
                assert started[other].wait(10)

        try:
            reports[name] = reconciliation_run(throttle=throttle, clock=lambda: now, chunk_size=3)
        except Exception as exc:  # surfaced below with the thread's own error
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=("a", "b")), threading.Thread(target=worker, args=("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == []
    assert reports["a"].orders_checked + reports["b"].orders_checked == 12
    assert reports["a"].orders_checked >= 3 and reports["b"].orders_checked >= 3
    queries = {
        order.merchant_order_no: GatewayCall.objects.filter(merchant_order_no=order.merchant_order_no, method="order.query").count()
        for order in orders
    }
    assert queries == {order.merchant_order_no: 1 for order in orders}
    assert set(Order.objects.values_list("check_attempts", flat=True)) == {1}


def test_a_pass_out_of_time_hands_its_claimed_rows_back(account):
    """Rows claimed by a pass that runs out of time are due again at once, not after the lease."""
    for _ in range(3):
        order_create(
            account=account, api_key=None, channel=Channel.TERMINAL, amount=Decimal("5.00"), currency="USD",
            description="Tea", terminal_sn="WPYB002248000865",
        )  # fmt: skip
    now = timezone.now()
    Order.objects.update(next_check_at=now - timedelta(seconds=1))

    # One chunk of three is claimed; the first check takes longer than the whole pass may.
    report = reconciliation_run(clock=lambda: now, chunk_size=3, max_seconds=0.2, throttle=lambda: time.sleep(0.3))

    assert report.orders_checked == 1
    assert Order.objects.filter(check_attempts=1, next_check_at=now + timedelta(seconds=10)).count() == 1
    assert Order.objects.filter(check_attempts=0, next_check_at=now).count() == 2
