"""
Celery tasks: thin wrappers that take ids and call one service (HOUSE_STYLE.md, convention 8).

Every task here is safe to run twice: a message is acknowledged only after the task ran (``acks_late``)
and is redelivered if the worker dies, and the periodic ones run in several processes at once. The
services make that safe (row claims, unique constraints, a state machine that ignores repeats).

Why every delay is bounded: with the Redis broker, a message not acknowledged within the visibility
timeout (3600 s) is handed to another worker, and a countdown or ETA longer than that timeout makes the
message be delivered again while it waits, so the task would run twice. ``CodePayTask.apply_async``
refuses any countdown or ETA of ``CELERY_MAX_TASK_DELAY_SECONDS`` or more, and refuses to run at all if
that maximum is not below the visibility timeout. Long waits (batch close retries, order checks) are
kept in database rows and picked up by periodic sweeps instead.

The beat schedule lives in the database (django-celery-beat). ``PERIODIC_TASKS`` is its definition;
the data migration ``0003_periodic_tasks`` and ``manage.py setup_schedules`` both install it with
``periodic_tasks_install``, idempotently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from celery import shared_task
from celery.contrib.django.task import DjangoTask
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from payments.models import BatchClose
from payments.ratelimit import gateway_rate_limiter
from payments.services.batches import batch_close_attempt, batch_closes_claim_due, batch_schedules_open_due
from payments.services.idempotency import idempotency_purge_expired
from payments.services.reconcile import reconciliation_run

logger = logging.getLogger(__name__)

# A reconcile pass stops claiming rows after this long, so passes started every 10 s rarely overlap and
# never hold every worker slot; whatever is left is due again for the next pass.
RECONCILE_PASS_SECONDS = 8


def task_delay_check(seconds: float) -> None:
    """Refuse a countdown or ETA that could outlive the broker's visibility timeout (see the module doc)."""
    limit = settings.CELERY_MAX_TASK_DELAY_SECONDS
    visibility = (settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get("visibility_timeout")
    if visibility is not None and limit >= visibility:
        raise ImproperlyConfigured(
            f"CELERY_MAX_TASK_DELAY_SECONDS ({limit}) must be below the broker visibility timeout ({visibility})."
        )
    if seconds >= limit:
        raise ValueError(f"A task delay of {seconds:.0f}s is not below CELERY_MAX_TASK_DELAY_SECONDS ({limit}s).")


class CodePayTask(DjangoTask):
    """Base of every task here: late acknowledgement, bounded retries on database hiccups, bounded delays."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (OperationalError, InterfaceError)
    max_retries = 5
    retry_backoff = 5
    retry_backoff_max = 300
    retry_jitter = True
    soft_time_limit = 240
    time_limit = 300

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None, shadow=None, **options):
        delay = 0.0
        if options.get("countdown"):
            delay = float(options["countdown"])
        eta = options.get("eta")
        if eta is not None:
            if isinstance(eta, str):
                eta = datetime.fromisoformat(eta)
            delay = max(delay, (eta - timezone.now()).total_seconds())
        task_delay_check(delay)
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow, **options)


# --- Reconciliation -----------------------------------------------------------------------------------


@shared_task(base=CodePayTask, soft_time_limit=45, time_limit=60)
def reconcile_due() -> dict:
    """One reconciliation pass over the due orders, refunds and operations, paced by the shared gateway limiter."""
    report = reconciliation_run(throttle=gateway_rate_limiter(), max_seconds=RECONCILE_PASS_SECONDS)
    if report.changes or report.errors:
        logger.info("reconcile pass", extra=report.as_dict())
    return report.as_dict()


# --- Batch closes -------------------------------------------------------------------------------------


@shared_task(base=CodePayTask, soft_time_limit=45, time_limit=60)
def run_due_batch_schedules() -> int:
    """Record the close of each due schedule (once per business day, a late one caught up) and send each one."""
    created = batch_schedules_open_due()
    for batch in created:
        close_batch.delay_on_commit(batch.pk)
    return len(created)


@shared_task(base=CodePayTask, soft_time_limit=120, time_limit=150)
def close_batch(batch_close_id: int) -> str:
    """Send a recorded scheduled close once; its retries belong to ``retry_due_batch_closes``."""
    batch = BatchClose.objects.filter(pk=batch_close_id).first()
    if batch is None or batch.attempts > 0:
        return "skipped"  # gone, or already sent (a redelivered message)
    return batch_close_attempt(batch=batch).status


@shared_task(base=CodePayTask, soft_time_limit=240, time_limit=300)
def retry_due_batch_closes() -> int:
    """Try again the failed (or never sent) batch closes whose next attempt is due."""
    ids = batch_closes_claim_due()
    for batch_close_id in ids:
        try:
            batch_close_attempt(batch=BatchClose(pk=batch_close_id))
        except DatabaseError:
            logger.exception("batch close retry failed", extra={"batch_close_id": batch_close_id})
    return len(ids)


# --- Housekeeping -------------------------------------------------------------------------------------


@shared_task(base=CodePayTask)
def purge_expired_idempotency_records() -> int:
    """Delete the stored answers to idempotent requests whose key has expired."""
    return idempotency_purge_expired()


# --- The beat schedule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodicTaskSpec:
    name: str
    task: str
    every_seconds: int
    # A run still queued after this long is dropped: the next one is on its way.
    expire_seconds: int
    description: str


PERIODIC_TASKS = (
    PeriodicTaskSpec(
        "codepay: reconcile due orders and refunds",
        "payments.tasks.reconcile_due",
        10,
        10,
        "Ask the gateway about every open order and refund whose next check is due.",
    ),
    PeriodicTaskSpec(
        "codepay: run due batch close schedules",
        "payments.tasks.run_due_batch_schedules",
        60,
        60,
        "Close each store's terminal batches once per business day at its local time.",
    ),
    PeriodicTaskSpec(
        "codepay: retry failed batch closes",
        "payments.tasks.retry_due_batch_closes",
        60,
        60,
        "Send again the batch closes that failed, with back-off and a bounded number of attempts.",
    ),
    PeriodicTaskSpec(
        "codepay: purge expired idempotency records",
        "payments.tasks.purge_expired_idempotency_records",
        3600,
        600,
        "Delete stored Idempotency-Key answers past their expiry.",
    ),
    PeriodicTaskSpec(
        "codepay: apply due notifications",
        "webhooks.tasks.apply_due_notifications",
        30,
        30,
        "Apply stored gateway notifications that are due (retries of earlier failures included).",
    ),
    PeriodicTaskSpec(
        "codepay: send due outbound events",
        "payments.events.tasks.send_due_event_deliveries",
        15,
        15,
        "Send store systems the events that are due: retries with back-off, and any whose queued send was lost.",
    ),
)


def periodic_tasks_install(*, interval_model, periodic_task_model, periodic_tasks_model) -> list[tuple[str, bool]]:
    """
    Create or update the periodic tasks of ``PERIODIC_TASKS``; answers (name, created) pairs. Takes the
    model classes so the data migration can pass its historical models. An operator's ``enabled`` choice
    on an existing task is kept.
    """
    results = []
    for spec in PERIODIC_TASKS:
        interval = (
            interval_model.objects.filter(every=spec.every_seconds, period="seconds").order_by("pk").first()
            or interval_model.objects.create(every=spec.every_seconds, period="seconds")
        )
        _, created = periodic_task_model.objects.update_or_create(
            name=spec.name,
            defaults={
                "task": spec.task,
                "interval": interval,
                "crontab": None,
                "solar": None,
                "clocked": None,
                "one_off": False,
                "expire_seconds": spec.expire_seconds,
                "expires": None,
                "description": spec.description,
            },
            create_defaults={
                "task": spec.task,
                "interval": interval,
                "expire_seconds": spec.expire_seconds,
                "description": spec.description,
                "enabled": True,
            },
        )
        results.append((spec.name, created))
    # django-celery-beat's scheduler reloads its schedule when this timestamp moves.
    periodic_tasks_model.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
    return results

