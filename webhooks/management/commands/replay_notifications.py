"""
Apply stored notification deliveries again, synchronously, through the same service as the apply task.

    python manage.py replay_notifications                          # retrying, dead, unmatched, conflict
    python manage.py replay_notifications --status dead --status unmatched --since 2d
    python manage.py replay_notifications --status failed --since 2024-05-01T00:00:00Z
    python manage.py replay_notifications --id 42 --id 43
    python manage.py replay_notifications --status rejected --since 1d     # after fixing a gateway key

Replaying is always safe: the service is idempotent and the state machine never moves backwards.
A delivery rejected for its key or signature is verified again from its stored body and applied once it passes.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from codepay_service.since import parse_since
from payments.management.progress import progress
from webhooks.services import notification_replay, notification_replay_candidates, notification_statuses_expand

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Replay stored CodePay notification deliveries (safe to repeat)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--status",
            action="append",
            default=[],
            help="Processing status to replay (repeatable): failed (= retrying and dead), dead, unmatched, "
            "conflict, rejected (verified again), or any other status. Default: retrying, dead, unmatched, conflict.",
        )
        parser.add_argument(
            "--since", help="Only deliveries received since: an ISO date or datetime, or a duration (90m, 2h, 3d)."
        )
        parser.add_argument(
            "--id", dest="ids", action="append", type=int, default=[], help="A delivery id (repeatable)."
        )

    def handle(self, *args, status, since, ids, **options):
        try:
            statuses = notification_statuses_expand(status)
            since_at = parse_since(since) if since else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        self.verbosity = options["verbosity"]
        selection: dict[str, Any] = {"delivery_ids": ids or None, "statuses": statuses, "since": since_at}
        total = notification_replay_candidates(**selection).count()
        if not total:
            self.stdout.write("No deliveries to replay.")
            return
        with progress(command=self, total=total, unit="delivery", description="Replaying", logger=logger) as tracker:

            def show(outcome) -> None:
                if outcome.changed:
                    change = f"{outcome.status_before} -> {outcome.status_after}"
                else:
                    change = f"{outcome.status_after} (unchanged)"
                tracker.item(
                    f"#{outcome.delivery_id} {outcome.merchant_order_no or '-'}: {change}"
                    + (f" [{outcome.result}]" if outcome.result else "")
                    + (f" {outcome.message}" if outcome.message else ""),
                    delivery_id=outcome.delivery_id,
                    merchant_order_no=outcome.merchant_order_no,
                )
                tracker.advance()

            outcomes = notification_replay(actor="command", **selection, on_replayed=show)
        changed = sum(1 for outcome in outcomes if outcome.changed)
        self.stdout.write(self.style.SUCCESS(f"Replayed {len(outcomes)} deliveries; {changed} changed status."))
