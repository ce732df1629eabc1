"""
Which gateway transaction a follow-up on an order names, read from the one table in
``payments.gateway.methods.FOLLOW_UPS`` (docs/protocol.md, "Follow-ups").

An authorization that was captured has two transactions at the gateway: the authorization (the order's
own ``trans_no``) and the capture, with its own merchant_order_no and trans_no kept on the capture
operation. Refunds, tip adjustments and voids after the capture name the capture; before it, the
authorization. A sale is named by its own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from payments.gateway.methods import FollowUp, Target, follow_up_for
from payments.models import OperationKind, OperationStatus, Order, OrderOperation, TransType


@dataclass(frozen=True)
class FollowUpReference:
    follow_up: FollowUp
    trans_no: str
    merchant_order_no: str


def order_capture_operation(*, order: Order) -> OrderOperation | None:
    """The authorization's capture that succeeded (one at most: ``one_capture_per_authorization``)."""
    return OrderOperation.objects.filter(
        order=order, kind=OperationKind.CAPTURE, status=OperationStatus.SUCCEEDED
    ).first()


def follow_up_reference(*, order: Order, action: str) -> FollowUpReference:
    """The rule and the numbers a ``action`` ("void", "refund", "tip_adjust") on ``order`` sends."""
    capture = order_capture_operation(order=order) if order.trans_type == TransType.AUTH else None
    follow_up = follow_up_for(action=action, captured=capture is not None)
    if follow_up.target is Target.COMPLETION:
        assert capture is not None  # the completion is the target only when there is a capture
        return FollowUpReference(
            follow_up=follow_up, trans_no=capture.trans_no, merchant_order_no=capture.merchant_order_no
        )
    return FollowUpReference(follow_up=follow_up, trans_no=order.trans_no, merchant_order_no=order.merchant_order_no)
