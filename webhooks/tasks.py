"""
Celery tasks of the notification receiver: thin wrappers around webhooks.services.

Tasks import the services; the one service that sends ``apply_notification`` imports it when it first
sends it (``webhooks.services.publish``), so neither module needs the other to load first.

Both take ids (JSON arguments), are acknowledged late and are idempotent: running one twice, or at the
same time as the sweep, changes nothing the second time. Retries of a delivery are scheduled by the
service's own schedule (recorded in ``next_attempt_at``, so the sweep takes over if a countdown task is
lost). ``CodePayTask`` (codepay_service.tasks) adds late acknowledgement, Celery retries only while the database
is unreachable (where nothing could be recorded), and refuses any countdown not below
``CELERY_MAX_TASK_DELAY_SECONDS`` (the Redis visibility timeout margin); the schedules here stay below it.
"""

from __future__ import annotations

import logging

from celery import shared_task

from codepay_service.tasks import CodePayTask

from .models import NotificationDelivery
from .services import notification_apply, notification_apply_later, notifications_apply_due
from .services.publish import APPLY_MANY_TASK, APPLY_TASK

logger = logging.getLogger(__name__)


@shared_task(base=CodePayTask, name=APPLY_TASK, soft_time_limit=120, time_limit=150)
def apply_notification(delivery_id: int) -> str:
    """Apply one stored delivery; schedule its next attempt when it could not be applied yet."""
    return _apply(delivery_id)


@shared_task(base=CodePayTask, name=APPLY_MANY_TASK, soft_time_limit=240, time_limit=300)
def apply_notifications(delivery_ids: list[int]) -> list[str]:
    """
    Apply the deliveries a web process received together, one after another, each as ``apply_notification``.

    One message for a burst spares a publish per delivery on the receiving side. A delivery this task does
    not reach (time limit, lost worker) stays due, and the sweep applies it.
    """
    return [_apply(delivery_id) for delivery_id in delivery_ids]


def _apply(delivery_id: int) -> str:
    try:
        outcome = notification_apply(delivery_id=delivery_id)
    except NotificationDelivery.DoesNotExist:
        logger.warning("notification task for a delivery that does not exist", extra={"delivery_id": delivery_id})
        return "missing"
    if outcome.retry_in is not None:
        notification_apply_later(delivery_id=delivery_id, countdown=outcome.retry_in)
    return outcome.status


@shared_task(base=CodePayTask, name="webhooks.tasks.apply_due_notifications", soft_time_limit=240, time_limit=300)
def apply_due_notifications() -> int:
    """The periodic sweep: apply deliveries whose task was never queued or got lost, and due retries."""
    return len(notifications_apply_due())
