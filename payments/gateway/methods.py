"""
CodePay method names and the follow-up rules of a pre-authorization, in one place.

The endpoint reference publishes a ``method`` value for most operations. For eight of them it does not
(docs/protocol.md, "Method names": capture, incremental authorization, cancel payment, refund payment, tip
adjustment by trans_no, recall, batch close by terminal list, get open batch). Their names below are
**inferred** and are the only place to change when CodePay confirms them; the sandbox reads the same table.

``FOLLOW_UPS`` says, for each call made on an earlier transaction, which transaction it names and what it
creates (docs/protocol.md, "Follow-ups"). The client, the services and the sandbox all read it, so the
three cannot disagree about which ``trans_no`` a refund of captured money carries; every entry is marked
``PUBLISHED`` (the reference says so) or ``INFERRED`` (our reading, to change here when CodePay says).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Method(str, Enum):
    # Published in the endpoint reference (confirmed).
    CLOUD_PAY_ORDER = "wisehub.cloud.pay.order"
    CLOUD_PAY_CLOSE = "wisehub.cloud.pay.close"
    CHECKOUT = "pay.checkout"
    MERCHANT_CHECKOUT = "pay.merchant.checkout"
    TIP_ADJUSTMENT = "tip.adjustment"
    BATCH_CLOSE = "batch.close"
    ORDER_QUERY = "order.query"
    REFUND_QUERY = "order.refund.query"
    ORDER_REVOKE = "order.revoker"
    REFUND_SUBMIT = "order.refund.submit"
    # Inferred: the reference omits these names.
    CAPTURE = "pay.capture"
    INCREMENTAL_AUTH = "pay.incremental.auth"
    CANCEL_PAYMENT = "pay.cancel"
    REFUND_PAYMENT = "pay.refund"
    TIP_ADJUST_BY_TRANS_NO = "pay.tip.adjust"
    RECALL = "pay.recall"
    BATCH_CLOSE_TERMINALS = "batch.close.terminals"
    OPEN_BATCH = "batch.open.query"


# Calls that can move money: after a timeout or 5xx they are never resent; the outcome is found by query.
MONEY_MOVING_METHODS = frozenset(
    {
        Method.CLOUD_PAY_ORDER,
        Method.CHECKOUT,
        Method.MERCHANT_CHECKOUT,
        Method.CAPTURE,
        Method.INCREMENTAL_AUTH,
        Method.CANCEL_PAYMENT,
        Method.REFUND_PAYMENT,
        Method.TIP_ADJUST_BY_TRANS_NO,
        Method.TIP_ADJUSTMENT,
        Method.ORDER_REVOKE,
        Method.REFUND_SUBMIT,
        Method.BATCH_CLOSE,
        Method.BATCH_CLOSE_TERMINALS,
        Method.CLOUD_PAY_CLOSE,
    }
)


class TransType(str, Enum):
    """docs/protocol.md, "Enumerations" (published)."""

    SALE = "1"
    VOID = "2"
    REFUND = "3"
    PRE_AUTH = "4"
    PRE_AUTH_CANCEL = "5"
    PRE_AUTH_COMPLETION = "6"
    COMPLETION_CANCEL = "7"
    COMPLETION_REFUND = "8"
    CASHBACK = "11"
    CASH_WITHDRAWAL = "12"


class TransStatus(str, Enum):
    """docs/protocol.md, "Enumerations": only SUCCESS means money moved."""

    CREATED = "9"
    IN_PROGRESS = "0"
    CLOSED = "1"
    SUCCESS = "2"
    CANCELLED = "3"


# The gateway has not finished with the transaction yet (created, in progress).
OPEN_TRANS_STATUSES = frozenset({TransStatus.CREATED.value, TransStatus.IN_PROGRESS.value})

# Error codes the gateway uses (docs/protocol.md, "Responses"); the sandbox answers with the same ones.
ORDER_NOT_FOUND_CODE = "E04111"


class Source(str, Enum):
    """Where a protocol rule comes from."""

    PUBLISHED = "published"  # the endpoint reference or CodePay's own SDKs say so
    INFERRED = "inferred"  # our reading of what the reference leaves open


class Target(str, Enum):
    """The transaction a follow-up names with ``trans_no`` (or ``orig_trans_no``)."""

    AUTHORIZATION = "authorization"  # the pre-auth itself (trans_type 4)
    COMPLETION = "completion"  # the capture of the pre-auth (trans_type 6)
    PAYMENT = "payment"  # a sale (1) or cashback (11)


class FollowUpKind(str, Enum):
    CAPTURE = "capture"
    INCREMENT = "increment"
    VOID_AUTHORIZATION = "void_authorization"
    VOID_COMPLETION = "void_completion"
    REFUND_PAYMENT = "refund_payment"
    REFUND_COMPLETION = "refund_completion"
    TIP_ADJUST_PAYMENT = "tip_adjust_payment"
    TIP_ADJUST_COMPLETION = "tip_adjust_completion"


class TipMeaning(str, Enum):
    NEW_TOTAL = "new_total"  # the value replaces the tip: 5.00 then 7.00 leaves a tip of 7.00
    INCREMENT = "increment"  # the value is added to the tip


@dataclass(frozen=True)
class FollowUp:
    """One follow-up call: its method, what it names, the trans_type it creates, and how sure each part is."""

    kind: FollowUpKind
    methods: tuple[Method, ...]  # the first one is the one our services send
    target: Target
    creates: TransType | None
    target_source: Source
    note: str


FOLLOW_UPS: dict[FollowUpKind, FollowUp] = {
    follow_up.kind: follow_up
    for follow_up in (
        FollowUp(
            FollowUpKind.CAPTURE,
            (Method.CAPTURE,),
            Target.AUTHORIZATION,
            TransType.PRE_AUTH_COMPLETION,
            Source.PUBLISHED,
            "trans_no: 'Unique transaction number of the original authorization'. One capture per "
            "authorization (the reference describes one partial capture; the rest is released).",
        ),
        FollowUp(
            FollowUpKind.INCREMENT,
            (Method.INCREMENTAL_AUTH,),
            Target.AUTHORIZATION,
            None,
            Source.PUBLISHED,
            "trans_amount is added to the authorization; only before it is captured.",
        ),
        FollowUp(
            FollowUpKind.VOID_AUTHORIZATION,
            (Method.CANCEL_PAYMENT,),
            Target.AUTHORIZATION,
            TransType.PRE_AUTH_CANCEL,
            Source.PUBLISHED,
            "'Cancels the authorisation on a payment that has not yet been captured'.",
        ),
        FollowUp(
            FollowUpKind.VOID_COMPLETION,
            (Method.CANCEL_PAYMENT,),
            Target.COMPLETION,
            TransType.COMPLETION_CANCEL,
            Source.INFERRED,
            "trans_type 7 exists; voiding the capture names the capture, and only until its batch closes "
            "(after a batch close a transaction can only be refunded). The authorization is released with it.",
        ),
        FollowUp(
            FollowUpKind.REFUND_PAYMENT,
            (Method.REFUND_SUBMIT, Method.REFUND_PAYMENT),
            Target.PAYMENT,
            TransType.REFUND,
            Source.PUBLISHED,
            "order.refund.submit names the paid order by orig_merchant_order_no or orig_trans_no.",
        ),
        FollowUp(
            FollowUpKind.REFUND_COMPLETION,
            (Method.REFUND_SUBMIT, Method.REFUND_PAYMENT),
            Target.COMPLETION,
            TransType.COMPLETION_REFUND,
            Source.INFERRED,
            "Captured money is refunded from the capture, as trans_type 8 'completion refund' suggests; "
            "the authorization itself moved no money and is refused as a refund's original.",
        ),
        FollowUp(
            FollowUpKind.TIP_ADJUST_PAYMENT,
            (Method.TIP_ADJUST_BY_TRANS_NO, Method.TIP_ADJUSTMENT),
            Target.PAYMENT,
            None,
            Source.PUBLISHED,
            "Tip Adjustment names the transaction whose tip changes, before its batch closes.",
        ),
        FollowUp(
            FollowUpKind.TIP_ADJUST_COMPLETION,
            (Method.TIP_ADJUST_BY_TRANS_NO, Method.TIP_ADJUSTMENT),
            Target.COMPLETION,
            None,
            Source.INFERRED,
            "After a capture the tip goes on the capture, the transaction that moves the money and is "
            "settled in the batch; the authorization is refused.",
        ),
    )
}

# "Tip amount to be added or modified": the value sent is the new total tip (inferred). Sending the
# total makes a repeated adjustment harmless, where an increment sent twice would double the tip.
TIP_ADJUSTMENT_MEANING = TipMeaning.NEW_TOTAL
TIP_ADJUSTMENT_MEANING_SOURCE = Source.INFERRED

# The batch close methods, in the order they are tried: the published per-terminal batch.close wherever
# the terminals are known, the inferred store-wide close (terminal_sn_list empty) only when they are not.
BATCH_CLOSE_PER_TERMINAL = Method.BATCH_CLOSE
BATCH_CLOSE_FALLBACK = Method.BATCH_CLOSE_TERMINALS


def follow_up_for(*, action: str, captured: bool) -> FollowUp:
    """The follow-up rule for ``action`` ("void", "refund", "tip_adjust") on a payment or authorization."""
    kinds = {
        ("void", False): FollowUpKind.VOID_AUTHORIZATION,
        ("void", True): FollowUpKind.VOID_COMPLETION,
        ("refund", False): FollowUpKind.REFUND_PAYMENT,
        ("refund", True): FollowUpKind.REFUND_COMPLETION,
        ("tip_adjust", False): FollowUpKind.TIP_ADJUST_PAYMENT,
        ("tip_adjust", True): FollowUpKind.TIP_ADJUST_COMPLETION,
    }
    return FOLLOW_UPS[kinds[(action, captured)]]
