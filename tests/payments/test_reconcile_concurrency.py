"""
Several workers reconciling at once: every due row is claimed, and checked, by exactly one of them, and no
check starts on a lease too old to outlast it.
"""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.utils import timezone

from payments.models import Channel, GatewayCall, Order
from payments.services.orders import order_create
from payments.services.reconcile import LEASE, orders_claim_due, reconciliation_run, reconciliation_run_parallel
from tests.factories import OrderFactory

pytestmark = pytest.mark.usefixtures("sandbox_reset")


def _terminal_orders(account, count: int) -> list[Order]:
    """``count`` terminal sales of 5.00 USD created through the service (the gateway answers each)."""
    return [
        order_create(
            account=account,
            api_key=None,
            channel=Channel.TERMINAL,
            amount=Decimal("5.00"),
            currency="USD",
            description=f"Order {n}",
            terminal_sn="WPYB002248000865",
        ).obj
        for n in range(count)
    ]


def test_two_workers_claim_disjoint_due_orders_and_check_each_once(transactional_db, account):
    """Two passes run in parallel threads (own database connections) over 12 due orders, 3 per claim: each
    order is queried exactly once, and both workers did part of the work at the same time."""
    orders = _terminal_orders(account, 12)
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
        order.merchant_order_no: GatewayCall.objects.filter(
            merchant_order_no=order.merchant_order_no, method="order.query"
        ).count()
        for order in orders
    }
    assert queries == {order.merchant_order_no: 1 for order in orders}
    assert set(Order.objects.values_list("check_attempts", flat=True)) == {1}


def test_a_pass_out_of_time_hands_its_claimed_rows_back(account):
    """Rows claimed by a pass that runs out of time are due again at once, not after the lease."""
    _terminal_orders(account, 3)
    now = timezone.now()
    Order.objects.update(next_check_at=now - timedelta(seconds=1))

    # One chunk of three is claimed; the first check takes longer than the whole pass may.
    report = reconciliation_run(clock=lambda: now, chunk_size=3, max_seconds=0.2, throttle=lambda: time.sleep(0.3))

    assert report.orders_checked == 1
    assert (
        Order.objects.filter(
            check_attempts=1, next_check_at=now + timedelta(seconds=10), check_leased_until=None
        ).count()
        == 1
    )
    assert (
        Order.objects.filter(
            check_attempts=0, next_check_at=now - timedelta(seconds=1), check_leased_until=None
        ).count()
        == 2
    )


def test_rows_leased_by_a_pass_are_not_claimed_by_an_all_pass_until_the_lease_runs_out(account):
    """While a periodic pass holds three due orders, a `reconcile --all` claim takes only the open order nobody
    holds (scheduled later, so not due) and a second one takes nothing; once the lease has run out (its
    worker died), the due orders are claimed again."""
    now = timezone.now()
    due = sorted(OrderFactory(account=account, next_check_at=now - timedelta(seconds=1)).pk for _ in range(3))
    later = OrderFactory(account=account, next_check_at=now + timedelta(minutes=30)).pk

    assert orders_claim_due(now=now, due_before=now) == (due, now + LEASE)
    assert orders_claim_due(now=now, due_before=None) == ([later], now + LEASE)
    assert orders_claim_due(now=now, due_before=None) == ([], now + LEASE)
    assert orders_claim_due(now=now + LEASE, due_before=now + LEASE) == (due, now + 2 * LEASE)


def test_a_chunk_stops_starting_checks_once_its_claim_is_chunk_seconds_old(account):
    """An --all pass over three orders not yet due, one chunk of three, each check slower than chunk_seconds:
    every check starts on a fresh lease (the chunk hands the rest back and the walk claims them again), and
    each order is checked exactly once."""
    pks = sorted(order.pk for order in _terminal_orders(account, 3))
    leases_at_each_check = []

    def slow_throttle():
        leased = Order.objects.exclude(check_leased_until=None).order_by("pk")
        leases_at_each_check.append(list(leased.values_list("pk", "check_leased_until")))
        time.sleep(0.3)

    report = reconciliation_run(due_only=False, chunk_size=3, chunk_seconds=0.2, throttle=slow_throttle)

    assert report.orders_checked == 3
    # Before each check, the rows still held are the ones not yet checked, under a lease taken after the last check.
    assert [[pk for pk, _ in leased] for leased in leases_at_each_check] == [pks, pks[1:], pks[2:]]
    leases = [leased[0][1] for leased in leases_at_each_check]
    assert leases[0] < leases[1] < leases[2]
    assert list(Order.objects.order_by("pk").values_list("check_attempts", "check_leased_until")) == [(1, None)] * 3
    assert GatewayCall.objects.filter(method="order.query").count() == 3


def test_a_soft_time_limit_stops_the_pass_and_hands_the_unchecked_rows_back(account):
    """Celery's SoftTimeLimitExceeded raised during a check is not taken for a failed row: it ends the pass,
    the row being checked is rescheduled, and the row not reached is free to be claimed again at once."""
    for _ in range(3):
        OrderFactory(account=account)
    now = timezone.now()
    Order.objects.update(next_check_at=now - timedelta(seconds=1))
    requests_started = []

    def throttle():
        requests_started.append(len(requests_started) + 1)
        if len(requests_started) == 2:
            raise SoftTimeLimitExceeded()

    with pytest.raises(SoftTimeLimitExceeded):
        reconciliation_run(clock=lambda: now, chunk_size=3, throttle=throttle)

    assert list(Order.objects.order_by("pk").values_list("check_attempts", "next_check_at", "check_leased_until")) == [
        (1, now + timedelta(seconds=10), None),
        (1, now + timedelta(seconds=10), None),
        (0, now - timedelta(seconds=1), None),
    ]


def test_a_pass_in_four_threads_checks_every_due_order_once_and_adds_up_one_report(transactional_db, account):
    """20 due orders, chunks of 3, four threads: 20 checked in one report, one query each, and more than one
    thread did part of the work (each holds its first chunk until another has claimed one)."""
    orders = _terminal_orders(account, 20)
    now = timezone.now()
    Order.objects.update(next_check_at=now - timedelta(seconds=1))
    threads_seen: set[str] = set()
    two_started = threading.Barrier(2, timeout=10)
    lock = threading.Lock()

    def throttle():
        with lock:
            first = threading.current_thread().name not in threads_seen
            threads_seen.add(threading.current_thread().name)
        if first and len(threads_seen) <= 2:
            two_started.wait()

    report = reconciliation_run_parallel(threads=4, throttle=throttle, clock=lambda: now, chunk_size=3)

    assert (report.orders_checked, report.errors) == (20, 0)
    assert len(threads_seen) >= 2 and all(name.startswith("reconcile-") for name in threads_seen)
    queries = GatewayCall.objects.filter(method="order.query").values_list("merchant_order_no", flat=True)
    assert sorted(queries) == sorted(order.merchant_order_no for order in orders)
    assert set(Order.objects.values_list("check_attempts", flat=True)) == {1}


def test_one_thread_is_the_plain_pass(transactional_db, account):
    """threads=1 runs in the caller's thread: nothing to join, the same report."""
    order = OrderFactory(account=account, status="pending", next_check_at=timezone.now() - timedelta(seconds=1))
    seen: list[str] = []

    report = reconciliation_run_parallel(threads=1, throttle=lambda: seen.append(threading.current_thread().name))

    assert (report.orders_checked, seen) == (1, [threading.current_thread().name])
    order.refresh_from_db()
    assert order.check_attempts == 1


def test_a_dropped_database_connection_costs_one_row_and_hands_it_back(transactional_db, account):
    """
    The database drops the pass's connection while it checks the first of six due orders (as a restart
    or failover would): that row fails and, its next check unwritten, is handed back at once instead of
    staying leased for LEASE; the five others are checked on a fresh connection, and so is the first,
    claimed again by the same pass.
    """
    orders = _terminal_orders(account, 6)
    now = timezone.now()
    Order.objects.update(next_check_at=now - timedelta(seconds=1))
    dropped = []

    def drop_the_connection_once():
        if dropped:
            return
        dropped.append(connection.connection.info.backend_pid)
        params = connection.settings_dict
        with psycopg.connect(
            dbname=params["NAME"], user=params["USER"], host=params["HOST"], port=params["PORT"], autocommit=True
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [dropped[0]])

    report = reconciliation_run(throttle=drop_the_connection_once, clock=lambda: now, chunk_size=6)

    assert (report.orders_checked, report.errors) == (7, 1)
    assert set(Order.objects.values_list("check_attempts", "check_leased_until")) == {(1, None)}
    assert sorted(
        GatewayCall.objects.filter(method="order.query", outcome="ok").values_list("merchant_order_no", flat=True)
    ) == sorted(order.merchant_order_no for order in orders)
    assert connection.connection.info.backend_pid != dropped[0]
