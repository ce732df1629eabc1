"""
The notification receiver's settings, read at call time (settings.py reads them from the environment).

Every retry delay is capped below ``CELERY_MAX_TASK_DELAY_SECONDS``: a retry is a countdown task, and a
countdown longer than the Redis visibility timeout would run the task twice.
"""

from __future__ import annotations

from django.conf import settings


def confirm_notifications() -> bool:
    return settings.CODEPAY_CONFIRM_NOTIFICATIONS


def max_body_bytes() -> int:
    return settings.CODEPAY_NOTIFICATION_MAX_BYTES


def allowed_network_entries() -> list[str]:
    return list(settings.CODEPAY_NOTIFICATION_ALLOWED_NETWORKS)


def max_task_delay_seconds() -> float:
    """Strictly below the broker's visibility timeout margin."""
    return float(settings.CELERY_MAX_TASK_DELAY_SECONDS) - 1


def _capped(delays) -> tuple[float, ...]:
    ceiling = max_task_delay_seconds()
    return tuple(min(float(delay), ceiling) for delay in delays)


def unmatched_retry_delays() -> tuple[float, ...]:
    return _capped(settings.CODEPAY_NOTIFICATION_UNMATCHED_RETRY_DELAYS)


def failure_retry_delays() -> tuple[float, ...]:
    return _capped(settings.CODEPAY_NOTIFICATION_RETRY_DELAYS)


def sweep_grace_seconds() -> float:
    return float(settings.CODEPAY_NOTIFICATION_SWEEP_GRACE_SECONDS)


def publish_timeout_seconds() -> float:
    return float(settings.CODEPAY_NOTIFICATION_PUBLISH_TIMEOUT_SECONDS)


def sweep_lease_seconds() -> float:
    return float(settings.CODEPAY_NOTIFICATION_SWEEP_LEASE_SECONDS)
