"""Replaying stored deliveries (command and service): re-applies through the same service, always safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from codepay_service.since import parse_since
from payments.gateway import signing
from payments.models import Order, OrderEvent, OrderStatus
from tests.factories import OrderFactory
from tests.webhooks.conftest import notification_fields
from webhooks.models import NotificationDelivery, NotificationReplay, ProcessingStatus
from webhooks.services import notification_apply, notification_replay


def _replay(*args: str, verbosity: int = 2) -> list[str]:
    out = StringIO()
    call_command("replay_notifications", *args, stdout=out, verbosity=verbosity)
    return out.getvalue().splitlines()


def _status_changes(order: Order) -> int:
    return OrderEvent.objects.filter(order=order, kind="status_changed").count()


def test_replay_command_applies_a_conflict_once_the_order_is_corrected(gateway, notify_account):
    """
    A delivery parked as "conflict" (amount 12.00 against an order of 10.00) is applied by
    `replay_notifications --status conflict` once an operator has corrected the order; replaying it again
    by id changes nothing. Each replay prints the change and leaves an audit row.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="RPL-1", amount=Decimal("10.00"))
    gateway.notify(notification_fields("RPL-1", amount="12.00"))
    [delivery] = NotificationDelivery.objects.all()
    assert notification_apply(delivery_id=delivery.pk).status == ProcessingStatus.CONFLICT
    Order.objects.filter(pk=order.pk).update(amount=Decimal("12.00"))

    first = _replay("--status", "conflict")
    second = _replay("--id", str(delivery.pk))

    assert first == [
        f"#{delivery.pk} RPL-1: conflict -> applied [applied] applied: trans_status 2 from the notification",
        "Replayed 1 deliveries; 1 changed status.",
    ]
    assert second == [
        f"#{delivery.pk} RPL-1: applied (unchanged) [unchanged] replayed: unchanged: trans_status 2 from the "
        "notification",
        "Replayed 1 deliveries; 0 changed status.",
    ]
    order.refresh_from_db()
    assert (order.status, _status_changes(order)) == (OrderStatus.SUCCEEDED, 1)
    assert list(NotificationReplay.objects.values_list("actor", "status_before", "status_after")) == [
        ("command", "conflict", "applied"),
        ("command", "applied", "applied"),
    ]


def test_replaying_every_kind_of_delivery_changes_nothing_twice(gateway, notify_account):
    """
    Replaying an applied delivery, its duplicate, a stale one and a rejected one through the service leaves
    each status as it was and the order with its single status change.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="RPL-2")
    gateway.notify(notification_fields("RPL-2"))
    gateway.notify(notification_fields("RPL-2"))
    gateway.notify(notification_fields("RPL-2", trans_status="0"))
    gateway.post('{"merchant_order_no": "RPL-2", "trans_status": "2", "sign": "AAAA"}')
    ids = list(NotificationDelivery.objects.order_by("id").values_list("pk", flat=True))
    for delivery_id in ids:
        notification_apply(delivery_id=delivery_id)
    before = list(NotificationDelivery.objects.order_by("id").values_list("status", flat=True))

    outcomes = notification_replay(actor="test", delivery_ids=ids)

    assert before == ["applied", "duplicate", "stale", "rejected"]
    assert [(o.status_before, o.status_after) for o in outcomes] == [(status, status) for status in before]
    assert outcomes[3].message == "still not verified: the signature verifies with no gateway key of the account"
    assert list(NotificationDelivery.objects.order_by("id").values_list("status", flat=True)) == before
    assert _status_changes(order) == 1


def test_replay_verifies_again_deliveries_rejected_for_their_key_once_it_is_fixed(gateway, notify_account):
    """
    Two copies of a genuine notification rejected while the account's gateway key was unreadable (503
    key_unavailable) and then wrong (400 invalid_signature) are kept whole. Once an operator has restored
    the key, `replay_notifications --status rejected` verifies each again from its stored body and applies
    it like a new delivery: the first is applied, the second is its duplicate, the order succeeded once.
    A forged delivery stays rejected.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="KEY-1")
    correct_key = notify_account.gateway_public_key
    notify_account.gateway_public_key = "not-a-key"
    notify_account.save()
    unreadable = gateway.notify(notification_fields("KEY-1"))
    notify_account.gateway_public_key = signing.public_key_b64der(signing.generate_private_key().public_key())
    notify_account.save()
    wrong = gateway.notify(notification_fields("KEY-1"))
    gateway.post('{"merchant_order_no": "KEY-1", "trans_status": "2", "sign": "AAAA"}')
    first, second, forged = NotificationDelivery.objects.order_by("id")
    notify_account.gateway_public_key = correct_key
    notify_account.save()

    lines = _replay("--status", "rejected")

    assert [(unreadable.status_code, unreadable.text), (wrong.status_code, wrong.text)] == [
        (503, "rejected: key_unavailable"),
        (400, "rejected: invalid_signature"),
    ]
    assert lines == [
        f"#{first.pk} KEY-1: rejected -> applied [applied] applied: trans_status 2 from the notification",
        f"#{second.pk} KEY-1: rejected -> duplicate another copy of this notification was already applied",
        f"#{forged.pk} KEY-1: rejected (unchanged) still not verified: the signature verifies with no gateway "
        "key of the account",
        "Replayed 3 deliveries; 2 changed status.",
    ]
    assert list(
        NotificationDelivery.objects.order_by("id").values_list("verification", "verified_with", "verification_detail")
    ) == [
        ("valid", "current", "verified with the current gateway key, on replay"),
        ("valid", "current", "verified with the current gateway key, on replay"),
        ("invalid_signature", "", "the signature verifies with no gateway key of the account"),
    ]
    order.refresh_from_db()
    assert (order.status, _status_changes(order)) == (OrderStatus.SUCCEEDED, 1)
    assert list(NotificationReplay.objects.order_by("id").values_list("status_before", "status_after")) == [
        ("rejected", "applied"),
        ("rejected", "duplicate"),
        ("rejected", "rejected"),
    ]


def test_replay_applies_a_parked_unmatched_delivery_once_its_order_exists(gateway, notify_account):
    """A notification parked as "unmatched" is applied by a default replay after its order has been stored."""
    gateway.notify(notification_fields("RPL-3"))
    [delivery] = NotificationDelivery.objects.all()
    for _ in range(3):
        notification_apply(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at) == (ProcessingStatus.UNMATCHED, None)
    still_missing = _replay()
    order = OrderFactory(account=notify_account, merchant_order_no="RPL-3")

    found = _replay("--status", "unmatched", "--since", "1h")

    assert still_missing[0] == (
        f"#{delivery.pk} RPL-3: unmatched (unchanged) replayed: no order or refund with this merchant_order_no yet"
    )
    assert (
        found[0]
        == f"#{delivery.pk} RPL-3: unmatched -> applied [applied] applied: trans_status 2 from the notification"
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED


def test_replay_command_prints_only_its_summary_at_the_default_verbosity(gateway, notify_account):
    """Without -v 2 the per-delivery lines go to the DEBUG log only; stdout has the closing summary."""
    gateway.notify(notification_fields("RPL-4"))
    [delivery] = NotificationDelivery.objects.all()
    for _ in range(3):
        notification_apply(delivery_id=delivery.pk)

    assert _replay("--status", "unmatched", verbosity=1) == ["Replayed 1 deliveries; 0 changed status."]
    assert NotificationReplay.objects.filter(delivery=delivery).count() == 1


def test_replay_selects_by_since(gateway, notify_account):
    """
    --since keeps the deliveries received since that moment: with one received three hours ago and one
    just now, `--since 1h` replays only the recent one and leaves the old one without a replay record;
    a future date selects none.
    """
    gateway.notify(notification_fields("SINCE-OLD"))
    gateway.notify(notification_fields("SINCE-NEW"))
    old, new = NotificationDelivery.objects.order_by("id")
    NotificationDelivery.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(hours=3))
    assert (old.status, new.status) == (ProcessingStatus.RECEIVED, ProcessingStatus.RECEIVED)

    lines = _replay("--status", "received", "--since", "1h")

    [replay] = NotificationReplay.objects.all()
    changed = int(replay.status_after != replay.status_before)
    assert [line.split(" ", 1)[0] for line in lines] == [f"#{new.pk}", "Replayed"]
    assert lines[-1] == f"Replayed 1 deliveries; {changed} changed status."
    assert replay.delivery_id == new.pk
    assert _replay("--status", "received", "--since", "2999-01-01") == ["No deliveries to replay."]


def test_replay_refuses_an_unknown_status_or_since():
    """An unknown --status or an unreadable --since is a command error naming the problem."""
    with pytest.raises(CommandError, match="unknown status 'lost'"):
        _replay("--status", "lost")
    with pytest.raises(CommandError, match="'yesterday' is neither"):
        _replay("--since", "yesterday")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", datetime(2024, 5, 2, 10, 30, tzinfo=UTC)),
        ("2h", datetime(2024, 5, 2, 10, 0, tzinfo=UTC)),
        ("1w2d", datetime(2024, 4, 23, 12, 0, tzinfo=UTC)),
        ("P1DT2H", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, 0, 0, tzinfo=UTC)),
        ("2024-05-01T08:00:00+02:00", datetime(2024, 5, 1, 6, 0, tzinfo=UTC)),
    ],
)
def test_since_accepts_iso_dates_and_durations(text, expected):
    """--since reads a duration back from now (90m, 2h, 1w2d, ISO P1DT2H) or an ISO date or datetime."""
    now = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)

    assert parse_since(text, now=now) == expected
