"""
Notification services, one module per job (HOUSE_STYLE.md, "Webhooks": verify, store, acknowledge, then
apply asynchronously):

- ``receive``: verify and store a delivery, then say what to answer;
- ``publish``: hand the apply task to the broker without making the sender wait;
- ``apply``: confirm a delivery by query and apply it through the payments services, exactly once;
- ``sweep``: the periodic pass over deliveries whose task never ran or whose retry is due;
- ``replay``: an operator's replay of stored deliveries.

Imports flow one way: ``receive`` and ``replay`` use ``apply`` and ``publish``; nothing here imports
``webhooks.tasks`` (the apply task is sent by its registered name). The names below are the public surface.
"""

from .apply import ApplyOutcome, notification_apply, notification_replay_apply
from .publish import notification_apply_later
from .receive import (
    HEADERS_MAX_BYTES,
    REJECTED_BODY_MAX_BYTES,
    REJECTED_FULL_PER_SOURCE_PER_MINUTE,
    ReceiveResult,
    notification_receive,
)
from .replay import ReplayOutcome, notification_replay, notification_replay_candidates, notification_statuses_expand
from .sweep import notifications_apply_due, notifications_claim_due

__all__ = [
    "HEADERS_MAX_BYTES",
    "REJECTED_BODY_MAX_BYTES",
    "REJECTED_FULL_PER_SOURCE_PER_MINUTE",
    "ApplyOutcome",
    "ReceiveResult",
    "ReplayOutcome",
    "notification_apply",
    "notification_apply_later",
    "notification_receive",
    "notification_replay",
    "notification_replay_apply",
    "notification_replay_candidates",
    "notification_statuses_expand",
    "notifications_apply_due",
    "notifications_claim_due",
]
