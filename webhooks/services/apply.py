"""
Applying a stored, verified delivery: find what it is about, confirm it by query, apply it through the
payments services, and record the outcome on the delivery, exactly once.

Why confirm by query: a notification is a hint. Its signature proves the gateway sent it, not that it
is the latest word (deliveries are duplicated, late and out of order), nor even that it is about this
merchant's order: the gateway signs for every merchant with one key, and a body that omits merchant_no
and app_id cannot be told apart. So a final result (trans_status 2 success, 3 cancelled, 1 closed) is
only applied as a signed ``order.query`` / ``order.refund.query`` answers it at the time of applying
(docs/protocol.md, "Notifications": a notification is a hint). Only 9 created and 0 in progress, which decide nothing,
are applied from the notification itself. ``CODEPAY_CONFIRM_NOTIFICATIONS`` turns confirmation off
(tests, or a gateway without queries); never in production. Every query takes its turn on the gateway
rate limit that all workers share (``payments.ratelimit``), like the reconciler's.

A query can lag the notification: a late payment notified as 2 while the query still answers 1, a cancel
notified as 3 while it still answers 2. Whatever the query answered is applied; then, if the notified
status could still move the order (or refund) forward by the state machine, the query has not caught up
and the delivery is not settled: it is retried until the answer reaches it, or parked as "dead".

A capture or void carries its own merchant_order_no. While its operation's outcome is unknown (the call
timed out), the notification is settled by ``operation_sync``, which queries that number and applies the
effect under the order's lock; once the operation is settled, its notifications are "ignored". They are
queried even with confirmation off: payments has no way to apply an operation from a payload.

Applying goes through the payments services and selectors only (``order_apply_gateway_state`` /
``refund_apply_gateway_state``, ``gateway_target_find``), which check amount and currency against the order
and never move a status backwards. Here the order's row is locked (``payments.locks.order_locked``) around
the service call and the delivery's own status, so deliveries about one order are decided one at a time and
a delivery is marked applied in the same transaction as the change it made: exactly once, however many
copies arrive or workers run.

A copy is recognised by its fingerprint (sha256 of the canonical sign string) within the account: once
one copy is settled with the status it announced (applied or stale as the notification itself said, or
as a query answered that very status), later copies are "duplicate" and change nothing. A copy settled
on a query that answered something else proves nothing about the announced status, so later copies ask
again.

Two ways in share one decision step (``_attempt``): ``notification_apply`` (the task and the sweep) acts
only on a delivery still pending and schedules the next attempt when it cannot settle it;
``notification_replay_apply`` (an operator's replay) takes one more look at any delivery, never schedules,
and leaves the record of a delivery already processed as it was. A failure keeps its message in
``last_error`` and, when an exception caused it, the formatted traceback in ``last_traceback``.

Logs carry ids and statuses, never bodies (``attach`` and other fields are the merchant's).
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from codepay_service.errors import ServiceError
from payments.gateway.client import CodePayClient
from payments.gateway.errors import GatewayDeclined, GatewayError
from payments.gateway.methods import OPEN_TRANS_STATUSES
from payments.gateway.results import OrderInfo, RefundInfo
from payments.locks import order_locked
from payments.models import MerchantAccount, OperationStatus, Order, OrderOperation, Refund
from payments.ratelimit import gateway_rate_limiter
from payments.selectors import gateway_status_ahead, gateway_target_find
from payments.services.accounts import gateway_client_for
from payments.services.operations import operation_sync
from payments.services.orders import ApplyResult, order_apply_gateway_state, order_note_notified_amounts
from payments.services.refunds import refund_apply_gateway_state

from .. import conf
from ..models import PENDING_STATUSES, SETTLED_STATUSES, NotificationDelivery, ProcessingStatus, Verification

logger = logging.getLogger(__name__)

SOURCE = "notification"
UNMATCHED_ERROR = "no order or refund with this merchant_order_no yet"
DUPLICATE_MESSAGE = "another copy of this notification was already applied"
ALREADY_PROCESSED = "already processed"
# What a failed delivery keeps of its traceback: the end, where the error was raised, is what an operator reads.
TRACEBACK_MAX_CHARS = 16_000

# Processed for good: a replay that fails does not write an error onto them.
_DONE_STATUSES = frozenset({*SETTLED_STATUSES, ProcessingStatus.DUPLICATE, ProcessingStatus.IGNORED})
_RESULT_STATUS = {
    ApplyResult.APPLIED: ProcessingStatus.APPLIED,
    ApplyResult.UNCHANGED: ProcessingStatus.APPLIED,
    ApplyResult.STALE: ProcessingStatus.STALE,
    ApplyResult.CONFLICT: ProcessingStatus.CONFLICT,
}


@dataclass(frozen=True)
class ApplyOutcome:
    delivery_id: int
    status: str
    result: str = ""
    message: str = ""
    retry_in: float | None = None


class _ConfirmationMismatch(GatewayError):
    kind = "mismatch"


def notification_apply(*, delivery_id: int) -> ApplyOutcome:
    """
    Apply one stored, verified delivery through the payments services; idempotent.

    A delivery already processed is left alone. On a missing order or refund, or a failure, it is
    scheduled again (``retry_in``, ``next_attempt_at``) and parked once its retries are spent.
    """
    return _attempt(delivery_id, _FIRST_HAND)


def notification_replay_apply(*, delivery_id: int) -> ApplyOutcome:
    """
    Apply one stored, verified delivery again, whatever its status, through the same decision step.

    Never schedules: a failure is only noted (on a delivery not yet processed for good). A delivery already
    settled keeps its record of what it did the first time unless this look changes the order.
    """
    return _attempt(delivery_id, _REPLAY)


def _already_processed(delivery: NotificationDelivery) -> ApplyOutcome | None:
    """The outcome to report for a delivery no longer pending (nothing more to do), else None."""
    if _is_pending(delivery):
        return None
    return ApplyOutcome(delivery.pk, delivery.status, delivery.result, ALREADY_PROCESSED)


class _FirstHand:
    """``notification_apply``: only a pending delivery is worked on, and a failure schedules the next attempt."""

    def refusal(self, delivery: NotificationDelivery) -> ApplyOutcome | None:
        return _already_processed(delivery)

    def keeps_record(self, locked: NotificationDelivery, statuses: frozenset) -> bool:
        return False

    def retry(self, locked: NotificationDelivery, *, unmatched: bool, error: str, trace: str) -> ApplyOutcome:
        now = timezone.now()
        delays = conf.unmatched_retry_delays() if unmatched else conf.failure_retry_delays()
        retry_in: float | None = None
        if locked.attempts <= len(delays):
            retry_in = delays[locked.attempts - 1]
            locked.status = ProcessingStatus.UNMATCHED if unmatched else ProcessingStatus.RETRYING
            locked.next_attempt_at = now + timedelta(seconds=retry_in)
            locked.status_message = f"attempt {locked.attempts} of {len(delays) + 1}: next in {retry_in:g}s"
        else:
            locked.status = ProcessingStatus.UNMATCHED if unmatched else ProcessingStatus.DEAD
            locked.next_attempt_at = None
            locked.processed_at = now
            locked.status_message = f"parked after {locked.attempts} attempts; replay it once the cause is fixed"
        locked.last_error, locked.last_traceback = error, trace
        locked.save(
            update_fields=[
                "status",
                "next_attempt_at",
                "status_message",
                "last_error",
                "last_traceback",
                "processed_at",
            ]
        )
        logger.warning(
            "notification not applied",
            extra={
                "delivery_id": locked.pk,
                "status": locked.status,
                "attempts": locked.attempts,
                "retry_in": retry_in,
            },
        )
        return ApplyOutcome(locked.pk, locked.status, locked.result, error, retry_in)


class _Replay:
    """``notification_replay_apply``: one extra look that leaves the status, the schedule and a settled record as
    they were."""

    def refusal(self, delivery: NotificationDelivery) -> ApplyOutcome | None:
        return None

    def keeps_record(self, locked: NotificationDelivery, statuses: frozenset) -> bool:
        return locked.status in statuses

    def retry(self, locked: NotificationDelivery, *, unmatched: bool, error: str, trace: str) -> ApplyOutcome:
        if locked.status not in _DONE_STATUSES:
            locked.last_error, locked.last_traceback = error, trace
            locked.save(update_fields=["last_error", "last_traceback"])
        return ApplyOutcome(locked.pk, locked.status, locked.result, f"replayed: {error}")


_FIRST_HAND = _FirstHand()
_REPLAY = _Replay()
_Pass = _FirstHand | _Replay


def _attempt(delivery_id: int, pass_: _Pass) -> ApplyOutcome:
    """The decision step both ways in share: find the target, ask the gateway, apply under the order's lock."""
    delivery = NotificationDelivery.objects.select_related("account").get(pk=delivery_id)
    if delivery.verification != Verification.VALID:
        return ApplyOutcome(delivery_id, delivery.status, message="not verified; never applied")
    refused = pass_.refusal(delivery)
    if refused is not None:
        return refused

    now = timezone.now()
    if pass_ is _FIRST_HAND:
        duplicate = _duplicate_settle(delivery, now=now)
        if duplicate is not None:
            return duplicate
    NotificationDelivery.objects.filter(pk=delivery_id).update(attempts=F("attempts") + 1, last_attempt_at=now)
    delivery.attempts += 1
    try:
        target = gateway_target_find(
            account_id=delivery.account_id, merchant_order_no=delivery.merchant_order_no, trans_no=delivery.trans_no
        )
        if target is None:
            return _record_retry(delivery, pass_, unmatched=True, error=UNMATCHED_ERROR)
        if isinstance(target, OrderOperation):
            return _operation_settle(delivery, target, pass_)
        info, confirmed = _gateway_state(delivery, target, copies_looked_for=pass_ is _FIRST_HAND)
        return _apply_locked(delivery, target, info, pass_, confirmed=confirmed)
    except SoftTimeLimitExceeded:
        # The task's time is up, not a failure of this delivery: it stays due, and the task stops.
        raise
    except Exception as exc:  # every failure is retried, then parked as "dead"; nothing is lost
        if not isinstance(exc, (GatewayError, ServiceError)):
            logger.exception("notification apply failed unexpectedly", extra={"delivery_id": delivery_id})
        return _record_retry(delivery, pass_, unmatched=False, error=_error_text(exc), trace=_traceback_text(exc))


def _is_pending(delivery: NotificationDelivery) -> bool:
    if delivery.status == ProcessingStatus.UNMATCHED:
        return delivery.next_attempt_at is not None
    return delivery.status in PENDING_STATUSES


def _delivery_locked(delivery_id: int) -> NotificationDelivery:
    return NotificationDelivery.objects.select_for_update().get(pk=delivery_id)


def _settled_copies(delivery: NotificationDelivery):
    """Other copies of the same message (same account and fingerprint) settled with the status it announced."""
    copies = NotificationDelivery.objects.filter(
        account_id=delivery.account_id,
        fingerprint=delivery.fingerprint,
        status__in=SETTLED_STATUSES,
        confirmed_trans_status__in=("", delivery.trans_status),
    )
    return copies.exclude(pk=delivery.pk) if delivery.pk else copies


def _settled_copy_exists(delivery: NotificationDelivery) -> bool:
    return _settled_copies(delivery).exists()


def _duplicate_settle(delivery: NotificationDelivery, *, now: datetime) -> ApplyOutcome | None:
    """
    A copy of a message already settled (the gateway re-posts until it reads "success"): recorded as
    "duplicate", pointing where the settled copy points, before the order is looked up or locked. A
    settled copy stays settled, so nothing under the order's lock could decide otherwise; the update only
    takes a delivery still pending, so a copy settled meanwhile by another worker is left as it is.
    """
    # Any one copy will do: no ORDER BY, which would walk the primary key instead of the fingerprint index.
    found = next(iter(_settled_copies(delivery).order_by().values_list("order_id", "refund_id")[:1]), None)
    if found is None:
        return None
    order_id, refund_id = found
    taken = NotificationDelivery.objects.filter(pk=delivery.pk, status__in=PENDING_STATUSES).update(
        status=ProcessingStatus.DUPLICATE,
        status_message=DUPLICATE_MESSAGE,
        order_id=order_id,
        refund_id=refund_id,
        processed_at=now,
        next_attempt_at=None,
        last_error="",
        last_traceback="",
        attempts=F("attempts") + 1,
        last_attempt_at=now,
    )
    if not taken:
        delivery.refresh_from_db(fields=["status", "result"])
        return ApplyOutcome(delivery.pk, delivery.status, delivery.result, ALREADY_PROCESSED)
    return ApplyOutcome(delivery.pk, ProcessingStatus.DUPLICATE, delivery.result, DUPLICATE_MESSAGE)


def _gateway_client(account: MerchantAccount | None) -> CodePayClient:
    """The account's client, taking its turn on the gateway rate limit every worker shares."""
    if account is None:  # a delivery is applied only once matched to an account
        raise ValueError("a notification delivery without a merchant account cannot query the gateway")
    return gateway_client_for(account, throttle=gateway_rate_limiter())


def _query_method(target: Order | Refund) -> str:
    return "order.refund.query" if isinstance(target, Refund) else "order.query"


def _gateway_state(
    delivery: NotificationDelivery, target: Order | Refund, *, copies_looked_for: bool
) -> tuple[OrderInfo | RefundInfo | None, bool]:
    """
    What to apply: a signed query's answer for a final result, else the notification itself; None (nothing
    to ask) when a copy of the message is already settled. Copies are checked again under the order's lock;
    looking here first only spares the gateway a query, so a notification applied as sent skips it.
    """
    is_refund = isinstance(target, Refund)
    if not conf.confirm_notifications() or delivery.trans_status in OPEN_TRANS_STATUSES:
        return (RefundInfo if is_refund else OrderInfo).from_data(delivery.payload or {}), False
    # A first-hand attempt has just looked for a settled copy (``_duplicate_settle``); a replay has not.
    if not copies_looked_for and _settled_copy_exists(delivery):
        return None, False
    client = _gateway_client(delivery.account)
    info: OrderInfo | RefundInfo
    if is_refund:
        info = client.query_refund(merchant_order_no=target.merchant_order_no)
    else:
        info = client.query_order(merchant_order_no=target.merchant_order_no)
    if info.merchant_order_no and info.merchant_order_no != target.merchant_order_no:
        raise _ConfirmationMismatch(f"answered about {info.merchant_order_no}", method=_query_method(target))
    return info, True


def _apply_locked(
    delivery: NotificationDelivery,
    target: Order | Refund,
    info: OrderInfo | RefundInfo | None,
    pass_: _Pass,
    *,
    confirmed: bool,
) -> ApplyOutcome:
    is_refund = isinstance(target, Refund)
    order_id = target.order_id if isinstance(target, Refund) else target.pk
    now = timezone.now()
    # The order's row lock orders every delivery about this order (and its refunds) one after another.
    with order_locked(order_id=order_id):
        locked = _delivery_locked(delivery.pk)
        refused = pass_.refusal(locked)
        if refused is not None:
            return refused
        locked.order_id = order_id
        locked.refund_id = target.pk if is_refund else None
        if info is None or _settled_copy_exists(locked):
            if pass_.keeps_record(locked, SETTLED_STATUSES):
                message = "replayed: another copy was settled first; unchanged"
                return ApplyOutcome(locked.pk, locked.status, locked.result, message)
            return _finish(locked, ProcessingStatus.DUPLICATE, now=now, message=DUPLICATE_MESSAGE)

        # _gateway_state answers a refund with a RefundInfo and an order with an OrderInfo.
        if is_refund:
            result = refund_apply_gateway_state(refund_id=target.pk, info=cast(RefundInfo, info), source=SOURCE)
        else:
            result = order_apply_gateway_state(order_id=order_id, info=cast(OrderInfo, info), source=SOURCE)
        status = _RESULT_STATUS[result]
        message = _result_message(delivery, info, result, confirmed=confirmed)
        notified, answered = delivery.trans_status, info.trans_status
        lagging = (
            confirmed
            and answered != notified
            and result is not ApplyResult.CONFLICT
            and gateway_status_ahead(target=target, trans_status=notified)
        )
        if lagging:
            # The query has not caught up with what the gateway notified: ask again later. Whatever the
            # answer changed stays applied; the delivery itself is not settled.
            if not pass_.keeps_record(locked, _DONE_STATUSES):
                locked.result, locked.confirmed_trans_status = result.value, answered
                locked.save(update_fields=["order", "refund", "result", "confirmed_trans_status"])
            method = _query_method(target)
            error = f"unconfirmed: {method} answered trans_status {answered}, the notification said {notified}"
            return _record_retry(locked, pass_, unmatched=False, error=error)
        if result is not ApplyResult.APPLIED and pass_.keeps_record(locked, SETTLED_STATUSES):
            # Replaying a settled delivery keeps its record of what it did the first time.
            return ApplyOutcome(locked.pk, locked.status, result.value, f"replayed: {message}")
        if confirmed and not is_refund:
            notified_mismatch = order_note_notified_amounts(
                order_id=order_id, notified=OrderInfo.from_data(delivery.payload or {}), source=SOURCE
            )
            if notified_mismatch:
                status, message = (
                    ProcessingStatus.CONFLICT,
                    f"{message}; but the notification said: {notified_mismatch}",
                )
        locked.result = result.value
        locked.confirmed_trans_status = answered if confirmed else ""
        outcome = _finish(locked, status, now=now, message=message)
    logger.info(
        "notification applied",
        extra={"delivery_id": delivery.pk, "order_id": order_id, "result": result.value, "status": status},
    )
    return outcome


def _result_message(delivery, info, result: ApplyResult, *, confirmed: bool) -> str:
    source = "confirmed by query" if confirmed else "from the notification"
    text = f"{result.value}: trans_status {info.trans_status} {source}"
    if confirmed and info.trans_status != delivery.trans_status:
        text += f" (the notification said {delivery.trans_status})"
    if result is ApplyResult.CONFLICT:
        text += "; amount or currency differs from ours, nothing changed"
    return text


def _finish(locked: NotificationDelivery, status: str, *, now: datetime, message: str) -> ApplyOutcome:
    locked.status = status
    locked.status_message = message[:255]
    locked.processed_at = now
    locked.next_attempt_at = None
    locked.last_error = ""
    locked.last_traceback = ""
    locked.save(
        update_fields=[
            "status",
            "status_message",
            "processed_at",
            "next_attempt_at",
            "last_error",
            "last_traceback",
            "result",
            "confirmed_trans_status",
            "order",
            "refund",
        ]
    )
    return ApplyOutcome(locked.pk, status, locked.result, locked.status_message)


def _operation_settle(delivery: NotificationDelivery, operation: OrderOperation, pass_: _Pass) -> ApplyOutcome:
    """
    A notification about a capture or void. While the operation's outcome is unknown, ``operation_sync``
    looks it up by its own merchant_order_no and applies its effect; the delivery is retried while the
    gateway does not know the outcome yet. An operation already settled leaves nothing to do: "ignored".
    """
    result = ApplyResult.UNCHANGED
    if operation.status == OperationStatus.UNKNOWN:
        result = operation_sync(operation=operation, client=_gateway_client(delivery.account), source=SOURCE)
        operation.refresh_from_db(fields=["status"])
        if operation.status == OperationStatus.UNKNOWN:
            error = f"unconfirmed: order.query does not know the {operation.kind} operation's outcome yet"
            return _record_retry(delivery, pass_, unmatched=False, error=error)
    if result is ApplyResult.APPLIED:
        status = ProcessingStatus.APPLIED
        message = f"the {operation.kind} operation {operation.status}, as order.query answered"
    else:
        status = ProcessingStatus.IGNORED
        message = f"about the order's {operation.kind} operation, already {operation.status}"
    with transaction.atomic():
        locked = _delivery_locked(delivery.pk)
        refused = pass_.refusal(locked)
        if refused is not None:
            return refused
        if pass_.keeps_record(locked, _DONE_STATUSES):
            return ApplyOutcome(locked.pk, locked.status, locked.result, f"replayed: {message}")
        locked.order_id = operation.order_id
        locked.result = result.value if status == ProcessingStatus.APPLIED else ""
        return _finish(locked, status, now=timezone.now(), message=message)


def _record_retry(
    delivery: NotificationDelivery, pass_: _Pass, *, unmatched: bool, error: str, trace: str = ""
) -> ApplyOutcome:
    """Schedule the next attempt, or park the delivery once its retries are spent. A replay only notes the error."""
    with transaction.atomic():
        locked = _delivery_locked(delivery.pk)
        refused = pass_.refusal(locked)
        if refused is not None:
            return refused
        return pass_.retry(locked, unmatched=unmatched, error=error, trace=trace)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, GatewayDeclined):
        return f"{type(exc).__name__}: [{exc.code}] {exc.message}"
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"[:2000]


def _traceback_text(exc: Exception) -> str:
    """The exception's formatted traceback, its last ``TRACEBACK_MAX_CHARS`` when longer (marked as cut)."""
    text = "".join(traceback.format_exception(exc))
    if len(text) <= TRACEBACK_MAX_CHARS:
        return text
    marker = f"[first {len(text) - TRACEBACK_MAX_CHARS} characters cut]\n"
    return marker + text[-TRACEBACK_MAX_CHARS:]
