"""
Batch closes: on demand (API, command, admin) and by schedule, each recorded with the gateway's answer.

Decisions:

- **Once per business day.** A schedule's business day is the local date (in the store's time zone) of
  the scheduled occurrence a close is for. The row for (schedule, business day) is inserted before
  anything is sent, and the database's unique constraint decides between racing beat or worker
  processes: the insert that loses is the proof that the close is already done or under way. Time zones
  come from zoneinfo, and local wall-clock time is compared, so a close set at a time that a
  daylight-saving change skips fires right after the jump and a time that happens twice fires the first
  time only.
- **Catching up.** Each beat run looks at the latest scheduled occurrence (today's once its local time
  has passed, else that of the latest earlier weekday of the schedule) and closes it if nobody has yet,
  as long as it is at most ``CATCH_UP_WINDOW`` old. So a 23:59 close whose beat run comes a minute late,
  after local midnight, still fires, for the day before; a close missed for longer (beat down for
  hours) is dropped rather than made at an hour the store does not expect.
- **A schedule starts after it is saved.** An occurrence before the schedule's last save
  (``updated_at``: created, re-enabled, its time or days changed) never fires, so saving a 09:00 schedule
  at 15:00, or re-enabling one, does not close the batch mid-afternoon; the next occurrence does.
- **Retries.** A close that fails or whose outcome is unknown is tried again with back-off
  (``RETRY_DELAYS``) up to ``MAX_ATTEMPTS`` times by the retry sweep; after that it stays ``failed``
  with its attempts for an operator (the admin can retry by hand). Closing again is harmless at the
  gateway: it closes the then-open batch, which is empty if the earlier close went through. Retry
  times live in the row (``next_attempt_at``), not in broker countdowns, so they survive restarts.
- **In flight.** An attempt moves ``next_attempt_at`` forward by ``ATTEMPT_LEASE`` before calling the
  gateway, so the sweep does not pick up a close that another process is sending.
- **Which method.** Where the terminals are known (a close naming ``terminal_sn_list``, a schedule listing
  its terminals), each is closed with the published ``batch.close`` (one terminal per call). Only a close of
  "every terminal of the store" uses the inferred terminal-list close with an empty list, since the
  published method needs a terminal (docs/protocol.md, "Batch close"). ``batch.close`` answers no count or
  total, so those come from the open-batch summary read just before (best effort: left empty if that read
  fails; the close goes ahead). A retry closes every listed terminal again, which is harmless.
- **Stores.** A store-bound API key closes only its store's terminals: those its store's orders were paid
  on. Any other terminal is refused before anything is sent.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.utils import timezone

from codepay_service.errors import Misconfigured, ValidationFailed
from codepay_service.instruments import BATCH_CLOSE_FAILURES
from payments.gateway.errors import GatewayError, GatewayOutcomeUnknown
from payments.gateway.results import BatchSummary
from payments.models import ApiKey, BatchClose, BatchCloseSchedule, BatchCloseStatus, MerchantAccount, Order
from payments.services.accounts import gateway_client_for
from payments.services.gateway_errors import failure_reason, gateway_errors_as_service_errors

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# The wait after failed attempt n (1-based) before attempt n + 1.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=30))
ATTEMPT_LEASE = timedelta(minutes=6)
# How late a scheduled close may still be made (see "Catching up"); longer than any beat outage to ride out,
# shorter than the time to the next occurrence, so a store is not closed at an hour it does not expect.
CATCH_UP_WINDOW = timedelta(hours=6)
RETRYABLE_STATUSES = (BatchCloseStatus.PENDING, BatchCloseStatus.FAILED, BatchCloseStatus.UNKNOWN)


def batch_open_summary(
    *, account: MerchantAccount, store_no: str = "", terminal_sn_list: list[str] | None = None
) -> BatchSummary:
    with gateway_errors_as_service_errors("open batch query"):
        return gateway_client_for(account).get_open_batch(store_no=store_no, terminal_sn_list=terminal_sn_list)


def batch_close(
    *,
    account: MerchantAccount,
    trigger: str,
    store_no: str = "",
    terminal_sn_list: list[str] | None = None,
    api_key: ApiKey | None = None,
    schedule: BatchCloseSchedule | None = None,
    business_date: date | None = None,
) -> BatchClose:
    """Record a batch close and perform it; the record keeps the gateway's answer whatever it was."""
    if api_key is not None and api_key.store_no and terminal_sn_list:
        _check_store_terminals(account=account, store_no=api_key.store_no, terminal_sn_list=terminal_sn_list)
    batch = BatchClose.objects.create(
        account=account,
        trigger=trigger,
        store_no=store_no,
        terminal_sn_list=terminal_sn_list or [],
        api_key=api_key,
        schedule=schedule,
        business_date=business_date,
    )
    return batch_close_attempt(batch=batch)


def _check_store_terminals(*, account: MerchantAccount, store_no: str, terminal_sn_list: list[str]) -> None:
    """Refuse terminals no order of ``store_no`` was paid on: a store-bound key closes its own store only."""
    known = set(
        Order.objects.filter(account=account, store_no=store_no, terminal_sn__in=terminal_sn_list).values_list(
            "terminal_sn", flat=True
        )
    )
    foreign = [sn for sn in terminal_sn_list if sn not in known]
    if foreign:
        raise ValidationFailed(
            details={
                "terminal_sn_list": [
                    f"Not a terminal of store {store_no}: {', '.join(foreign)}. This API key closes its own "
                    "store's terminals only."
                ]
            }
        )


def batch_close_retry_delay(*, attempts: int) -> timedelta | None:
    """The wait before the next automatic attempt after ``attempts`` failed ones; None: no more."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]


def batch_close_attempt(*, batch: BatchClose) -> BatchClose:
    """
    Send (or resend) a recorded batch close and record the answer. Closing an already closed batch is
    harmless at the gateway. A failure schedules the next automatic attempt while attempts remain.
    """
    with transaction.atomic():
        batch = BatchClose.objects.select_for_update().select_related("account").get(pk=batch.pk)
        if batch.status == BatchCloseStatus.SUCCEEDED:
            return batch
        batch.attempts += 1
        batch.next_attempt_at = timezone.now() + ATTEMPT_LEASE
        batch.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
    try:
        summary = _close(batch)
    except (GatewayError, Misconfigured) as exc:
        batch.status = BatchCloseStatus.UNKNOWN if isinstance(exc, GatewayOutcomeUnknown) else BatchCloseStatus.FAILED
        batch.gateway_code, batch.gateway_message = failure_reason(exc)
        batch.response = getattr(exc, "data", None) or None
    else:
        batch.status, batch.gateway_code, batch.gateway_message = BatchCloseStatus.SUCCEEDED, "0", "success"
        batch.count, batch.total_amount, batch.response = summary.count, summary.total_amount, summary.data
    if batch.status == BatchCloseStatus.SUCCEEDED:
        batch.next_attempt_at = None
    else:
        delay = batch_close_retry_delay(attempts=batch.attempts)
        batch.next_attempt_at = None if delay is None else timezone.now() + delay
        BATCH_CLOSE_FAILURES.labels(status=batch.status).inc()
        logger.warning(
            "batch close failed",
            extra={
                "batch_close_id": batch.pk,
                "store_no": batch.store_no,
                "attempts": batch.attempts,
                "gateway_code": batch.gateway_code,
                "retry": delay is not None,
            },
        )
    batch.save()
    return batch


def _close(batch: BatchClose) -> BatchSummary:
    """Close the batch the way ``BATCH_CLOSE_PER_TERMINAL`` / ``BATCH_CLOSE_FALLBACK`` say (see "Which method")."""
    client = gateway_client_for(batch.account)
    if not batch.terminal_sn_list:
        return client.close_batch_for_terminals(store_no=batch.store_no)
    try:
        summary = client.get_open_batch(store_no=batch.store_no, terminal_sn_list=batch.terminal_sn_list)
    except GatewayError as exc:
        logger.warning(
            "open batch summary before close failed", extra={"batch_close_id": batch.pk, "error": exc.message}
        )
        summary = None
    for terminal_sn in batch.terminal_sn_list:
        client.close_batch(terminal_sn=terminal_sn)
    data = {"closed_terminal_sns": list(batch.terminal_sn_list), "open_batch_before": summary.data if summary else None}
    return BatchSummary(
        count=summary.count if summary else None,
        total_amount=summary.total_amount if summary else None,
        data=data,
        psn=summary.psn if summary else "",
    )


def batch_closes_claim_due(*, now: datetime | None = None, limit: int = 20) -> list[int]:
    """Lock the closes whose next automatic attempt is due, lease them, and answer their ids."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            BatchClose.objects.select_for_update(skip_locked=True)
            .filter(status__in=RETRYABLE_STATUSES, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            BatchClose.objects.filter(pk__in=ids).update(next_attempt_at=now + ATTEMPT_LEASE)
    return ids


# --- Schedules ----------------------------------------------------------------------------------------


def batch_schedule_business_date(*, schedule: BatchCloseSchedule, now: datetime) -> date | None:
    """
    The local business date of the close due at ``now``: that of the schedule's latest occurrence, unless
    that is more than ``CATCH_UP_WINDOW`` old or older than the schedule's last save (then None).
    """
    zone = ZoneInfo(str(schedule.time_zone))
    # Naive local wall-clock times throughout: a time skipped by daylight saving is passed as soon as the
    # clock jumps, and a time repeated is passed the first time. (The window is then an hour off on the
    # two days a year the clocks change; it only needs to be roughly right.)
    local_now = _wall_clock(now, zone)
    occurrence = _latest_occurrence(schedule, local_now)
    if occurrence is None or local_now - occurrence > CATCH_UP_WINDOW:
        return None
    if schedule.updated_at is not None and occurrence < _wall_clock(schedule.updated_at, zone):
        return None  # saved (created, re-enabled, moved) since: its first close is the next occurrence
    return occurrence.date()


def _wall_clock(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _latest_occurrence(schedule: BatchCloseSchedule, local_now: datetime) -> datetime | None:
    """The schedule's latest local date and time at or before ``local_now``, on one of its weekdays."""
    # Today and the seven days before: that reaches every weekday once, and today's a week ago too.
    for days_back in range(8):
        day = local_now.date() - timedelta(days=days_back)
        occurrence = datetime.combine(day, schedule.local_time)
        if day.isoweekday() in schedule.weekdays and occurrence <= local_now:
            return occurrence
    return None


def batch_schedules_open_due(*, now: datetime | None = None) -> list[BatchClose]:
    """
    Record the close of every enabled schedule that is due (its latest occurrence, caught up within
    ``CATCH_UP_WINDOW``) and not yet recorded, and answer the new records (pending; the caller sends
    them). Safe in any number of processes: each (schedule, business day) is inserted once; the other
    inserts fail on the unique constraint and are skipped.
    """
    now = now or timezone.now()
    schedules = list(BatchCloseSchedule.objects.filter(enabled=True, account__is_active=True).select_related("account"))
    due = [
        (schedule, business_date)
        for schedule in schedules
        if (business_date := batch_schedule_business_date(schedule=schedule, now=now))
    ]
    if not due:
        return []
    done = set(
        BatchClose.objects.filter(
            schedule_id__in=[schedule.pk for schedule, _ in due],
            business_date__in={business_date for _, business_date in due},
        ).values_list("schedule_id", "business_date")
    )
    created = []
    for schedule, business_date in due:
        if (schedule.pk, business_date) in done:
            continue
        try:
            with transaction.atomic():
                batch = BatchClose.objects.create(
                    account=schedule.account,
                    schedule=schedule,
                    business_date=business_date,
                    trigger=BatchClose.Trigger.SCHEDULE,
                    store_no=schedule.store_no,
                    terminal_sn_list=list(schedule.terminal_sn_list or []),
                    # If the task that sends it is lost, the retry sweep sends it after the lease.
                    next_attempt_at=now + ATTEMPT_LEASE,
                )
        except IntegrityError:
            continue  # another process recorded this business day's close first
        logger.info(
            "batch close scheduled",
            extra={"batch_close_id": batch.pk, "schedule_id": schedule.pk, "business_date": business_date.isoformat()},
        )
        created.append(batch)
    return created
