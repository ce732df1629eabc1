"""
CodePay method names, in one table.

The endpoint reference publishes a ``method`` value for most operations. For eight of them it does not
(PROTOCOL.md, "Rules": capture, incremental authorization, cancel payment, refund payment, tip adjustment
by trans_no, recall, batch close by terminal list, get open batch). Their names below are **inferred**
and are the only place to change when CodePay confirms them; the sandbox reads the same table.
"""

from __future__ import annotations

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
    """PROTOCOL.md, "Enumerations" (confirmed)."""

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
    """PROTOCOL.md, "Enumerations": only SUCCESS means money moved."""

    CREATED = "9"
    IN_PROGRESS = "0"
    CLOSED = "1"
    SUCCESS = "2"
    CANCELLED = "3"


# The gateway has not finished with the transaction yet (created, in progress).
OPEN_TRANS_STATUSES = frozenset({TransStatus.CREATED.value, TransStatus.IN_PROGRESS.value})

# Error codes the gateway uses (PROTOCOL.md, "Responses"); the sandbox answers with the same ones.
ORDER_NOT_FOUND_CODE = "E04111"
