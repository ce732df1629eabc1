"""
An operator's replay of stored deliveries: apply them again, or verify again those rejected for a key.

Nothing is deleted; a delivery a failure parked ("unmatched", "dead", "conflict") waits for an operator, who
replays it once the cause is fixed (``manage.py replay_notifications`` or the admin action). A replay is
always safe: it goes through the same decision step as the first apply (``notification_replay_apply``), never
moves a status backwards, and leaves a ``NotificationReplay`` audit row.

A delivery rejected for want of a usable key, or for a signature none of the keys verified
(``REVERIFIABLE``), kept its whole body (a genuine notification is about 1 KiB, under the 4 KiB a rejected
delivery keeps): a replay verifies it again with the account's keys as they are then, and applies it like a
new delivery once it passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..models import NotificationDelivery, NotificationReplay, ProcessingStatus, Verification
from ..verification import MalformedBody, Verdict, notification_parse
from .apply import ApplyOutcome, notification_apply, notification_replay_apply
from .receive import delivery_verdict

logger = logging.getLogger(__name__)

# Rejected for want of a usable key, or for a signature none of the keys verified: a replay verifies
# them again from their stored body with the account's keys as they are then.
REVERIFIABLE = frozenset({Verification.KEY_UNAVAILABLE, Verification.INVALID_SIGNATURE})


@dataclass(frozen=True)
class ReplayOutcome:
    delivery_id: int
    merchant_order_no: str
    status_before: str
    status_after: str
    result: str
    message: str

    @property
    def changed(self) -> bool:
        return self.status_before != self.status_after


# "failed" on the command line: every delivery an error kept from being applied.
STATUS_ALIASES = {"failed": (ProcessingStatus.RETRYING, ProcessingStatus.DEAD)}
DEFAULT_REPLAY_STATUSES = (
    ProcessingStatus.RETRYING,
    ProcessingStatus.DEAD,
    ProcessingStatus.UNMATCHED,
    ProcessingStatus.CONFLICT,
)


def notification_statuses_expand(names: Iterable[str]) -> list[str]:
    """Status names as given by an operator, with aliases expanded; raises ValueError for an unknown one."""
    statuses: list[str] = []
    for name in names:
        if name in STATUS_ALIASES:
            statuses.extend(STATUS_ALIASES[name])
        elif name in ProcessingStatus.values:
            statuses.append(name)
        else:
            choices = ", ".join([*STATUS_ALIASES, *ProcessingStatus.values])
            raise ValueError(f"unknown status '{name}'; use one of: {choices}")
    return list(dict.fromkeys(statuses))


def notification_replay_candidates(
    *,
    delivery_ids: Iterable[int] | None = None,
    statuses: Iterable[str] | None = None,
    since: datetime | None = None,
):
    """The deliveries ``notification_replay`` would replay for these arguments (a queryset)."""
    deliveries = NotificationDelivery.objects.all()
    statuses = list(statuses or [])
    if delivery_ids is not None:
        deliveries = deliveries.filter(pk__in=list(delivery_ids))
    else:
        deliveries = deliveries.filter(Q(verification=Verification.VALID) | Q(verification__in=REVERIFIABLE))
        statuses = statuses or list(DEFAULT_REPLAY_STATUSES)
    if statuses:
        deliveries = deliveries.filter(status__in=statuses)
    if since is not None:
        deliveries = deliveries.filter(received_at__gte=since)
    return deliveries


def notification_replay(
    *,
    actor: str,
    delivery_ids: Iterable[int] | None = None,
    statuses: Iterable[str] | None = None,
    since: datetime | None = None,
    on_replayed: Callable[[ReplayOutcome], None] | None = None,
) -> list[ReplayOutcome]:
    """
    Apply stored deliveries again, synchronously, through the same service; always safe.

    Selects by ids and/or processing status (with neither: retrying, dead, unmatched, conflict), received
    since ``since``. A delivery rejected for its key or signature (``REVERIFIABLE``; select them by id or
    with the status "rejected") is verified again from its stored body, and applied like a new delivery
    once it passes; any other delivery that never verified is reported (when named by id) and never applied.
    Each replay leaves a NotificationReplay audit row; ``on_replayed`` is called with each outcome.
    """
    deliveries = notification_replay_candidates(delivery_ids=delivery_ids, statuses=statuses, since=since)
    outcomes = []
    for delivery_id, verification, status_before, merchant_order_no in deliveries.order_by("id").values_list(
        "pk", "verification", "status", "merchant_order_no"
    ):
        if verification in REVERIFIABLE:
            outcome = _rejected_replay(delivery_id)
        else:
            outcome = notification_replay_apply(delivery_id=delivery_id)
        NotificationReplay.objects.create(
            delivery_id=delivery_id,
            actor=actor[:150],
            status_before=status_before,
            status_after=outcome.status,
            result=outcome.result,
            message=outcome.message[:255],
        )
        outcomes.append(
            ReplayOutcome(
                delivery_id=delivery_id,
                merchant_order_no=merchant_order_no,
                status_before=status_before,
                status_after=outcome.status,
                result=outcome.result,
                message=outcome.message,
            )
        )
        if on_replayed is not None:
            on_replayed(outcomes[-1])
        # The NotificationReplay row is the record; this line is for following a replay as it runs.
        logger.debug(
            "notification replayed",
            extra={
                "delivery_id": delivery_id,
                "actor": actor,
                "status_before": status_before,
                "status_after": outcome.status,
            },
        )
    return outcomes


def _rejected_replay(delivery_id: int) -> ApplyOutcome:
    """Verify a delivery rejected for its key or signature again; once it passes, apply it like a new one."""
    verdict = _reverify(delivery_id)
    if not verdict.valid:
        return ApplyOutcome(delivery_id, ProcessingStatus.REJECTED, message=f"still not verified: {verdict.detail}")
    return notification_apply(delivery_id=delivery_id)


def _reverify(delivery_id: int) -> Verdict:
    """
    The stored body verified with the account's keys as they are now. When it passes, the delivery
    records the new verdict and becomes "received", due at once (the sweep takes it if nothing else does).
    """
    with transaction.atomic():
        delivery = (
            NotificationDelivery.objects.select_for_update(of=("self",)).select_related("account").get(pk=delivery_id)
        )
        if delivery.verification not in REVERIFIABLE:  # verified again meanwhile
            return Verdict(delivery.verification, delivery.verification_detail, delivery.verified_with)
        if delivery.body_truncated:
            return Verdict(delivery.verification, "the stored body is truncated")
        try:
            parsed = notification_parse(bytes(delivery.raw_body), delivery.content_type)
        except MalformedBody as exc:
            return Verdict(Verification.MALFORMED, str(exc))
        verdict = delivery_verdict(delivery.account, parsed, "")
        if verdict.valid:
            delivery.verification = verdict.verification
            delivery.verified_with = verdict.verified_with
            delivery.verification_detail = f"{verdict.detail}, on replay"[:255]
            delivery.status = ProcessingStatus.RECEIVED
            delivery.status_message = ""
            delivery.next_attempt_at = timezone.now()
            delivery.save(
                update_fields=[
                    "verification",
                    "verified_with",
                    "verification_detail",
                    "status",
                    "status_message",
                    "next_attempt_at",
                ]
            )
    logger.info(
        "rejected notification verified again",
        extra={"delivery_id": delivery_id, "verification": verdict.verification},
    )
    return verdict
