"""
Gauges read from the database at scrape time: orders by status, the ``unknown`` queue, the reconcile
backlog. A handful of aggregate queries per scrape, each on an indexed column or a small set of rows, so
every scrape states what the database holds now, whichever process answers it.
"""

from __future__ import annotations

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from payments.models import Order, OrderOperation, OrderStatus, Refund
from payments.services.reconcile import reconciliation_candidates_count


class PaymentsCollector(Collector):
    def collect(self):
        now = timezone.now()

        by_status = GaugeMetricFamily("codepay_orders_by_status", "Orders by status.", labels=["status"])
        counts = dict(Order.objects.order_by().values_list("status").annotate(count=Count("id")))
        for status in OrderStatus.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status

        unknown_count = GaugeMetricFamily(
            "codepay_unknown_count",
            "Orders, refunds and operations whose outcome is unknown, by kind.",
            labels=["kind"],
        )
        unknown_age = GaugeMetricFamily(
            "codepay_unknown_oldest_age_seconds",
            "Age of the oldest row whose outcome is still unknown, by kind (0 when there is none).",
            labels=["kind"],
        )
        backlog = GaugeMetricFamily(
            "codepay_reconcile_backlog",
            "Open rows whose next check by the reconciler is due now or overdue and not being checked, by kind.",
            labels=["kind"],
        )
        for kind, model in (("order", Order), ("refund", Refund), ("operation", OrderOperation)):
            unknown = model.objects.filter(status="unknown").aggregate(count=Count("id"), oldest=Min("created_at"))
            unknown_count.add_metric([kind], unknown["count"])
            unknown_age.add_metric([kind], (now - unknown["oldest"]).total_seconds() if unknown["oldest"] else 0)
        for kind, count in reconciliation_candidates_count(now=now).items():
            backlog.add_metric([kind], count)
        yield unknown_count
        yield unknown_age
        yield backlog
