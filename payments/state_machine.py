"""
The order and refund state machines: which status may follow which, and how gateway statuses map to ours.

A status never moves backwards: a late ``pending`` or ``processing`` (a stale notification, a slow query)
is ignored once an order has moved on. The moves out of a settled state are the gateway's word on money:
- ``failed`` or ``expired`` to ``succeeded``/``authorized``: the customer paid just as we gave up or
  closed the order; the money did move, and losing it is worse than a surprising status;
- ``succeeded`` to ``cancelled``: a paid online order that was revoked (the gateway refunded it whole).
``cancelled`` is final. Refunds follow the same rule: a refund we marked failed that the gateway reports
done is adopted (within what was paid).
"""

from __future__ import annotations

from payments.gateway.methods import TransStatus
from payments.models import OrderStatus, RefundStatus, TransType

S = OrderStatus

ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    S.UNKNOWN: frozenset({S.PENDING, S.PROCESSING, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.PENDING: frozenset({S.PROCESSING, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.PROCESSING: frozenset({S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.AUTHORIZED: frozenset({S.SUCCEEDED, S.CANCELLED}),
    S.SUCCEEDED: frozenset({S.CANCELLED}),
    S.FAILED: frozenset({S.AUTHORIZED, S.SUCCEEDED}),
    S.EXPIRED: frozenset({S.AUTHORIZED, S.SUCCEEDED}),
    S.CANCELLED: frozenset(),
}

# Statuses the reconciler keeps asking the gateway about.
ORDER_OPEN_STATUSES = frozenset({S.PENDING, S.PROCESSING, S.UNKNOWN})
ORDER_FINAL_STATUSES = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED})
# Money moved: refunds are allowed from these.
ORDER_PAID_STATUSES = frozenset({S.SUCCEEDED})

REFUND_TRANSITIONS: dict[str, frozenset[str]] = {
    RefundStatus.UNKNOWN: frozenset({RefundStatus.PENDING, RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    # A refund we marked failed (never sent, or unknown to the gateway past the grace period) that the
    # gateway later reports done did move the money back: adopted, like a late payment.
    RefundStatus.FAILED: frozenset({RefundStatus.SUCCEEDED}),
}
REFUND_OPEN_STATUSES = frozenset({RefundStatus.PENDING, RefundStatus.UNKNOWN})


def order_status_from_gateway(trans_status: str, trans_type: str) -> str | None:
    """Our status for a gateway ``trans_status`` (docs/protocol.md, "Enumerations"); None when unrecognised."""
    return {
        TransStatus.CREATED.value: S.PENDING,
        TransStatus.IN_PROGRESS.value: S.PROCESSING,
        TransStatus.CLOSED.value: S.FAILED,
        TransStatus.SUCCESS.value: S.AUTHORIZED if trans_type == TransType.AUTH else S.SUCCEEDED,
        TransStatus.CANCELLED.value: S.CANCELLED,
    }.get(str(trans_status))


def refund_status_from_gateway(trans_status: str) -> str | None:
    return {
        TransStatus.CREATED.value: RefundStatus.PENDING,
        TransStatus.IN_PROGRESS.value: RefundStatus.PENDING,
        TransStatus.CLOSED.value: RefundStatus.FAILED,
        TransStatus.SUCCESS.value: RefundStatus.SUCCEEDED,
        TransStatus.CANCELLED.value: RefundStatus.FAILED,
    }.get(str(trans_status))


def order_can_move(from_status: str, to_status: str) -> bool:
    return to_status in ORDER_TRANSITIONS[from_status]


def refund_can_move(from_status: str, to_status: str) -> bool:
    return to_status in REFUND_TRANSITIONS[from_status]
