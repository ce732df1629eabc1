"""
Celery tasks: thin wrappers that take ids and call one service (HOUSE_STYLE.md, convention 8).

Every task here is safe to run twice: a message is acknowledged only after the task ran (``acks_late``)
and is redelivered if the worker dies, and the periodic ones run in several processes at once. The
services make that safe (row claims, unique constraints, a state machine that ignores repeats).

Every task uses ``codepay_service.tasks.CodePayTask`` (late acknowledgement, database retries, bounded
delays). The periodic ones are declared with the app (``payments.apps.PaymentsConfig.periodic_tasks``).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from codepay_service.tasks import CodePayTask
from payments.models import BatchClose
from payments.ratelimit import gateway_rate_limiter
from payments.services.batches import batch_close_attempt, batch_closes_claim_due, batch_schedules_open_due
from payments.services.idempotency import idempotency_purge_expired
from payments.services.reconcile import reconciliation_run_parallel

logger = logging.getLogger(__name__)

# A reconcile pass stops claiming rows after this long, so passes started every 10 s rarely overlap and
# never hold every worker slot; whatever is left is due again for the next pass.
RECONCILE_PASS_SECONDS = 8


# --- Reconciliation -----------------------------------------------------------------------------------


@shared_task(base=CodePayTask, soft_time_limit=45, time_limit=60)
def reconcile_due() -> dict:
    """One reconciliation pass over the due orders, refunds and operations, paced by the shared gateway limiter."""
    report = reconciliation_run_parallel(
        threads=settings.CODEPAY_RECONCILE_THREADS, throttle=gateway_rate_limiter(), max_seconds=RECONCILE_PASS_SECONDS
    )
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
