"""
Notification intake: verify, store, acknowledge, then apply (HOUSE_STYLE.md, "Webhooks").

Why store before acknowledging: CodePay stops re-posting once it reads ``success`` (docs/protocol.md,
"Notifications"). Whatever is acknowledged must already be committed, or a crash between
the answer and the write would lose the payment's news for good. So every delivery, valid or not, is a
committed row before the view answers, and storing depends on nothing but the database: the apply task
is handed after the commit to this process's publisher thread (``webhooks.publishing``), so the answer
never waits for the broker, and a delivery whose task was not queued (or got lost) is picked up by the
periodic sweep (``apply_due_notifications``) through ``next_attempt_at``. Nothing is deleted; failures are retried with
backoff and then parked ("unmatched", "dead") for an operator, who can replay them.

Why rejected deliveries keep at most ``REJECTED_BODY_MAX_BYTES`` (4 KiB) of their body: anyone can POST
to the notify_url, and a body that did not verify is evidence, not news. Its first 4 KiB show what it was;
a longer one is cut and flagged truncated, and its parsed payload is not kept (only the identifying fields). A genuine notification
is about 1 KiB, so one rejected for a key problem is still whole, and a replay verifies it again once an
operator has fixed the key (``notification_replay``). Valid deliveries keep their whole body.

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

Applying goes through the payments services only (``order_apply_gateway_state`` /
``refund_apply_gateway_state``), which check amount and currency against the order and never move a
status backwards. Here the order's row is locked around the service call and the delivery's own status,
so deliveries about one order are decided one at a time and a delivery is marked applied in the same
transaction as the change it made: exactly once, however many copies arrive or workers run.

A copy is recognised by its fingerprint (sha256 of the canonical sign string) within the account: once
one copy is settled with the status it announced (applied or stale as the notification itself said, or
as a query answered that very status), later copies are "duplicate" and change nothing. A copy settled
on a query that answered something else proves nothing about the announced status, so later copies ask
again.

The periodic sweep checks its time budget before each delivery and gives back the leases of claimed
deliveries it did not reach. Celery's ``SoftTimeLimitExceeded`` is never taken for a failure to retry:
it stops the task, and the interrupted delivery stays due for the next sweep.

Logs carry ids and statuses, never bodies (``attach`` and other fields are the merchant's).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from codepay_service.errors import ServiceError
from payments.gateway.client import CodePayClient
from payments.gateway.errors import GatewayDeclined, GatewayError
from payments.gateway.methods import OPEN_TRANS_STATUSES
from payments.gateway.results import OrderInfo, RefundInfo
from payments.models import MerchantAccount, OperationStatus, Order, OrderOperation, Refund
from payments.ratelimit import gateway_rate_limiter
from payments.services.accounts import gateway_client_for, merchant_account_effective, merchant_account_get
from payments.services.operations import operation_sync
from payments.services.orders import ApplyResult, order_apply_gateway_state, order_note_notified_amounts
from payments.services.refunds import refund_apply_gateway_state
from payments.state_machine import (
    order_can_move,
    order_status_from_gateway,
    refund_can_move,
    refund_status_from_gateway,
)

from . import conf
from .publishing import apply_task_pending_make_due, apply_task_submit
from .models import (
    PENDING_STATUSES,
    SETTLED_STATUSES,
    NotificationDelivery,
    NotificationReplay,
    ProcessingStatus,
    Verification,
)
from .verification import (
    MalformedBody,
    ParsedNotification,
    Verdict,
    gateway_keys_load,
    notification_fingerprint,
    notification_parse,
    notification_verify,
    source_allowed,
)

logger = logging.getLogger(__name__)

SOURCE = "notification"
SUCCESS_BODY = "success"
# Results that decide nothing (OPEN_TRANS_STATUSES) are applied from the notification itself; every other
# one only as a signed query answers it.
# What a rejected delivery keeps of its body (valid ones keep all of it).
REJECTED_BODY_MAX_BYTES = 4096
# Rejected for want of a usable key, or for a signature none of the keys verified: a replay verifies
# them again from their stored body with the account's keys as they are then.
REVERIFIABLE = frozenset({Verification.KEY_UNAVAILABLE, Verification.INVALID_SIGNATURE})
UNMATCHED_ERROR = "no order or refund with this merchant_order_no yet"
DUPLICATE_MESSAGE = "another copy of this notification was already applied"
# Headers never stored: credentials a proxy or a misconfigured sender could attach.
DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# What a delivery keeps of its headers: a sender controls them, and 90 KiB of them is no evidence.
HEADERS_MAX_BYTES = 4096
HEADER_VALUE_MAX_CHARS = 512
# Rejected deliveries from one source address stored in full per minute; past that a row still counts
# each one (received_at, source, verdict) without body or headers, so a flood costs rows of fixed size.
REJECTED_FULL_PER_SOURCE_PER_MINUTE = 20

# Processed for good: a replay that fails does not write an error onto them.
_DONE_STATUSES = frozenset({*SETTLED_STATUSES, ProcessingStatus.DUPLICATE, ProcessingStatus.IGNORED})
_HTTP_STATUS = {
    Verification.VALID: 200,
    Verification.TOO_LARGE: 413,
    Verification.SOURCE_NOT_ALLOWED: 403,
    Verification.KEY_UNAVAILABLE: 503,
}
_RESULT_STATUS = {
    ApplyResult.APPLIED: ProcessingStatus.APPLIED,
    ApplyResult.UNCHANGED: ProcessingStatus.APPLIED,
    ApplyResult.STALE: ProcessingStatus.STALE,
    ApplyResult.CONFLICT: ProcessingStatus.CONFLICT,
}


@dataclass(frozen=True)
class ReceiveResult:
    delivery_id: int
    verification: str
    http_status: int
    body: str


@dataclass(frozen=True)
class ApplyOutcome:
    delivery_id: int
    status: str
    result: str = ""
    message: str = ""
    retry_in: float | None = None


@dataclass(frozen=True)
class ReplayOutcome:
    delivery_id: int
    merchant_order_no: str
    status_before: str
    status_after: str
    result: str
    message: str

    @property
    def changed(self) -> bool:
        return self.status_before != self.status_after


class _ConfirmationMismatch(GatewayError):
    kind = "mismatch"


# --- Receive --------------------------------------------------------------------------------------------


def notification_receive(
    *,
    account_code: str,
    body: bytes,
    body_size: int,
    body_truncated: bool,
    content_type: str,
    headers: dict[str, str],
    source_address: str | None,
) -> ReceiveResult:
    """
    Verify and store one delivery, then say what to answer: 200 ``success`` only for a valid one.

    The row is committed before this returns; the apply task is queued after the commit, in the
    background, so a broker outage neither raises here nor delays the answer.
    """
    now = timezone.now()
    parsed: ParsedNotification | None = None
    malformed = ""
    if not body_truncated:
        try:
            parsed = notification_parse(body, content_type)
        except MalformedBody as exc:
            malformed = str(exc)
    try:
        account = merchant_account_get(code=account_code)
    except ServiceError:
        account = None

    verdict: Verdict
    if body_truncated:
        verdict = Verdict(Verification.TOO_LARGE, f"body of {body_size} bytes exceeds CODEPAY_NOTIFICATION_MAX_BYTES")
    elif not source_allowed(source_address, conf.allowed_network_entries()):
        verdict = Verdict(
            Verification.SOURCE_NOT_ALLOWED, f"{source_address} is outside CODEPAY_NOTIFICATION_ALLOWED_NETWORKS"
        )
    else:
        verdict = _verdict(account, parsed, malformed)

    fields = parsed.fields if parsed is not None else {}
    address = _ip_or_none(source_address)
    flooding = not verdict.valid and _rejected_recently(address, now=now) >= REJECTED_FULL_PER_SOURCE_PER_MINUTE
    kept_body_bytes = len(body) if verdict.valid else 0 if flooding else REJECTED_BODY_MAX_BYTES
    keep_whole_body = len(body) <= kept_body_bytes
    delivery = NotificationDelivery(
        account=account,
        account_code=account_code[:64],
        received_at=now,
        source_address=address,
        headers={} if flooding else _headers_kept(headers),
        content_type=content_type[:255],
        raw_body=body[:kept_body_bytes],
        body_size=body_size,
        body_truncated=body_truncated or not keep_whole_body,
        payload=fields if parsed is not None and keep_whole_body else None,
        verification=verdict.verification,
        verified_with=verdict.verified_with,
        verification_detail=verdict.detail[:255],
        fingerprint=notification_fingerprint(fields) if parsed is not None else "",
        merchant_order_no=_text(fields, "merchant_order_no", 64),
        trans_no=_text(fields, "trans_no", 64),
        trans_type=_text(fields, "trans_type", 8),
        trans_status=_text(fields, "trans_status", 8),
    )
    settled_copy = _settled_copy(delivery) if verdict.valid else None
    if settled_copy is not None:
        # The gateway re-posts until it reads "success": a copy of a message already settled changes
        # nothing, so it is recorded as such here and never reaches the worker.
        delivery.status = ProcessingStatus.DUPLICATE
        delivery.status_message = DUPLICATE_MESSAGE
        delivery.processed_at = now
        delivery.order_id, delivery.refund_id = settled_copy
    elif verdict.valid:
        delivery.status = ProcessingStatus.RECEIVED
        # The queued task should have run by then; if not, the sweep takes over.
        delivery.next_attempt_at = now + timedelta(seconds=conf.sweep_grace_seconds())
    else:
        delivery.status = ProcessingStatus.REJECTED
        delivery.status_message = f"not verified: {verdict.verification}"[:255]
        if flooding:
            delivery.status_message = (
                f"not verified: {verdict.verification}; over {REJECTED_FULL_PER_SOURCE_PER_MINUTE} rejected a minute "
                "from this source, body and headers not kept"
            )[:255]
    # One INSERT, committed on its own; the apply task is queued once it is (at once outside a transaction).
    delivery.save()
    if delivery.status == ProcessingStatus.RECEIVED:
        delivery_id = delivery.pk
        transaction.on_commit(lambda: _queue_after_receive(delivery_id), robust=True)

    log = logger.info if verdict.valid else logger.warning
    log(
        "notification received",
        extra={
            "delivery_id": delivery.pk,
            "account_code": account_code,
            "verification": verdict.verification,
            "merchant_order_no": delivery.merchant_order_no,
            "trans_status": delivery.trans_status,
        },
    )
    http_status = _HTTP_STATUS.get(verdict.verification, 400)
    return ReceiveResult(
        delivery_id=delivery.pk,
        verification=verdict.verification,
        http_status=http_status,
        body=SUCCESS_BODY if verdict.valid else f"rejected: {verdict.verification}",
    )


def _verdict(account, parsed: ParsedNotification | None, malformed: str) -> Verdict:
    if account is None:
        return Verdict(Verification.UNKNOWN_ACCOUNT, "no active merchant account with this code")
    if parsed is None:
        return Verdict(Verification.MALFORMED, malformed)
    try:
        # The default account as the CODEPAY_* settings describe it now (a key rotation takes effect on restart).
        configured = merchant_account_effective(account)
    except ServiceError as exc:
        return Verdict(Verification.KEY_UNAVAILABLE, getattr(exc, "detail", exc.message))
    keys = gateway_keys_load({"current": configured.gateway_public_key, "next": configured.next_gateway_public_key})
    for label in keys.unreadable:
        logger.error("gateway public key unreadable", extra={"account_code": account.code, "key": label})
    return notification_verify(parsed, keys=keys, merchant_no=configured.merchant_no, app_id=configured.app_id)


def _rejected_recently(address: str | None, *, now: datetime) -> int:
    return NotificationDelivery.objects.filter(
        source_address=address, status=ProcessingStatus.REJECTED, received_at__gte=now - timedelta(minutes=1)
    ).count()


def _headers_kept(headers: dict[str, str]) -> dict[str, str]:
    """The headers worth keeping, within HEADERS_MAX_BYTES; what is left out is counted under "(truncated)"."""
    kept: dict[str, str] = {}
    budget = HEADERS_MAX_BYTES
    dropped = 0
    for name, value in headers.items():
        if name.lower() in DROPPED_HEADERS:
            continue
        name, value = name[:HEADER_VALUE_MAX_CHARS], str(value)[:HEADER_VALUE_MAX_CHARS]
        cost = len(name.encode()) + len(value.encode())
        if cost > budget:
            dropped += 1
            continue
        kept[name] = value
        budget -= cost
    if dropped:
        kept["(truncated)"] = f"{dropped} more headers over {HEADERS_MAX_BYTES} bytes not kept"
    return kept


def _text(fields: dict, name: str, length: int) -> str:
    value = fields.get(name)
    return "" if value is None else str(value)[:length]


def _ip_or_none(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None


def _queue_after_receive(delivery_id: int) -> None:
    if not _apply_task_publish(delivery_id):
        # Due now: the next sweep applies it.
        apply_task_pending_make_due(delivery_id)


def _apply_task_publish(delivery_id: int, *, countdown: float = 0) -> bool:
    """
    Queue ``apply_notification`` without waiting for the broker (``webhooks.publishing``): True when it is
    handed to this process's publisher, which makes the delivery due for the sweep if the publish fails.
    """
    from .tasks import apply_notification

    if apply_notification.app.conf.task_always_eager:
        apply_notification.apply_async(args=[delivery_id], countdown=countdown or None)
        return True
    return apply_task_submit(delivery_id, countdown=countdown)


# --- Apply ----------------------------------------------------------------------------------------------


def notification_apply(*, delivery_id: int, replay: bool = False) -> ApplyOutcome:
    """
    Apply one stored, verified delivery through the payments services; idempotent.

    A delivery already processed is left alone unless ``replay``. On a missing order or refund, or a
    failure, it is scheduled again (``retry_in``, ``next_attempt_at``) and parked once its retries are
    spent; a replay never schedules, it only records what one more attempt found.
    """
    delivery = NotificationDelivery.objects.select_related("account").get(pk=delivery_id)
    if delivery.verification != Verification.VALID:
        return ApplyOutcome(delivery_id, delivery.status, message="not verified; never applied")
    if not replay and not _is_pending(delivery):
        return ApplyOutcome(delivery_id, delivery.status, delivery.result, "already processed")

    now = timezone.now()
    NotificationDelivery.objects.filter(pk=delivery_id).update(attempts=F("attempts") + 1, last_attempt_at=now)
    delivery.attempts += 1
    try:
        target = _target_find(delivery)
        if target is None:
            return _record_retry(delivery, unmatched=True, replay=replay, error=UNMATCHED_ERROR)
        if isinstance(target, OrderOperation):
            return _operation_settle(delivery, target, replay=replay)
        info, confirmed = (None, False) if _settled_copy_exists(delivery) else _gateway_state(delivery, target)
        return _apply_locked(delivery, target, info, confirmed=confirmed, replay=replay)
    except SoftTimeLimitExceeded:
        # The task's time is up, not a failure of this delivery: it stays due, and the task stops.
        raise
    except Exception as exc:  # every failure is retried, then parked as "dead"; nothing is lost
        if not isinstance(exc, (GatewayError, ServiceError)):
            logger.exception("notification apply failed unexpectedly", extra={"delivery_id": delivery_id})
        return _record_retry(delivery, unmatched=False, replay=replay, error=_error_text(exc))


def _is_pending(delivery: NotificationDelivery) -> bool:
    if delivery.status == ProcessingStatus.UNMATCHED:
        return delivery.next_attempt_at is not None
    return delivery.status in PENDING_STATUSES


def _target_find(delivery: NotificationDelivery) -> Order | Refund | OrderOperation | None:
    """What the delivery is about, by merchant_order_no within its account (trans_no when it has none)."""
    account_id = delivery.account_id
    if delivery.merchant_order_no:
        key = {"merchant_order_no": delivery.merchant_order_no}
    elif delivery.trans_no:
        key = {"trans_no": delivery.trans_no}
    else:
        return None
    refund = Refund.objects.filter(account_id=account_id, **key).first()
    if refund is not None:
        return refund
    order = Order.objects.filter(account_id=account_id, **key).first()
    if order is not None:
        return order
    # A capture or void carries its own merchant_order_no.
    return OrderOperation.objects.filter(order__account_id=account_id, **key).select_related("order").first()


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


def _settled_copy(delivery: NotificationDelivery) -> tuple[int | None, int | None] | None:
    """At intake: the (order_id, refund_id) of a settled copy of this delivery's message, or None."""
    # Any one copy will do: no ORDER BY, which would walk the primary key instead of the fingerprint index.
    return next(iter(_settled_copies(delivery).order_by().values_list("order_id", "refund_id")[:1]), None)


def _gateway_client(account: MerchantAccount) -> CodePayClient:
    """The account's client, taking its turn on the gateway rate limit every worker shares."""
    return gateway_client_for(account, throttle=gateway_rate_limiter())


def _query_method(target: Order | Refund) -> str:
    return "order.refund.query" if isinstance(target, Refund) else "order.query"


def _gateway_state(delivery: NotificationDelivery, target: Order | Refund) -> tuple[OrderInfo | RefundInfo, bool]:
    """What to apply: a signed query's answer for a final result, else the notification itself."""
    is_refund = isinstance(target, Refund)
    if not conf.confirm_notifications() or delivery.trans_status in OPEN_TRANS_STATUSES:
        return (RefundInfo if is_refund else OrderInfo).from_data(delivery.payload or {}), False
    client = _gateway_client(delivery.account)
    if is_refund:
        info = client.query_refund(merchant_order_no=target.merchant_order_no)
    else:
        info = client.query_order(merchant_order_no=target.merchant_order_no)
    if info.merchant_order_no and info.merchant_order_no != target.merchant_order_no:
        raise _ConfirmationMismatch(f"answered about {info.merchant_order_no}", method=_query_method(target))
    return info, True


def _notified_status_ahead(delivery: NotificationDelivery, target: Order | Refund) -> bool:
    """
    Could the status the notification announced still move the order (refund) forward, now that the
    query's answer is applied? Then the query has not caught up with the gateway's news yet.
    """
    if isinstance(target, Refund):
        current = Refund.objects.values_list("status", flat=True).get(pk=target.pk)
        notified = refund_status_from_gateway(delivery.trans_status)
        return notified is not None and refund_can_move(current, notified)
    current, trans_type = Order.objects.values_list("status", "trans_type").get(pk=target.pk)
    notified = order_status_from_gateway(delivery.trans_status, trans_type)
    return notified is not None and order_can_move(current, notified)


def _apply_locked(
    delivery: NotificationDelivery,
    target: Order | Refund,
    info: OrderInfo | RefundInfo | None,
    *,
    confirmed: bool,
    replay: bool,
) -> ApplyOutcome:
    is_refund = isinstance(target, Refund)
    order_id = target.order_id if is_refund else target.pk
    now = timezone.now()
    with transaction.atomic():
        # The order's row lock orders every delivery about this order (and its refunds) one after another.
        Order.objects.select_for_update().get(pk=order_id)
        locked = NotificationDelivery.objects.select_for_update().get(pk=delivery.pk)
        if not replay and not _is_pending(locked):
            return ApplyOutcome(locked.pk, locked.status, locked.result, "already processed")
        locked.order_id = order_id
        locked.refund_id = target.pk if is_refund else None
        if info is None or _settled_copy_exists(locked):
            if replay and locked.status in SETTLED_STATUSES:
                message = "replayed: another copy was settled first; unchanged"
                return ApplyOutcome(locked.pk, locked.status, locked.result, message)
            return _finish(locked, ProcessingStatus.DUPLICATE, now=now, message=DUPLICATE_MESSAGE)

        if is_refund:
            result = refund_apply_gateway_state(refund_id=target.pk, info=info, source=SOURCE)
        else:
            result = order_apply_gateway_state(order_id=order_id, info=info, source=SOURCE)
        status = _RESULT_STATUS[result]
        message = _result_message(delivery, info, result, confirmed=confirmed)
        notified, answered = delivery.trans_status, info.trans_status
        lagging = (
            confirmed
            and answered != notified
            and result is not ApplyResult.CONFLICT
            and _notified_status_ahead(delivery, target)
        )
        if lagging:
            # The query has not caught up with what the gateway notified: ask again later. Whatever the
            # answer changed stays applied; the delivery itself is not settled.
            if not (replay and locked.status in _DONE_STATUSES):
                locked.result, locked.confirmed_trans_status = result.value, answered
                locked.save(update_fields=["order", "refund", "result", "confirmed_trans_status"])
            method = _query_method(target)
            error = f"unconfirmed: {method} answered trans_status {answered}, the notification said {notified}"
            return _record_retry(locked, unmatched=False, replay=replay, error=error)
        if replay and locked.status in SETTLED_STATUSES and result is not ApplyResult.APPLIED:
            # Replaying a settled delivery keeps its record of what it did the first time.
            return ApplyOutcome(locked.pk, locked.status, result.value, f"replayed: {message}")
        if confirmed and not is_refund:
            notified_mismatch = order_note_notified_amounts(order_id=order_id, notified=OrderInfo.from_data(delivery.payload or {}), source=SOURCE)
            if notified_mismatch:
                status, message = ProcessingStatus.CONFLICT, f"{message}; but the notification said: {notified_mismatch}"
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
    locked.save(
        update_fields=[
            "status",
            "status_message",
            "processed_at",
            "next_attempt_at",
            "last_error",
            "result",
            "confirmed_trans_status",
            "order",
            "refund",
        ]
    )
    return ApplyOutcome(locked.pk, status, locked.result, locked.status_message)


def _operation_settle(delivery: NotificationDelivery, operation: OrderOperation, *, replay: bool) -> ApplyOutcome:
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
            return _record_retry(delivery, unmatched=False, replay=replay, error=error)
    if result is ApplyResult.APPLIED:
        status = ProcessingStatus.APPLIED
        message = f"the {operation.kind} operation {operation.status}, as order.query answered"
    else:
        status = ProcessingStatus.IGNORED
        message = f"about the order's {operation.kind} operation, already {operation.status}"
    with transaction.atomic():
        locked = NotificationDelivery.objects.select_for_update().get(pk=delivery.pk)
        if not replay and not _is_pending(locked):
            return ApplyOutcome(locked.pk, locked.status, locked.result, "already processed")
        if replay and locked.status in _DONE_STATUSES:
            return ApplyOutcome(locked.pk, locked.status, locked.result, f"replayed: {message}")
        locked.order_id = operation.order_id
        locked.result = result.value if status == ProcessingStatus.APPLIED else ""
        return _finish(locked, status, now=timezone.now(), message=message)


def _record_retry(delivery: NotificationDelivery, *, unmatched: bool, replay: bool, error: str) -> ApplyOutcome:
    """Schedule the next attempt, or park the delivery once its retries are spent. A replay only notes the error."""
    now = timezone.now()
    with transaction.atomic():
        locked = NotificationDelivery.objects.select_for_update().get(pk=delivery.pk)
        if not replay and not _is_pending(locked):
            return ApplyOutcome(locked.pk, locked.status, locked.result, "already processed")
        if replay:
            # A replay is one extra look: it leaves the status and the schedule as they were.
            if locked.status not in _DONE_STATUSES:
                locked.last_error = error
                locked.save(update_fields=["last_error"])
            return ApplyOutcome(locked.pk, locked.status, locked.result, f"replayed: {error}")
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
        locked.last_error = error
        locked.save(update_fields=["status", "next_attempt_at", "status_message", "last_error", "processed_at"])
    logger.warning(
        "notification not applied",
        extra={"delivery_id": locked.pk, "status": locked.status, "attempts": locked.attempts, "retry_in": retry_in},
    )
    return ApplyOutcome(locked.pk, locked.status, locked.result, error, retry_in)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, GatewayDeclined):
        return f"{type(exc).__name__}: [{exc.code}] {exc.message}"
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"[:2000]


def notification_apply_later(*, delivery_id: int, countdown: float) -> bool:
    """Queue the next attempt as a countdown task; when it is queued the sweep waits a grace period past it."""
    countdown = min(countdown, conf.max_task_delay_seconds())
    queued = _apply_task_publish(delivery_id, countdown=countdown)
    if queued:
        NotificationDelivery.objects.filter(
            pk=delivery_id, status__in=PENDING_STATUSES, next_attempt_at__isnull=False
        ).update(next_attempt_at=timezone.now() + timedelta(seconds=countdown + conf.sweep_grace_seconds()))
    return queued


# --- Sweep ----------------------------------------------------------------------------------------------


def notifications_claim_due(*, limit: int, now: datetime | None = None) -> list[int]:
    """Take up to ``limit`` due deliveries for this process: their next attempt moves a lease ahead."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            NotificationDelivery.objects.select_for_update(skip_locked=True)
            .filter(verification=Verification.VALID, status__in=PENDING_STATUSES, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .values_list("pk", flat=True)[:limit]
        )
        NotificationDelivery.objects.filter(pk__in=ids).update(next_attempt_at=_lease_until(now))
    return ids


def _lease_until(claimed_at: datetime) -> datetime:
    return claimed_at + timedelta(seconds=conf.sweep_lease_seconds())


def notifications_apply_due(*, batch_size: int = 20, time_budget_seconds: float = 25.0) -> list[ApplyOutcome]:
    """
    Apply every delivery that is due (its task was never queued, got lost, or its retry is due), batch by
    batch, until none is due or the time budget is spent; the budget is checked before each delivery (the
    beat runs the sweep every 30 s). Claimed deliveries it does not reach, or the one a soft time limit
    interrupts, are due again at once. Retries found here wait for a later sweep.
    """
    deadline = time.monotonic() + time_budget_seconds
    outcomes: list[ApplyOutcome] = []
    while time.monotonic() < deadline:
        now = timezone.now()
        claimed = deque(notifications_claim_due(limit=batch_size, now=now))
        if not claimed:
            break
        try:
            while claimed and time.monotonic() < deadline:
                outcomes.append(notification_apply(delivery_id=claimed[0]))
                claimed.popleft()
        finally:
            _leases_release(list(claimed), leased_until=_lease_until(now))
    return outcomes


def _leases_release(delivery_ids: list[int], *, leased_until: datetime) -> None:
    """Deliveries claimed and not applied are due now rather than when their lease runs out."""
    if delivery_ids:
        NotificationDelivery.objects.filter(pk__in=delivery_ids, next_attempt_at=leased_until).update(
            next_attempt_at=timezone.now()
        )


# --- Replay ---------------------------------------------------------------------------------------------

# "failed" on the command line: every delivery an error kept from being applied.
STATUS_ALIASES = {"failed": (ProcessingStatus.RETRYING, ProcessingStatus.DEAD)}
DEFAULT_REPLAY_STATUSES = (
    ProcessingStatus.RETRYING,
    ProcessingStatus.DEAD,
    ProcessingStatus.UNMATCHED,
    ProcessingStatus.CONFLICT,
)


def notification_statuses_expand(names: Iterable[str]) -> list[str]:
    """Status names as given by an operator, with aliases expanded; raises ValueError for an unknown one."""
    statuses: list[str] = []
    for name in names:
        if name in STATUS_ALIASES:
            statuses.extend(STATUS_ALIASES[name])
        elif name in ProcessingStatus.values:
            statuses.append(name)
        else:
            choices = ", ".join([*STATUS_ALIASES, *ProcessingStatus.values])
            raise ValueError(f"unknown status '{name}'; use one of: {choices}")
    return list(dict.fromkeys(statuses))


def notification_replay_candidates(
    *,
    delivery_ids: Iterable[int] | None = None,
    statuses: Iterable[str] | None = None,
    since: datetime | None = None,
):
    """The deliveries ``notification_replay`` would replay for these arguments (a queryset)."""
    deliveries = NotificationDelivery.objects.all()
    statuses = list(statuses or [])
    if delivery_ids is not None:
        deliveries = deliveries.filter(pk__in=list(delivery_ids))
    else:
        deliveries = deliveries.filter(Q(verification=Verification.VALID) | Q(verification__in=REVERIFIABLE))
        statuses = statuses or list(DEFAULT_REPLAY_STATUSES)
    if statuses:
        deliveries = deliveries.filter(status__in=statuses)
    if since is not None:
        deliveries = deliveries.filter(received_at__gte=since)
    return deliveries


def notification_replay(
    *,
    actor: str,
    delivery_ids: Iterable[int] | None = None,
    statuses: Iterable[str] | None = None,
    since: datetime | None = None,
    on_replayed: Callable[[ReplayOutcome], None] | None = None,
) -> list[ReplayOutcome]:
    """
    Apply stored deliveries again, synchronously, through the same service; always safe.

    Selects by ids and/or processing status (with neither: retrying, dead, unmatched, conflict), received
    since ``since``. A delivery rejected for its key or signature (``REVERIFIABLE``; select them by id or
    with the status "rejected") is verified again from its stored body, and applied like a new delivery
    once it passes; any other delivery that never verified is reported (when named by id) and never applied.
    Each replay leaves a NotificationReplay audit row; ``on_replayed`` is called with each outcome.
    """
    deliveries = notification_replay_candidates(delivery_ids=delivery_ids, statuses=statuses, since=since)
    outcomes = []
    for delivery_id, verification, status_before, merchant_order_no in deliveries.order_by("id").values_list(
        "pk", "verification", "status", "merchant_order_no"
    ):
        if verification in REVERIFIABLE:
            outcome = _rejected_replay(delivery_id)
        else:
            outcome = notification_apply(delivery_id=delivery_id, replay=True)
        NotificationReplay.objects.create(
            delivery_id=delivery_id,
            actor=actor[:150],
            status_before=status_before,
            status_after=outcome.status,
            result=outcome.result,
            message=outcome.message[:255],
        )
        outcomes.append(
            ReplayOutcome(
                delivery_id=delivery_id,
                merchant_order_no=merchant_order_no,
                status_before=status_before,
                status_after=outcome.status,
                result=outcome.result,
                message=outcome.message,
            )
        )
        if on_replayed is not None:
            on_replayed(outcomes[-1])
        # The NotificationReplay row is the record; this line is for following a replay as it runs.
        logger.debug(
            "notification replayed",
            extra={
                "delivery_id": delivery_id,
                "actor": actor,
                "status_before": status_before,
                "status_after": outcome.status,
            },
        )
    return outcomes


def _rejected_replay(delivery_id: int) -> ApplyOutcome:
    """Verify a delivery rejected for its key or signature again; once it passes, apply it like a new one."""
    verdict = _reverify(delivery_id)
    if not verdict.valid:
        return ApplyOutcome(delivery_id, ProcessingStatus.REJECTED, message=f"still not verified: {verdict.detail}")
    return notification_apply(delivery_id=delivery_id)


def _reverify(delivery_id: int) -> Verdict:
    """
    The stored body verified with the account's keys as they are now. When it passes, the delivery
    records the new verdict and becomes "received", due at once (the sweep takes it if nothing else does).
    """
    with transaction.atomic():
        delivery = (
            NotificationDelivery.objects.select_for_update(of=("self",)).select_related("account").get(pk=delivery_id)
        )
        if delivery.verification not in REVERIFIABLE:  # verified again meanwhile
            return Verdict(delivery.verification, delivery.verification_detail, delivery.verified_with)
        if delivery.body_truncated:
            return Verdict(delivery.verification, "the stored body is truncated")
        try:
            parsed = notification_parse(bytes(delivery.raw_body), delivery.content_type)
        except MalformedBody as exc:
            return Verdict(Verification.MALFORMED, str(exc))
        verdict = _verdict(delivery.account, parsed, "")
        if verdict.valid:
            delivery.verification = verdict.verification
            delivery.verified_with = verdict.verified_with
            delivery.verification_detail = f"{verdict.detail}, on replay"[:255]
            delivery.status = ProcessingStatus.RECEIVED
            delivery.status_message = ""
            delivery.next_attempt_at = timezone.now()
            delivery.save(
                update_fields=[
                    "verification",
                    "verified_with",
                    "verification_detail",
                    "status",
                    "status_message",
                    "next_attempt_at",
                ]
            )
    logger.info(
        "rejected notification verified again",
        extra={"delivery_id": delivery_id, "verification": verdict.verification},
    )
    return verdict
