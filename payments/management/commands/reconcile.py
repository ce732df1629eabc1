"""``manage.py reconcile``: one reconciliation pass by hand, printing every status it changed."""

from django.core.management.base import BaseCommand, CommandError

from payments.management.since import parse_since
from payments.ratelimit import gateway_rate_limiter
from payments.services.reconcile import StatusChange, reconciliation_run


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
        try:
            created_since = parse_since(options["since"]) if options["since"] else None
        except ValueError as exc:
            raise CommandError(f"--since: {exc}") from None

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
