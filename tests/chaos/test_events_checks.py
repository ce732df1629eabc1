"""
The chaos run's event checks on their own, so a check that could never fail would show here: the receiver
over real HTTP (signed by the service's signing code, verified by the Python client's verifier), and the
comparison of outbox, stories and deliveries on hand-made rows.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from payments.events.signing import SIGNATURE_HEADER, signature_header
from tests.chaos.receiver import ANSWERED_500, DROPPED, EventReceiver, Received
from tests.chaos.verify import events_check

SECRET = "whsec_chaos_test"


@pytest.fixture
def receiver():
    receiver = EventReceiver(fail_rate=0.0, seed=1)
    receiver.secret = SECRET
    receiver.start()
    yield receiver
    receiver.stop()


def post(receiver: EventReceiver, event_id: str, *, secret: str = SECRET) -> int | str:
    body = json.dumps({"id": event_id}).encode()
    header = signature_header(secrets=[secret], timestamp=int(time.time()), body=body)
    try:
        return requests.post(receiver.url, data=body, headers={SIGNATURE_HEADER: header}, timeout=5).status_code
    except requests.ConnectionError:
        return "dropped"


def test_the_receiver_fails_the_first_attempt_at_the_first_two_events_then_accepts_their_retries(receiver):
    """evt_1: 500 then 200; evt_2: connection dropped then 200; only the accepted attempts are recorded."""
    answers = [post(receiver, "evt_1"), post(receiver, "evt_1"), post(receiver, "evt_2"), post(receiver, "evt_2")]

    assert answers == [500, 200, "dropped", 200]
    assert [item.event_id for item in receiver.accepted] == ["evt_1", "evt_2"]
    assert receiver.faults == {ANSWERED_500: 1, DROPPED: 1}
    assert receiver.signature_failures == []


def test_the_receiver_refuses_and_counts_a_delivery_signed_with_another_secret(receiver):
    """A wrong secret gets 400 and a signature failure, and is not recorded as accepted."""
    assert post(receiver, "evt_9", secret="whsec_other") == 400
    assert receiver.accepted == []
    assert receiver.signature_failures == ["evt_9: No signature matches the given secret(s)."]


def _event(event_id: int, event_type: str, order_no: str = "ORD1") -> dict:
    return {"id": event_id, "type": event_type, "body": f'{{"id":"evt_{event_id}"}}', "merchant_order_no": order_no}


def _received(event_id: int, body: str | None = None) -> Received:
    return Received(event_id=f"evt_{event_id}", body=(body or f'{{"id":"evt_{event_id}"}}').encode(), headers={})


STORY = [
    {"merchant_order_no": "ORD1", "kind": "status_changed", "from_status": "pending", "to_status": "authorized"},
    {"merchant_order_no": "ORD1", "kind": "status_changed", "from_status": "authorized", "to_status": "succeeded"},
    {"merchant_order_no": "ORD1", "kind": "refund_status_changed", "from_status": "pending", "to_status": "succeeded"},
]
OUTBOX = [_event(1, "order.authorized"), _event(2, "order.captured"), _event(3, "refund.succeeded")]


def test_every_event_delivered_in_order_with_a_duplicate_is_no_problem_and_the_duplicate_is_counted():
    """At-least-once: a second copy of evt_2 is counted as a duplicate, not a mismatch."""
    check = events_check(
        events=OUTBOX,
        story=STORY,
        received=[_received(1), _received(2), _received(2), _received(3)],
        signature_failures=[],
    )

    assert (check.recorded, check.delivered, check.received, check.duplicates, check.problems) == (3, 3, 4, 1, [])


@pytest.mark.parametrize(
    ("events", "received", "signature_failures", "problem"),
    [
        (OUTBOX, [_received(1), _received(2)], [], "evt_3: recorded, never delivered"),
        (OUTBOX, [_received(1), _received(3), _received(2)], [], "ORD1: events first delivered out of order"),
        (OUTBOX, [_received(1), _received(2, "{}"), _received(3)], [], "evt_2: received body differs"),
        (OUTBOX, [_received(1), _received(2), _received(3), _received(7)], [], "evt_7: received, not in the outbox"),
        (OUTBOX, [_received(1), _received(2), _received(3)], ["evt_4: bad"], "event endpoint refused a signature"),
        (
            [*OUTBOX, _event(4, "refund.succeeded")],
            [_received(1), _received(2), _received(3), _received(4)],
            [],
            "ORD1: its story implies events ['order.authorized', 'order.captured', 'refund.succeeded'], "
            "the outbox has ['order.authorized', 'order.captured', 'refund.succeeded', 'refund.succeeded']",
        ),
        (
            [_event(1, "order.authorized"), _event(2, "order.succeeded"), _event(3, "refund.succeeded")],
            [_received(1), _received(2), _received(3)],
            [],
            "ORD1: its story implies events ['order.authorized', 'order.captured', 'refund.succeeded']",
        ),
    ],
    ids=["missing", "out of order", "body differs", "unknown event", "bad signature", "doubled", "wrong type"],
)
def test_each_kind_of_event_violation_is_named_as_a_problem(events, received, signature_failures, problem):
    """Each violation yields exactly one problem that names it."""
    check = events_check(events=events, story=STORY, received=received, signature_failures=signature_failures)

    assert len(check.problems) == 1, check.problems
    assert check.problems[0].startswith(problem), check.problems
