"""
The checks of a chaos run: every driven order and refund against the sandbox's truth, read in bulk.

What is ours is read straight from the run's database (the rows the API answers from); the truth is
``GET /sandbox/orders`` (every transaction with its follow-ups and notification attempts) and
``GET /sandbox/calls`` (every request the gateway received). ``compare`` names each mismatch; an order
with none has converged. ``leftovers`` counts what must be empty once the run has drained.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
import requests

from payments.gateway.methods import Method, TransStatus, TransType

# Requests that create something at the gateway under their own merchant_order_no: never sent twice.
CREATE_METHODS = frozenset(
    m.value
    for m in (
        Method.CLOUD_PAY_ORDER,
        Method.CHECKOUT,
        Method.MERCHANT_CHECKOUT,
        Method.REFUND_SUBMIT,
        Method.REFUND_PAYMENT,
        Method.CAPTURE,
        Method.CANCEL_PAYMENT,
    )
)
ZERO = Decimal(0)


@dataclass
class Snapshot:
    """One bulk read of both sides."""

    truth: dict[str, dict]
    calls: list[dict]
    orders: dict[str, dict]
    refunds: dict[str, dict]
    refunds_by_order: dict[str, list[dict]]
    operation_numbers: set[str]
    deliveries_by_trans_no: Counter
    delivery_statuses: Counter
    leftovers: dict[str, int] = field(default_factory=dict)


def read(*, database_url: str, sandbox_url: str) -> Snapshot:
    truth = {
        view["merchant_order_no"]: view
        for view in requests.get(f"{sandbox_url}/sandbox/orders", timeout=60).json()["orders"]
    }
    calls = requests.get(f"{sandbox_url}/sandbox/calls", timeout=60).json()["calls"]
    with psycopg.connect(database_url, autocommit=True) as db:
        orders = {
            row["merchant_order_no"]: row
            for row in _rows(
                db,
                """
            SELECT merchant_order_no, status, trans_type, channel, trans_no, amount, tip_amount, cashback_amount,
                   authorized_amount, captured_amount, paid_amount, refunded_amount
            FROM payments_order""",
            )
        }
        refund_rows = _rows(
            db,
            """
            SELECT r.merchant_order_no, r.status, r.amount, o.merchant_order_no AS order_no
            FROM payments_refund r JOIN payments_order o ON o.id = r.order_id""",
        )
        operation_numbers = {
            row["merchant_order_no"]
            for row in _rows(db, "SELECT merchant_order_no FROM payments_orderoperation WHERE merchant_order_no <> ''")
        }
        deliveries_by_trans_no = Counter(
            {
                row["trans_no"]: row["n"]
                for row in _rows(
                    db,
                    """
            SELECT trans_no, count(*) AS n FROM webhooks_notificationdelivery WHERE verification = 'valid'
            GROUP BY trans_no""",
                )
            }
        )
        delivery_statuses = Counter(
            {
                row["status"]: row["n"]
                for row in _rows(db, "SELECT status, count(*) AS n FROM webhooks_notificationdelivery GROUP BY status")
            }
        )
        leftovers = _rows(
            db,
            """
            SELECT
              (SELECT count(*) FROM payments_order WHERE status IN ('pending', 'processing', 'unknown')) AS orders_open,
              (SELECT count(*) FROM payments_refund WHERE status IN ('pending', 'unknown')) AS refunds_open,
              (SELECT count(*) FROM payments_orderoperation WHERE status = 'unknown') AS operations_unknown,
              (SELECT count(*) FROM payments_order WHERE check_leased_until > now())
              + (SELECT count(*) FROM payments_refund WHERE check_leased_until > now())
              + (SELECT count(*) FROM payments_orderoperation WHERE check_leased_until > now()) AS rows_leased,
              (SELECT count(*) FROM webhooks_notificationdelivery
                 WHERE status IN ('received', 'retrying') OR (status = 'unmatched' AND next_attempt_at IS NOT NULL))
                AS notifications_pending,
              (SELECT count(*) FROM payments_eventdelivery WHERE status <> 'succeeded') AS event_deliveries_pending""",
        )[0]
    refunds = {row["merchant_order_no"]: row for row in refund_rows}
    refunds_by_order: dict[str, list[dict]] = defaultdict(list)
    for row in refund_rows:
        refunds_by_order[row["order_no"]].append(row)
    return Snapshot(
        truth=truth,
        calls=calls,
        orders=orders,
        refunds=refunds,
        refunds_by_order=refunds_by_order,
        operation_numbers=operation_numbers,
        deliveries_by_trans_no=deliveries_by_trans_no,
        delivery_statuses=delivery_statuses,
        leftovers=dict(leftovers),
    )


def _rows(db, sql: str) -> list[dict]:
    cursor = db.execute(sql)
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _sum_follow_ups(snapshot: Snapshot, view: dict, trans_type: TransType) -> Decimal:
    total = ZERO
    for number in view["follow_ups"]:
        follow_up = snapshot.truth.get(number)
        if (
            follow_up
            and follow_up["trans_type"] == trans_type.value
            and follow_up["trans_status"] == TransStatus.SUCCESS.value
        ):
            total += Decimal(follow_up["trans_amount"])
    return total


def compare(snapshot: Snapshot, merchant_order_no: str) -> list[str]:
    """Every way our order (and its refunds) differs from the gateway's truth; empty when they agree."""
    ours = snapshot.orders.get(merchant_order_no)
    view = snapshot.truth.get(merchant_order_no)
    if ours is None:
        return ["the gateway has an order we do not"] if view is not None else []
    if view is None:
        return [] if ours["status"] == "failed" else [f"ours {ours['status']}, unknown to the gateway"]
    problems = []
    captured = _sum_follow_ups(snapshot, view, TransType.PRE_AUTH_COMPLETION)
    refunded = _sum_follow_ups(snapshot, view, TransType.REFUND)
    expected = {
        TransStatus.SUCCESS.value: {"succeeded" if ours["trans_type"] != "auth" or captured else "authorized"},
        # Closed unpaid: by the customer or time (failed, expired), or by our own cancel (cancelled).
        TransStatus.CLOSED.value: {"failed", "expired"}
        | ({"cancelled"} if view["close_reason"] in ("revoked", "closed_by_merchant") else set()),
        TransStatus.CANCELLED.value: {"cancelled"},
    }.get(view["trans_status"], set())
    if ours["status"] not in expected:
        problems.append(f"status: ours {ours['status']}, gateway trans_status {view['trans_status']}")
    checks = [
        ("amount", ours["amount"], Decimal(view["order_amount"])),
        ("tip_amount", ours["tip_amount"], Decimal(view["tip_amount"])),
        ("cashback_amount", ours["cashback_amount"], Decimal(view["cashback_amount"])),
        ("refunded_amount", ours["refunded_amount"], refunded),
        ("captured_amount", ours["captured_amount"], captured),
    ]
    if view["trans_status"] == TransStatus.SUCCESS.value:
        paid = captured if ours["trans_type"] == "auth" else Decimal(view["paid_amount"])
        checks.append(("paid_amount", ours["paid_amount"], paid))
        if ours["trans_type"] == "auth":
            checks.append(("authorized_amount", ours["authorized_amount"], Decimal(view["trans_amount"])))
    for name, mine, theirs in checks:
        if mine != theirs:
            problems.append(f"{name}: ours {mine}, gateway {theirs}")
    if refunded > Decimal(view["paid_amount"]) or ours["refunded_amount"] > ours["paid_amount"]:
        problems.append("refunded beyond the paid amount")
    if ours["captured_amount"] > ours["authorized_amount"]:
        problems.append("captured beyond the authorized amount")
    for refund in snapshot.refunds_by_order.get(merchant_order_no, []):
        problems += [f"refund {refund['merchant_order_no']}: {p}" for p in _compare_refund(snapshot, refund)]
    for number in view["follow_ups"]:
        follow_up = snapshot.truth[number]
        known = snapshot.refunds if follow_up["trans_type"] == TransType.REFUND.value else snapshot.operation_numbers
        if number not in known:
            problems.append(f"the gateway has a follow-up {number} (trans_type {follow_up['trans_type']}) we do not")
    return problems


def _compare_refund(snapshot: Snapshot, refund: dict) -> list[str]:
    view = snapshot.truth.get(refund["merchant_order_no"])
    if view is None:
        return [] if refund["status"] == "failed" else [f"ours {refund['status']}, unknown to the gateway"]
    expected = {
        TransStatus.SUCCESS.value: "succeeded",
        TransStatus.CLOSED.value: "failed",
        TransStatus.CANCELLED.value: "failed",
    }.get(view["trans_status"])
    problems = []
    if refund["status"] != expected:
        problems.append(f"status: ours {refund['status']}, gateway trans_status {view['trans_status']}")
    if refund["amount"] != Decimal(view["trans_amount"]):
        problems.append(f"amount: ours {refund['amount']}, gateway {view['trans_amount']}")
    return problems


def notifications_missing(snapshot: Snapshot) -> list[str]:
    """Transactions for which the gateway delivered (HTTP 200 "success") more notifications than we stored."""
    missing = []
    for view in snapshot.truth.values():
        delivered = sum(1 for attempt in view["notification_attempts"] if attempt["outcome"] == "delivered")
        if delivered > snapshot.deliveries_by_trans_no.get(view["trans_no"], 0):
            missing.append(
                f"{view['merchant_order_no']}: {delivered} delivered, "
                f"{snapshot.deliveries_by_trans_no.get(view['trans_no'], 0)} stored"
            )
    return missing


def creates_sent_twice(snapshot: Snapshot) -> list[str]:
    sent = Counter(
        (call["method"], call["merchant_order_no"])
        for call in snapshot.calls
        if call["method"] in CREATE_METHODS and call["merchant_order_no"]
    )
    return [f"{method} {number} sent {count} times" for (method, number), count in sent.items() if count > 1]


# The outbound event each line of an order's story must produce, as the events' contract states it (not
# read from the service's own mapping, so a change there that breaks the contract shows up here).
ORDER_STATUS_EVENTS = {
    "failed": "order.failed",
    "cancelled": "order.cancelled",
    "expired": "order.expired",
    "authorized": "order.authorized",
}
REFUND_STATUS_EVENTS = {"succeeded": "refund.succeeded", "failed": "refund.failed"}


def expected_event_type(*, kind: str, from_status: str, to_status: str) -> str | None:
    if kind == "conflict":
        return "order.conflict"
    if kind == "refund_status_changed":
        return REFUND_STATUS_EVENTS.get(to_status)
    if kind != "status_changed":
        return None
    if to_status == "succeeded":
        return "order.captured" if from_status == "authorized" else "order.succeeded"
    return ORDER_STATUS_EVENTS.get(to_status)


@dataclass
class EventsCheck:
    """Outbound events: the outbox against each order's story and against what the receiver accepted."""

    recorded: int
    delivered: int
    received: int
    duplicates: int
    signature_failures: int
    problems: list[str]


def events_read(*, database_url: str) -> tuple[list[dict], list[dict]]:
    """The outbox (oldest first) and the lines of every order's story that imply an event, in story order."""
    with psycopg.connect(database_url, autocommit=True) as db:
        events = _rows(
            db,
            """
            SELECT e.id, e.type, e.body, o.merchant_order_no FROM payments_event e
            LEFT JOIN payments_order o ON o.id = e.order_id ORDER BY e.id""",
        )
        story = _rows(
            db,
            """
            SELECT o.merchant_order_no, s.kind, s.from_status, s.to_status FROM payments_orderevent s
            JOIN payments_order o ON o.id = s.order_id
            WHERE s.kind IN ('status_changed', 'refund_status_changed', 'conflict') ORDER BY s.created_at, s.id""",
        )
    return events, story


def events_check(
    *, events: list[dict], story: list[dict], received: list, signature_failures: list[str]
) -> EventsCheck:
    """
    Every event in the outbox was accepted by the receiver at least once, with the body the outbox holds
    and a valid signature; per order, the events are exactly those its story implies (one per state
    change) and their first deliveries arrived oldest first. ``received`` is the receiver's ``accepted``.
    """
    outbox = {f"evt_{row['id']}": row for row in events}
    problems = [f"event endpoint refused a signature: {failure}" for failure in signature_failures]
    first_arrivals: dict[str, list[int]] = defaultdict(list)
    copies: Counter = Counter()
    for delivery in received:
        copies[delivery.event_id] += 1
        event = outbox.get(delivery.event_id)
        if event is None:
            problems.append(f"{delivery.event_id}: received, not in the outbox")
        elif copies[delivery.event_id] == 1:
            first_arrivals[event["merchant_order_no"]].append(event["id"])
            if delivery.body != event["body"].encode():
                problems.append(f"{delivery.event_id}: received body differs from the outbox's")
    problems += [f"{number}: recorded, never delivered" for number in outbox if number not in copies]
    implied: dict[str, list[str]] = defaultdict(list)
    for line in story:
        event_type = expected_event_type(
            kind=line["kind"], from_status=line["from_status"], to_status=line["to_status"]
        )
        if event_type:
            implied[line["merchant_order_no"]].append(event_type)
    recorded: dict[str, list[str]] = defaultdict(list)
    for event in events:
        recorded[event["merchant_order_no"]].append(event["type"])
    for number in sorted(set(implied) | set(recorded), key=str):
        if implied[number] != recorded[number]:
            problems.append(f"{number}: its story implies events {implied[number]}, the outbox has {recorded[number]}")
    for number, ids in first_arrivals.items():
        if ids != sorted(ids):
            problems.append(f"{number}: events first delivered out of order: {[f'evt_{i}' for i in ids]}")
    return EventsCheck(
        recorded=len(outbox),
        delivered=sum(1 for number in outbox if number in copies),
        received=len(received),
        duplicates=sum(count - 1 for count in copies.values()),
        signature_failures=len(signature_failures),
        problems=problems,
    )
