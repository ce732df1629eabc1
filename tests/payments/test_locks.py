"""
Row locks on orders and refunds (payments.locks): held until the block ends, and always the order's before
the refund's, so two changes to one order never wait on each other in a circle.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from payments.locks import order_locked, refund_locked
from payments.models import Order, Refund
from tests.factories import RefundFactory


def _locked_tables(queries) -> list[str]:
    """The tables of the SELECT ... FOR UPDATE statements, in the order they ran."""
    tables = []
    for query in queries:
        sql = query["sql"]
        if sql.startswith("SELECT") and "FOR UPDATE" in sql:
            tables.append(sql.split(" FROM ", 1)[1].split()[0].strip('"'))
    return tables


def test_refund_locked_locks_the_order_then_the_refund_and_yields_both(db):
    """``refund_locked`` takes the order's row lock first, then the refund's, and yields the two rows."""
    refund = RefundFactory()

    with CaptureQueriesContext(connection) as queries, refund_locked(refund_id=refund.pk) as (order, locked):
        assert (order.pk, locked.pk) == (refund.order_id, refund.pk)

    assert _locked_tables(queries) == ["payments_order", "payments_refund"]


def _in_thread(target) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _row_lockable(model, pk: int) -> bool:
    """From its own connection: can the row be locked right now (``NOWAIT``)?"""
    answer: list[bool] = []

    def attempt() -> None:
        try:
            with transaction.atomic():
                model.objects.select_for_update(nowait=True).get(pk=pk)
            answer.append(True)
        except OperationalError:
            answer.append(False)

    thread, errors = _in_thread(attempt)
    thread.join(10)
    assert errors == []
    return answer[0]


def _wait_for_a_lock_wait(timeout: float = 10.0) -> None:
    """Until some session of this database waits on a row lock (PostgreSQL's own account, no guessing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    pytest.fail("no session started waiting for a lock")


def test_order_locked_holds_the_row_until_the_block_ends(transactional_db):
    """Inside ``order_locked`` no other session can lock the order; once the block ends, one can."""
    refund = RefundFactory()

    with order_locked(order_id=refund.order_id) as order:
        assert order.pk == refund.order_id
        assert _row_lockable(Order, refund.order_id) is False

    assert _row_lockable(Order, refund.order_id) is True


def test_refund_locked_waits_for_the_order_without_holding_the_refund(transactional_db):
    """
    While another session holds the order's lock, ``refund_locked`` waits for it before touching the refund:
    the refund stays lockable by anyone meanwhile, and the block runs once the order's lock is released.
    """
    refund = RefundFactory()
    holding, release = threading.Event(), threading.Event()
    entered = threading.Event()

    def hold_order() -> None:
        with order_locked(order_id=refund.order_id):
            holding.set()
            assert release.wait(10)

    def lock_refund() -> None:
        with refund_locked(refund_id=refund.pk):
            entered.set()

    holder, holder_errors = _in_thread(hold_order)
    assert holding.wait(10)
    waiter, waiter_errors = _in_thread(lock_refund)
    try:
        _wait_for_a_lock_wait()
        assert entered.is_set() is False
        assert _row_lockable(Refund, refund.pk) is True
    finally:
        release.set()
        holder.join(10)
        waiter.join(10)

    assert entered.is_set() is True
    assert (holder_errors, waiter_errors) == ([], [])
