"""
Notification lag read from the database at scrape time: how long a verified delivery waits between being
received and being applied. Two views of it, because they fail differently: the oldest delivery still
waiting (grows without bound when the worker is down) and the slowest one applied in the last five minutes
(shows a slow but moving queue).
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import DurationField, ExpressionWrapper, F, Max, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webhooks.models import SETTLED_STATUSES, NotificationDelivery, ProcessingStatus

RECENT = timedelta(minutes=5)
# An applied delivery was received at most this long before it was applied, for the query's index range.
RECEIVED_WINDOW = timedelta(hours=13)


class NotificationLagCollector(Collector):
    def collect(self):
        now = timezone.now()
        lag = GaugeMetricFamily(
            "codepay_notification_lag_seconds",
            "Seconds from receiving a verified notification to applying it: the oldest still waiting, and the "
            "slowest applied in the last five minutes (0 when there is none).",
            labels=["delivery"],
        )
        waiting = NotificationDelivery.objects.filter(
            Q(status__in=[ProcessingStatus.RECEIVED, ProcessingStatus.RETRYING])
            | Q(status=ProcessingStatus.UNMATCHED, next_attempt_at__isnull=False)
        ).aggregate(oldest=Min("received_at"))["oldest"]
        lag.add_metric(["oldest_waiting"], (now - waiting).total_seconds() if waiting else 0)
        slowest = NotificationDelivery.objects.filter(
            status__in=SETTLED_STATUSES, received_at__gte=now - RECEIVED_WINDOW, processed_at__gte=now - RECENT
        ).aggregate(lag=Max(ExpressionWrapper(F("processed_at") - F("received_at"), output_field=DurationField())))[
            "lag"
        ]
        lag.add_metric(["slowest_applied_5m"], slowest.total_seconds() if slowest else 0)
        yield lag
