"""
The Celery base task every app's tasks use, and the delay check it applies.

Why every delay is bounded: with the Redis broker, a message not acknowledged within the visibility
timeout (3600 s) is handed to another worker, and a countdown or ETA longer than that timeout makes the
message be delivered again while it waits, so the task would run twice. ``CodePayTask.apply_async``
refuses any countdown or ETA of ``CELERY_MAX_TASK_DELAY_SECONDS`` or more, and refuses to run at all if
that maximum is not below the visibility timeout. Long waits (batch close retries, order checks) are
kept in database rows and picked up by periodic sweeps instead.
"""

from __future__ import annotations

from datetime import datetime

from celery.contrib.django.task import DjangoTask
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError
from django.utils import timezone


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
    """Base of every task: late acknowledgement, bounded retries on database hiccups, bounded delays."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (OperationalError, InterfaceError)
    max_retries = 5
    retry_backoff = 5
    retry_backoff_max = 300
    retry_jitter = True
    soft_time_limit = 240
    time_limit = 300

    def apply_async(
        self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None, shadow=None, **options
    ):
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
