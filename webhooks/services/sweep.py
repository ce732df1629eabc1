"""
The periodic sweep: apply every delivery that is due, whatever became of its task.

A delivery's apply task is a convenience (``webhooks.services.publish``): one that was never queued, got
lost, or whose retry is due has its ``next_attempt_at`` in the past, and the beat runs this sweep every
30 s. A sweeping process claims a batch by moving each claimed delivery's next attempt a lease ahead
(``SKIP LOCKED``, so two sweeps never take the same delivery).

The sweep checks its time budget before each delivery and gives back the leases of claimed deliveries it
did not reach. Celery's ``SoftTimeLimitExceeded`` is never taken for a failure to retry: it stops the
task, and the interrupted delivery stays due for the next sweep.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from .. import conf
from ..models import PENDING_STATUSES, NotificationDelivery, Verification
from .apply import ApplyOutcome, notification_apply


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


def notifications_apply_due(
    *, batch_size: int = 20, time_budget_seconds: float = 25.0, clock: Callable[[], float] = time.monotonic
) -> list[ApplyOutcome]:
    """
    Apply every delivery that is due (its task was never queued, got lost, or its retry is due), batch by
    batch, until none is due or the time budget is spent; the budget is checked before each delivery (the
    beat runs the sweep every 30 s). Claimed deliveries it does not reach, or the one a soft time limit
    interrupts, are due again at once. Retries found here wait for a later sweep. ``clock`` measures the
    budget (seconds, monotonic).
    """
    deadline = clock() + time_budget_seconds
    outcomes: list[ApplyOutcome] = []
    while clock() < deadline:
        now = timezone.now()
        claimed = deque(notifications_claim_due(limit=batch_size, now=now))
        if not claimed:
            break
        try:
            while claimed and clock() < deadline:
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
