"""
Reconciliation: every order, refund and operation that is not final reaches the gateway's truth on its own.

Notifications get lost and calls time out, so nothing waits on them. Each open order (``pending``,
``processing``, ``unknown``) and refund (``pending``, ``unknown``) carries ``next_check_at``; when it is due,
the gateway is asked (``order.query`` / ``order.refund.query``) and the answer goes through the same services,
and so the same state machine, as a confirmed notification. A capture or void whose answer was lost (an
operation ``unknown``) is looked up the same way (``operation_sync``): by its own merchant_order_no (capture,
void), or through the order's query (increment, tip adjustment, close, revoke). Checks back off (seconds, then
minutes: ``payments.services.checks``); a final state clears ``next_check_at``. An operation's "not found"
grace counts from when it was sent.

Decisions:

- **Claiming.** Any number of workers run passes at once, periodic ones and ``manage.py reconcile --all``
  alike. A worker claims a small chunk of rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and, in the same
  short transaction, leases them: ``check_leased_until`` is set ``LEASE`` ahead. Every claim, due or
  ``--all``, passes over rows whose lease is still running, so no row is checked by two workers at once.
  The lease has its own column because ``next_check_at`` cannot tell a row being checked from one merely
  scheduled later, and ``--all`` must take the latter. The gateway is called outside any transaction, so
  no row lock is held over the network. A check clears the lease; a worker that dies leaves its rows to
  be taken when the lease runs out; a chunk stops starting checks ``CHUNK_SECONDS`` after its claim, and
  a pass that runs out of time (or is stopped by Celery's soft time limit) hands its unchecked rows back
  at once, so no check starts on a lease too old to outlast it.
- **Pace.** Every gateway request waits on the shared limiter (``payments.ratelimit``), so all workers
  together stay under ``CODEPAY_MAX_QPS``.
- **Unknown creates** are only ever queried, never resent. Found: the gateway's state is adopted.
  "Not found" (E04111) is transient right after a create (docs/protocol.md, "Responses"), so the order only
  fails once the gateway has kept not knowing it for ``CODEPAY_UNKNOWN_GRACE_SECONDS`` counted from the
  first "not found" (``order_mark_not_found`` keeps that first time; any answer that finds the order
  clears it).
- **Expiry** of orders nobody paid is its own policy (``payments.services.expiry``); each check applies it.
- **Threads.** A check spends most of its time waiting for the gateway's answer, so one pass runs in
  ``CODEPAY_RECONCILE_THREADS`` threads (``reconciliation_run_parallel``), each claiming its own chunks
  exactly as separate workers do; the shared limiter still paces them all together.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, partial

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, F, Model, Q, Value, When
from django.utils import timezone

from codepay_service.errors import Misconfigured
from codepay_service.rows import on_postgresql, server_bound_cursor
from payments.gateway.errors import GatewayError, is_order_not_found
from payments.gateway.methods import OPEN_TRANS_STATUSES, TransStatus
from payments.models import (
    OperationStatus,
    Order,
    OrderOperation,
    OrderStatus,
    Refund,
)
from payments.selectors import rows_readable
from payments.services.accounts import gateway_client_for
from payments.services.checks import next_check_at
from payments.services.expiry import (
    WAITING_STATUSES,
    order_close_earlier,
    order_close_expired,
    order_expire,
    order_expired,
)
from payments.services.operations import operation_finish, operation_sync
from payments.services.orders import (
    ApplyResult,
    order_apply_gateway_state,
    order_mark_not_found,
)
from payments.services.refunds import refund_sync
from payments.state_machine import (
    ORDER_OPEN_STATUSES,
    REFUND_OPEN_STATUSES,
    order_status_from_gateway,
)

logger = logging.getLogger(__name__)

SOURCE = "reconcile"
# How long a claim holds its rows. A chunk starts checks for at most CHUNK_SECONDS after its claim, and one
# check (a query, a close, a query after it, each with its retries and timeouts) ends within about three
# minutes, so a live worker never loses a row it is checking, even in `manage.py reconcile`, which has no
# task time limit.
LEASE = timedelta(minutes=6)
CHUNK_SECONDS = 120.0
CHUNK_SIZE = 25
# After a stop, how long the caller waits for its threads to finish the check each one is in.
STOP_JOIN_SECONDS = 10.0
OPERATION_OPEN_STATUSES = frozenset({OperationStatus.UNKNOWN})

Throttle = Callable[[], None]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class StatusChange:
    kind: str  # "order", "refund" or "operation"
    merchant_order_no: str
    from_status: str
    to_status: str


@dataclass
class ReconcileReport:
    orders_checked: int = 0
    refunds_checked: int = 0
    operations_checked: int = 0
    errors: int = 0
    changes: list[StatusChange] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "orders_checked": self.orders_checked,
            "refunds_checked": self.refunds_checked,
            "operations_checked": self.operations_checked,
            "errors": self.errors,
            "changed": len(self.changes),
        }


# --- Claiming -----------------------------------------------------------------------------------------


def _candidates(queryset, open_statuses, *, now: datetime, due_before: datetime | None, created_since: datetime | None):
    """Open rows no other worker holds: those due by ``due_before``, or every open one when it is None."""
    rows = (
        queryset.filter(status__in=open_statuses)
        # SKIP LOCKED passes over rows being claimed right now; this, over rows claimed earlier and still
        # being checked outside any transaction.
        .filter(Q(check_leased_until__isnull=True) | Q(check_leased_until__lte=now))
    )
    if due_before is not None:
        rows = rows.filter(next_check_at__lte=due_before)
    if created_since is not None:
        rows = rows.filter(created_at__gte=created_since)
    return rows


def _claim(
    queryset,
    open_statuses,
    *,
    now: datetime,
    due_before: datetime | None,
    limit: int = CHUNK_SIZE,
    after_pk: int = 0,
    created_since: datetime | None = None,
) -> tuple[list[int], datetime]:
    """
    Lock up to ``limit`` open rows that no other worker holds, lease them, and answer their ids: rows due
    by ``due_before``, or every open row (walking up from ``after_pk``) when it is None.
    """
    lease_until = now + LEASE
    with transaction.atomic():
        rows = _candidates(
            queryset.select_for_update(skip_locked=True),
            open_statuses,
            now=now,
            due_before=due_before,
            created_since=created_since,
        )
        if due_before is not None:
            rows = rows.order_by("next_check_at", "pk")
        else:
            # Every open row once: walk by id, since leased rows stay open.
            rows = rows.filter(pk__gt=after_pk).order_by("pk")
        ids = list(rows.values_list("pk", flat=True)[:limit])
        if ids:
            queryset.filter(pk__in=ids).update(check_leased_until=lease_until)
    return ids, lease_until


# What each kind of row is claimed from: open orders, open refunds, and operations of unknown outcome (one
# with its own merchant_order_no is looked up by it, the others through their order).
RECONCILED = {
    "order": (Order.objects.all(), ORDER_OPEN_STATUSES),
    "refund": (Refund.objects.all(), REFUND_OPEN_STATUSES),
    "operation": (OrderOperation.objects.all(), OPERATION_OPEN_STATUSES),
}
orders_claim_due = partial(_claim, *RECONCILED["order"])
refunds_claim_due = partial(_claim, *RECONCILED["refund"])
operations_claim_due = partial(_claim, *RECONCILED["operation"])


def reconciliation_candidates_count(
    *, now: datetime, due_only: bool = True, created_since: datetime | None = None
) -> dict[str, int]:
    """How many rows of each kind a pass starting now would check (rows another worker holds are not counted)."""
    return {
        kind: _candidates(
            rows, open_statuses, now=now, due_before=now if due_only else None, created_since=created_since
        ).count()
        for kind, (rows, open_statuses) in RECONCILED.items()
    }


def _release(model, ids: list[int], *, lease_until: datetime) -> None:
    """Hand back claimed rows this chunk will not check; a due one is taken again at once."""
    if ids:
        model.objects.filter(pk__in=ids, check_leased_until=lease_until).update(check_leased_until=None)


def _schedule_next(model, open_statuses, pk: int, *, attempts: int, now: datetime) -> None:
    """Count the check, set the next one and end the lease; a row that became final keeps no next check."""
    following = next_check_at(attempts + 1, now=now)
    if not on_postgresql():  # SQLite, make run's embedded default: the same through the ORM
        model.objects.filter(pk=pk).update(
            check_attempts=F("check_attempts") + 1,
            check_leased_until=None,
            next_check_at=Case(When(status__in=list(open_statuses), then=Value(following)), default=Value(None)),
        )
        return
    with server_bound_cursor() as cursor:
        cursor.execute(_schedule_statement(model), [list(open_statuses), following, pk])


@cache
def _schedule_statement(model) -> str:
    """``_schedule_next``'s UPDATE on PostgreSQL, written once per model: the ORM rebuilt its CASE for every row
    checked, a tenth of a reconciliation pass's CPU."""
    meta, quote = model._meta, connection.ops.quote_name
    attempts, leased, due, status = (
        quote(meta.get_field(name).column)
        for name in ("check_attempts", "check_leased_until", "next_check_at", "status")
    )
    return (
        f"UPDATE {quote(meta.db_table)} SET {attempts} = {attempts} + 1, {leased} = NULL, "
        f"{due} = CASE WHEN {status} = ANY(%s) THEN %s::timestamptz ELSE NULL END "
        f"WHERE {quote(meta.pk.column)} = %s"
    )


# --- Orders -------------------------------------------------------------------------------------------


def _check(
    row, *, kind: str, model, open_statuses, check: Callable[[], str | None], clock: Clock
) -> StatusChange | None:
    """
    Run one claimed row's check and schedule its next one whatever happens. ``check`` answers the row's
    status after the check (None: unchanged); gateway failures are logged and retried after the back-off.
    """
    to_status = None
    try:
        to_status = check()
    except (GatewayError, Misconfigured) as exc:
        logger.warning(
            "reconcile: check failed",
            extra={"kind": kind, "merchant_order_no": row.merchant_order_no, "error": str(exc)},
        )
        raise
    finally:
        _schedule_next(model, open_statuses, row.pk, attempts=row.check_attempts, now=clock())
    if to_status is None or to_status == row.status:
        return None
    return StatusChange(kind, row.merchant_order_no, row.status, to_status)


def order_reconcile(
    *, order: Order, throttle: Throttle | None = None, clock: Clock = timezone.now
) -> StatusChange | None:
    """Check one claimed order with the gateway, apply the answer, close it if it expired, schedule the next check."""

    def check():
        return _order_check(order, gateway_client_for(order.account, throttle=throttle), now=clock())

    return _check(order, kind="order", model=Order, open_statuses=ORDER_OPEN_STATUSES, check=check, clock=clock)


def _order_check(order: Order, client, *, now: datetime) -> str | None:
    """The order's status after the check (None: unchanged)."""
    try:
        info = client.query_order(merchant_order_no=order.merchant_order_no)
    except GatewayError as exc:
        if not is_order_not_found(exc):
            raise
        if order_mark_not_found(order_id=order.pk, source=SOURCE, now=now) is ApplyResult.APPLIED:
            return OrderStatus.FAILED
        if order.status in WAITING_STATUSES and order_expired(order=order, now=now):
            # The gateway accepted it once but no longer knows it: nothing can be paid on it.
            return order_expire(
                order=order, message="expired; the gateway does not know the order", gateway_trans_status=""
            )
        return None

    if (
        order.status in WAITING_STATUSES
        and info.trans_status not in OPEN_TRANS_STATUSES
        and order_expired(order=order, now=now)
    ):
        # An earlier close of ours (its answer lost, or the query after it failed) is settled by this answer.
        earlier_close = order_close_earlier(order=order)
        if earlier_close is not None:
            if earlier_close.status == OperationStatus.UNKNOWN:
                closed = info.trans_status in (TransStatus.CLOSED.value, TransStatus.CANCELLED.value)
                earlier_close.next_check_at = None
                operation_finish(
                    earlier_close,
                    OperationStatus.SUCCEEDED if closed else OperationStatus.FAILED,
                    message="settled by order.query",
                )
            if info.trans_status == TransStatus.CLOSED.value:
                return order_expire(
                    order=order,
                    message=f"expired; {earlier_close.kind} confirmed by order.query",
                    gateway_trans_status=info.trans_status,
                )

    if _answer_changes_nothing(order, info):
        # The usual answer about a waiting order: nothing to lock or write; only the next check is set.
        result = ApplyResult.UNCHANGED
    else:
        result = order_apply_gateway_state(order_id=order.pk, info=info, source=SOURCE)
    status = (
        order_status_from_gateway(info.trans_status, order.trans_type)
        if result is ApplyResult.APPLIED
        else order.status
    )
    if (
        result is not ApplyResult.CONFLICT
        and status in WAITING_STATUSES
        and info.trans_status in OPEN_TRANS_STATUSES
        and order_expired(order=order, now=now)
    ):
        return order_close_expired(order=order, client=client, gateway_trans_status=info.trans_status) or status
    return status if result is ApplyResult.APPLIED else None


def _answer_changes_nothing(order: Order, info) -> bool:
    """The answer repeats what the order (as read for this check) already holds, so applying it would write nothing."""
    return (
        order_status_from_gateway(info.trans_status, order.trans_type) == order.status
        and order.gateway_trans_status == info.trans_status
        and order.not_found_since is None
        and (order.trans_no or not info.trans_no)
        and info.pay_method_id in ("", order.pay_method_id)
        and (not info.price_currency or info.price_currency.upper() == order.currency)
        and (info.order_amount is None or info.order_amount == order.amount)
    )


# --- Refunds ------------------------------------------------------------------------------------------


def refund_reconcile(
    *, refund: Refund, throttle: Throttle | None = None, clock: Clock = timezone.now
) -> StatusChange | None:
    """Check one claimed refund with the gateway, apply the answer and schedule the next check."""

    def check():
        client = gateway_client_for(refund.account, throttle=throttle)
        if refund_sync(refund=refund, source=SOURCE, client=client, now=clock()) is ApplyResult.APPLIED:
            return Refund.objects.values_list("status", flat=True).get(pk=refund.pk)
        return None

    return _check(refund, kind="refund", model=Refund, open_statuses=REFUND_OPEN_STATUSES, check=check, clock=clock)


# --- Operations whose outcome is unknown ---------------------------------------------------------------


def operation_reconcile(
    *, operation: OrderOperation, throttle: Throttle | None = None, clock: Clock = timezone.now
) -> StatusChange | None:
    """Look up one claimed operation of unknown outcome, settle it, and schedule the next check."""

    def check():
        client = gateway_client_for(operation.order.account, throttle=throttle)
        if operation_sync(operation=operation, client=client, source=SOURCE) is ApplyResult.APPLIED:
            return OrderOperation.objects.values_list("status", flat=True).get(pk=operation.pk)
        return None

    return _check(
        operation,
        kind="operation",
        model=OrderOperation,
        open_statuses=OPERATION_OPEN_STATUSES,
        check=check,
        clock=clock,
    )


# --- A pass -------------------------------------------------------------------------------------------


CLAIMS = {Order: orders_claim_due, Refund: refunds_claim_due, OrderOperation: operations_claim_due}


def reconciliation_run(
    *,
    throttle: Throttle | None = None,
    clock: Clock = timezone.now,
    due_only: bool = True,
    created_since: datetime | None = None,
    max_seconds: float | None = None,
    chunk_size: int = CHUNK_SIZE,
    chunk_seconds: float = CHUNK_SECONDS,
    on_change: Callable[[StatusChange], None] | None = None,
    on_checked: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> ReconcileReport:
    """
    Check the orders, refunds and operations due when the pass starts (every open one with ``due_only=False``), a
    chunk at a time, until none is left or ``max_seconds`` have passed. Safe to run in any number of
    processes at once: each row is claimed by one of them. ``on_checked`` is called after each row checked
    (a progress bar), ``on_change`` for each status it changed. Once ``stop`` is set, no further check starts
    and the rows not reached are handed back.
    """
    stopped = stop.is_set if stop is not None else _never
    report = ReconcileReport()
    pass_deadline = None if max_seconds is None else time.monotonic() + max_seconds
    # Rows rescheduled during this pass are due later than its start, so a pass always ends.
    due_before = clock() if due_only else None
    cursors: dict[type[Model], int] = {Order: 0, Refund: 0, OrderOperation: 0}
    exhausted: set[type[Model]] = set()
    while len(exhausted) < len(cursors):
        for model in cursors:
            if model in exhausted:
                continue
            if stopped() or (pass_deadline is not None and time.monotonic() >= pass_deadline):
                return report
            ids, lease_until = CLAIMS[model](
                now=clock(),
                due_before=due_before,
                limit=chunk_size,
                after_pk=cursors[model],
                created_since=created_since,
            )
            if not ids:
                exhausted.add(model)
                continue
            chunk_deadline = time.monotonic() + chunk_seconds
            if pass_deadline is not None:
                chunk_deadline = min(chunk_deadline, pass_deadline)
            last_checked = _run_chunk(
                model,
                ids,
                lease_until,
                report,
                throttle=throttle,
                clock=clock,
                deadline=chunk_deadline,
                on_change=on_change,
                on_checked=on_checked,
                stopped=stopped,
            )
            if last_checked is not None:
                # A walk over every open row (due_only=False) goes on after the last row checked, so the rows
                # handed back are claimed again and each is visited once.
                cursors[model] = last_checked
    return report


def _never() -> bool:
    return False


def reconciliation_run_parallel(*, threads: int, **options) -> ReconcileReport:
    """
    ``reconciliation_run`` in ``threads`` threads at once (see "Threads" above), their reports added up.

    Each thread claims its own rows and closes its own database connection. When Celery's soft time limit
    stops the caller, every thread stops starting checks and hands its unchecked rows back.
    """
    if threads <= 1:
        return reconciliation_run(**options)
    stop = threading.Event()
    reports: list[ReconcileReport] = []
    failures: list[BaseException] = []

    def one_pass() -> None:
        try:
            reports.append(reconciliation_run(stop=stop, **options))
        except BaseException as exc:  # raised again in the caller's thread
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=one_pass, name=f"reconcile-{n}", daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except SoftTimeLimitExceeded:
        stop.set()
        for worker in workers:
            worker.join(STOP_JOIN_SECONDS)
        raise
    if failures:
        raise failures[0]
    total = ReconcileReport()
    for report in reports:
        total.orders_checked += report.orders_checked
        total.refunds_checked += report.refunds_checked
        total.operations_checked += report.operations_checked
        total.errors += report.errors
        total.changes.extend(report.changes)
    return total


def _run_chunk(
    model, ids, lease_until, report, *, throttle, clock, deadline, on_change, on_checked, stopped=_never
) -> int | None:
    """
    Check the claimed rows in id order, starting none after ``deadline`` but the first, hand back the rest,
    and answer the id of the last row checked (None: none was).
    """
    related = "order__account" if model is OrderOperation else "account"
    # A row that cannot be read (selectors.rows_readable) is logged and left to its lease; the others are checked.
    rows = rows_readable(model.objects.select_related(related).filter(pk__in=ids).order_by("pk"))
    last_checked = None
    for index, row in enumerate(rows):
        # The first row is always checked, so every claim makes progress and a pass always ends.
        if index > 0 and (time.monotonic() >= deadline or stopped()):
            _release(model, [r.pk for r in rows[index:]], lease_until=lease_until)
            break
        last_checked = row.pk
        try:
            if model is Order:
                report.orders_checked += 1
                change = order_reconcile(order=row, throttle=throttle, clock=clock)
            elif model is OrderOperation:
                report.operations_checked += 1
                change = operation_reconcile(operation=row, throttle=throttle, clock=clock)
            else:
                report.refunds_checked += 1
                change = refund_reconcile(refund=row, throttle=throttle, clock=clock)
        except SoftTimeLimitExceeded:
            # Celery is stopping the task: the rows not reached go back at once, and Celery must see the stop.
            _release(model, [r.pk for r in rows[index + 1 :]], lease_until=lease_until)
            raise
        except (GatewayError, Misconfigured):
            report.errors += 1
            change = None
        except Exception:
            # One bad row must not stop the others; it was rescheduled and is retried after its back-off.
            logger.exception("reconcile: unexpected error", extra={"merchant_order_no": row.merchant_order_no})
            report.errors += 1
            change = None
            # A connection the database dropped (a restart, a failover) would fail every row after this one
            # until the pass ends, leaving each leased: the next row connects afresh instead, and this row,
            # whose next check could not be written, is handed back rather than held until its lease ends.
            connection.close_if_unusable_or_obsolete()
            with contextlib.suppress(DatabaseError):
                _release(model, [row.pk], lease_until=lease_until)
        if on_checked is not None:
            on_checked()
        if change is not None:
            report.changes.append(change)
            if on_change is not None:
                on_change(change)
    return last_checked
