"""
Expiry: an order nobody paid is closed at the gateway and marked ``expired``.

The reconciler applies this policy on each check of a waiting order (``payments.services.reconcile``); the
closes it sends are order operations like any other (``operation_start`` / ``operation_finish``), recorded
under the reconciler's name.

An order still waiting ``CODEPAY_EXPIRY_GRACE_SECONDS`` after ``expires_at`` is queried
first. Paid (or otherwise moved on): that state is applied and wins. Still open at the gateway: it is
closed there (``wisehub.cloud.pay.close`` for a terminal order in status 9, ``order.revoker`` for
checkout, card and QR orders) and marked ``expired``. A close refused by the gateway (typically because
the payment landed in between) is followed by a query whose answer is applied, so the payment wins; a
paid notification after ``expired`` wins too (the state machine allows expired -> succeeded).
``order.revoker`` refunds an order that is already paid, so after a revoke the order is queried again
and a paid-then-revoked order ends as the gateway reports it rather than ``expired``. A card payment
in progress on a terminal (status 0) cannot be closed: it is left to finish. A close whose outcome is
unknown is never sent again; the next query settles it (closed: our close acted, the order expires).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings

from payments.gateway.client import CodePayClient
from payments.gateway.errors import (
    GatewayConfigurationError,
    GatewayDeclined,
    GatewayError,
    GatewayOutcomeUnknown,
    GatewayRequestNotSent,
)
from payments.gateway.methods import TransStatus
from payments.gateway.results import OrderInfo
from payments.gateway.vocabulary import QR_PAY_SCENARIOS
from payments.locks import order_locked
from payments.models import Channel, OperationKind, OperationStatus, Order, OrderOperation, OrderStatus
from payments.services.checks import next_check_at
from payments.services.operations import operation_finish, operation_start
from payments.services.orders import ApplyResult, order_apply_gateway_state, order_transition
from payments.state_machine import order_status_from_gateway

logger = logging.getLogger(__name__)

# Expiry runs inside reconciliation: its closes and status changes are recorded as the reconciler's.
SOURCE = "reconcile"
# Orders waiting for the customer; only these expire.
WAITING_STATUSES = frozenset({OrderStatus.PENDING, OrderStatus.PROCESSING})


def order_expired(*, order: Order, now: datetime) -> bool:
    """Past ``expires_at`` by more than ``CODEPAY_EXPIRY_GRACE_SECONDS``."""
    return now >= order.expires_at + timedelta(seconds=settings.CODEPAY_EXPIRY_GRACE_SECONDS)


def order_close_expired(*, order: Order, client: CodePayClient, gateway_trans_status: str) -> str | None:
    """Close an expired order at the gateway and mark it expired; the gateway's answer wins if it was paid."""
    terminal_card = order.channel == Channel.TERMINAL and order.pay_scenario not in QR_PAY_SCENARIOS
    if terminal_card and gateway_trans_status != TransStatus.CREATED.value:
        # A card payment in progress on the terminal cannot be withdrawn (wisehub.cloud.pay.close takes
        # status 9 only); it finishes or fails on its own and a later check applies it.
        return None
    earlier_close = order_close_earlier(order=order)
    if earlier_close is not None and earlier_close.status == OperationStatus.UNKNOWN:
        # An earlier close may have acted: it is never sent again; queries settle the order.
        return None
    kind = OperationKind.CLOSE if terminal_card else OperationKind.REVOKE
    operation = operation_start(order=order, kind=kind, source=SOURCE)
    try:
        if kind == OperationKind.CLOSE:
            answer = client.close_cloud_order(
                merchant_order_no=order.merchant_order_no,
                terminal_sn=order.terminal_sn,
                store_no=order.store_no,
                description="expired",
            )
        else:
            answer = client.revoke_order(merchant_order_no=order.merchant_order_no)
    except GatewayDeclined as exc:
        operation_finish(operation, OperationStatus.FAILED, code=exc.code, message=exc.message)
        # Usually refused because the order moved on (the customer paid just now): the query decides.
        info = _order_query_quietly(order=order, client=client)
        return None if info is None else _order_apply(order=order, info=info)
    except GatewayOutcomeUnknown as exc:
        # The reconciler looks the close or revoke up soon, through the order's own query.
        operation.next_check_at = next_check_at(0)
        operation_finish(operation, OperationStatus.UNKNOWN, message=exc.message)
        return None
    except (GatewayRequestNotSent, GatewayConfigurationError) as exc:
        operation_finish(operation, OperationStatus.FAILED, message=exc.message)
        return None
    operation_finish(operation, OperationStatus.SUCCEEDED, code="0", trans_no=answer.trans_no)
    if kind == OperationKind.REVOKE:
        # order.revoker refunds an order that was paid in the meantime: ask what it did.
        info = _order_query_quietly(order=order, client=client)
        if info is None:
            return None  # the next check settles it
        if info.trans_status != TransStatus.CLOSED.value:
            return _order_apply(order=order, info=info)
    return order_expire(
        order=order, message=f"expired; {kind} accepted by the gateway", gateway_trans_status=TransStatus.CLOSED.value
    )


def order_close_earlier(*, order: Order) -> OrderOperation | None:
    """The latest close or revoke reconciliation sent for this order that did or may have acted, if any."""
    return (
        OrderOperation.objects.filter(
            order_id=order.pk,
            kind__in=(OperationKind.CLOSE, OperationKind.REVOKE),
            source=SOURCE,
            status__in=(OperationStatus.UNKNOWN, OperationStatus.SUCCEEDED),
        )
        .order_by("-id")
        .first()
    )


def _order_query_quietly(*, order: Order, client: CodePayClient) -> OrderInfo | None:
    try:
        return client.query_order(merchant_order_no=order.merchant_order_no)
    except GatewayError as exc:
        logger.warning(
            "reconcile: query after close failed",
            extra={"merchant_order_no": order.merchant_order_no, "error": exc.message},
        )
        return None


def _order_apply(*, order: Order, info: OrderInfo) -> str | None:
    if order_apply_gateway_state(order_id=order.pk, info=info, source=SOURCE) is ApplyResult.APPLIED:
        return order_status_from_gateway(info.trans_status, order.trans_type)
    return None


def order_expire(*, order: Order, message: str, gateway_trans_status: str) -> str | None:
    """Mark a waiting order ``expired`` (under its row lock); answers ``expired`` if it moved, None if not."""
    with order_locked(order_id=order.pk) as locked:
        result = order_transition(
            locked, OrderStatus.EXPIRED, source=SOURCE, message=message, gateway_trans_status=gateway_trans_status
        )
    return OrderStatus.EXPIRED if result is ApplyResult.APPLIED else None
