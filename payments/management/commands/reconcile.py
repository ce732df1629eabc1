"""``manage.py reconcile``: one reconciliation pass by hand, with a progress bar and a closing summary."""

import logging

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from codepay_service.since import parse_since
from payments.management.progress import progress
from payments.ratelimit import gateway_rate_limiter
from payments.services.reconcile import StatusChange, reconciliation_candidates_count, reconciliation_run

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Ask the gateway about open orders, refunds and operations of unknown outcome now and apply the answers, "
        "like the periodic task. "
        "Ends with one summary line; with --verbosity 2, first one line per changed row: "
        "merchant_order_no, old -> new status."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--all",
            action="store_true",
            help=(
                "Check every open order and refund once, not only those due (a row another worker is checking "
                "is left to it)."
            ),
        )
        parser.add_argument(
            "--since", help="Only rows created since then: a duration (30m, 2h, 7d) or an ISO date/date-time."
        )

    def handle(self, *args, **options):
        try:
            created_since = parse_since(options["since"]) if options["since"] else None
        except ValueError as exc:
            raise CommandError(f"--since: {exc}") from None

        self.verbosity = options["verbosity"]
        due_only = not options["all"]
        total = sum(
            reconciliation_candidates_count(now=timezone.now(), due_only=due_only, created_since=created_since).values()
        )
        with progress(command=self, total=total, unit="row", description="Reconciling", logger=logger) as bar:

            def show(change: StatusChange) -> None:
                suffix = "" if change.kind == "order" else f" ({change.kind})"
                bar.item(
                    f"{change.merchant_order_no} {change.from_status} → {change.to_status}{suffix}",
                    merchant_order_no=change.merchant_order_no,
                )

            report = reconciliation_run(
                throttle=gateway_rate_limiter(),
                due_only=due_only,
                created_since=created_since,
                on_change=show,
                on_checked=bar.advance,
            )
        self.stdout.write(
            f"Checked {report.orders_checked} orders, {report.refunds_checked} refunds and "
            f"{report.operations_checked} operations: "
            f"{len(report.changes)} changed, {report.errors} could not be checked."
        )
