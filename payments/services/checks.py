"""
When to ask the gateway next about an open order or refund.

Checks back off: seconds at first, when a terminal payment usually completes, then minutes, so a
forgotten order costs a few queries an hour rather than a query a second. Every open row always has a
next check time, so nothing can stay ``pending`` unseen.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

CHECK_DELAYS_SECONDS = (5, 10, 20, 40, 60, 120, 300, 600, 900, 1800)


def next_check_delay(attempts: int) -> timedelta:
    """The wait before check number ``attempts + 1``; the last delay repeats."""
    return timedelta(seconds=CHECK_DELAYS_SECONDS[min(attempts, len(CHECK_DELAYS_SECONDS) - 1)])


def next_check_at(attempts: int, *, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + next_check_delay(attempts)
