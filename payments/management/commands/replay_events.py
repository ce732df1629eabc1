"""
Send outbound event deliveries again, now, through the same service as the admin's replay action.

    python manage.py replay_events                                  # every delivery given up (failed)
    python manage.py replay_events --status failed --since 3d --endpoint 4
    python manage.py replay_events --status pending                 # retries due later: send them now
    python manage.py replay_events --id 42 --id 43                  # these deliveries, whatever their status

Replaying is safe: receivers deduplicate on the event id (delivery is at least once anyway). Deliveries
are sent oldest event first.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from codepay_service.since import parse_since
from payments.events.models import DeliveryStatus
from payments.events.services import event_deliveries_for_replay, event_delivery_replay


class Command(BaseCommand):
    help = "Replay outbound event deliveries (safe to repeat)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--status",
            action="append",
            default=[],
            choices=[choice for choice, _ in DeliveryStatus.choices],
            help="Delivery status to replay (repeatable). Default: failed.",
        )
        parser.add_argument("--since", help="Only events since: an ISO date or datetime, or a duration (90m, 2h, 3d).")
        parser.add_argument(
            "--id", dest="ids", action="append", type=int, default=[], help="A delivery id (repeatable)."
        )
        parser.add_argument("--endpoint", type=int, help="Only deliveries to this endpoint id.")

    def handle(self, *args, status, since, ids, endpoint, **options):
        try:
            since_at = parse_since(since) if since else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        delivery_ids = event_deliveries_for_replay(
            statuses=status or [DeliveryStatus.FAILED], since=since_at, ids=ids or None, endpoint_id=endpoint
        )
        if not delivery_ids:
            self.stdout.write("No deliveries to replay.")
            return
        delivered = 0
        for delivery_id in delivery_ids:
            delivery = event_delivery_replay(delivery_id=delivery_id, actor="command")
            ok = not delivery.last_error
            delivered += ok
            self.stdout.write(
                f"#{delivery.pk} evt_{delivery.event_id} -> {delivery.endpoint_id}: "
                + ("delivered" if ok else f"failed ({delivery.last_error})")
            )
        style = self.style.SUCCESS if delivered == len(delivery_ids) else self.style.WARNING
        self.stdout.write(style(f"Replayed {len(delivery_ids)} deliveries; {delivered} delivered."))
