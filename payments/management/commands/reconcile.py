"""``manage.py reconcile``: one reconciliation pass by hand, printing every status it changed."""

import re
from datetime import datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from payments.ratelimit import gateway_rate_limiter
from payments.services.reconcile import StatusChange, reconciliation_run

_DURATION = re.compile(r"(?P<amount>\d+)(?P<unit>[smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str) -> datetime:
    """A duration back from now ("30m", "2h", "7d") or an ISO date or date-time (local time zone if naive)."""
    match = _DURATION.fullmatch(value.strip())
    if match:
        return timezone.now() - timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since takes a duration like 30m, 2h, 7d, or an ISO date or date-time; not '{value}'.")
        moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


class Command(BaseCommand):
    help = (
        "Ask the gateway about open orders, refunds and operations of unknown outcome now and apply the answers, "
        "like the periodic task. "
        "Prints one line per changed row: merchant_order_no, old -> new status."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--all",
            action="store_true",
            help="Check every open order and refund once, not only those due (a row another worker is checking is left to it).",
        )
        parser.add_argument("--since", help="Only rows created since then: a duration (30m, 2h, 7d) or an ISO date/date-time.")

    def handle(self, *args, **options):
        created_since = parse_since(options["since"]) if options["since"] else None

        def show(change: StatusChange) -> None:
            suffix = "" if change.kind == "order" else f" ({change.kind})"
            self.stdout.write(f"{change.merchant_order_no} {change.from_status} → {change.to_status}{suffix}")

        report = reconciliation_run(
            throttle=gateway_rate_limiter(), due_only=not options["all"], created_since=created_since, on_change=show
        )
        self.stdout.write(
            f"Checked {report.orders_checked} orders, {report.refunds_checked} refunds and "
            f"{report.operations_checked} operations: "
            f"{len(report.changes)} changed, {report.errors} could not be checked."
        )
