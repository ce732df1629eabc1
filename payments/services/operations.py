"""
Follow-up operations on an order: capture, incremental authorization, tip adjustment, void, close and
revoke. Each is stored before it is sent (like an order) and sent outside any transaction; its effect on
the order (captured, authorized and paid amounts, status) is applied under the order's row lock. An
operation whose answer is lost stays ``unknown`` and is never resent; the reconciler settles it with
``operation_sync``: one with its own merchant_order_no (capture, void) is looked up by that number; the
others (increment, tip adjustment, close, revoke) by querying the transaction they named (FOLLOW_UPS):
the authorization's total shows an increment, the sale's or, after a capture, the capture's tip shows a tip
adjustment, the order's status a close or revoke. An operation whose request died before its answer was
recorded is first looked up once any call must have ended (``_first_check_delay``), not at the longest back-off.

Increments are told apart by the authorization's total: the gateway holding ours plus this increment (or
plus every unsettled increment) means it acted; ours (or ours plus the others) means it did not. A total
that none of these explains cannot tell; such an increment stays unknown for the unknown-outcome grace
period (another increment settling may explain it), then fails with both totals in its reason, so it is
never unknown forever and staff can see what the gateway holds.

Which transaction each follow-up names comes from ``payments.services.follow_ups`` (the table in
``payments.gateway.methods``): after a capture, the tip and the void go to the capture. An authorization
is captured once (the ``one_capture_per_authorization`` constraint); the part not captured is released.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from codepay_service.errors import Misconfigured, StateConflict, ValidationFailed
from payments.gateway.client import CodePayClient
from payments.gateway.errors import GatewayDeclined, GatewayError, GatewayOutcomeUnknown, is_order_not_found
from payments.gateway.methods import ORDER_NOT_FOUND_CODE, TransStatus
from payments.gateway.money import AmountError, amount_check_maximum, format_amount
from payments.locks import operation_locked, order_locked
from payments.models import Channel, OperationKind, OperationStatus, Order, OrderOperation, OrderStatus, TransType
from payments.services.accounts import gateway_client_for
from payments.services.checks import CHECK_DELAYS_SECONDS, next_check_at
from payments.services.follow_ups import follow_up_reference
from payments.services.gateway_errors import client_error, failure_reason
from payments.services.orders import (
    ApplyResult,
    merchant_order_no_generate,
    merchant_order_no_reserve,
    order_event,
    order_refunds_reserved,
    order_transition,
)
from payments.services.results import WriteResult


def _operation_call(
    *, order: Order, operation: OrderOperation, call: Callable[[CodePayClient], Any], declined_conflict: str = ""
) -> WriteResult[Order]:
    """
    Send an operation and settle it: success applies its effect; a decline becomes 502 (409 with
    ``declined_conflict`` when a refusal means the order's state does not allow it); an unknown outcome is
    kept (the reconciler looks up operations with their own number) and answered as such, never resent.
    """
    try:
        result = call(gateway_client_for(order.account))
    except GatewayOutcomeUnknown as exc:
        # The reconciler looks it up soon: by its own number, or through the order's own query.
        operation.next_check_at = next_check_at(0)
        operation_finish(operation, OperationStatus.UNKNOWN, message=exc.message)
        return WriteResult(obj=Order.objects.get(pk=order.pk), outcome_unknown=True)
    except (GatewayError, Misconfigured) as exc:
        operation.next_check_at = None
        code, message = failure_reason(exc)
        operation_finish(operation, OperationStatus.FAILED, code=code, message=message)
        if declined_conflict and isinstance(exc, GatewayDeclined):
            raise StateConflict(f"{declined_conflict} The gateway answered: {exc.message}") from None
        raise client_error(exc, action=operation.get_kind_display().lower(), not_sent=". Retry later.") from None
    return WriteResult(
        obj=operation_apply_success(operation=operation, trans_no=result.trans_no, source=operation.source),
        outcome_unknown=False,
    )


def operation_apply_success(*, operation: OrderOperation, trans_no: str, source: str) -> Order:
    """The effect of an operation the gateway accepted, under the order's row lock; applied once."""
    with operation_locked(operation_id=operation.pk, order_id=operation.order_id) as (order, operation):
        if operation.status == OperationStatus.SUCCEEDED:
            return order
        operation.next_check_at = None
        operation_finish(operation, OperationStatus.SUCCEEDED, code="0", trans_no=trans_no)
        if operation.kind == OperationKind.CAPTURE:
            amount = _amount_of(operation)
            order.captured_amount += amount
            order.paid_amount = order.captured_amount
            order_transition(order, OrderStatus.SUCCEEDED, source=source, message=f"captured {amount} {order.currency}")
        elif operation.kind == OperationKind.INCREMENT:
            order.authorized_amount += _amount_of(operation)
            order.save()
        elif operation.kind == OperationKind.TIP_ADJUST:
            amount = _amount_of(operation)
            order.paid_amount = _paid_with_tip(order, amount)
            order.tip_amount = amount
            order.save()
        else:
            order_transition(
                order, OrderStatus.CANCELLED, source=source, message=f"{operation.kind} accepted by the gateway"
            )
    return order


def _amount_of(operation: OrderOperation) -> Decimal:
    """The amount of a capture, increment or tip adjustment: the kinds that carry one (a void has none)."""
    assert operation.amount is not None, f"{operation.kind} operation {operation.pk} has no amount"
    return operation.amount


def _paid_with_tip(order: Order, tip_amount: Decimal) -> Decimal:
    """The paid amount once the tip is ``tip_amount``: the value is the new total tip (TIP_ADJUSTMENT_MEANING),
    and after a capture the tip sits on the capture, on top of the captured amount."""
    if order.trans_type == TransType.AUTH:
        return order.captured_amount + tip_amount
    return order.paid_amount - order.tip_amount + tip_amount


def operation_sync(*, operation: OrderOperation, client=None, source: str = "sync") -> ApplyResult:
    """
    Look up an operation whose outcome is unknown by its own merchant_order_no (captures and voids have
    one) and settle it. One the gateway still does not know past the grace period never reached it.
    """
    client = client or gateway_client_for(operation.order.account)
    if not operation.merchant_order_no:
        return _operation_sync_by_order(operation=operation, client=client, source=source)
    try:
        info = client.query_order(merchant_order_no=operation.merchant_order_no)
    except GatewayError as exc:
        if not is_order_not_found(exc):
            raise
        if timezone.now() - operation.created_at < timedelta(seconds=settings.CODEPAY_UNKNOWN_GRACE_SECONDS):
            return ApplyResult.UNCHANGED
        info = None
    with operation_locked(operation_id=operation.pk, order_id=operation.order_id) as (_, operation):
        if operation.status != OperationStatus.UNKNOWN:
            return ApplyResult.UNCHANGED
        if info is None or info.trans_status in (TransStatus.CLOSED.value, TransStatus.CANCELLED.value):
            operation.next_check_at = None
            operation_finish(
                operation,
                OperationStatus.FAILED,
                code=ORDER_NOT_FOUND_CODE if info is None else "",
                message="settled by order.query",
            )
            return ApplyResult.APPLIED
        if info.trans_status != TransStatus.SUCCESS.value:
            return ApplyResult.UNCHANGED
    operation_apply_success(operation=operation, trans_no=info.trans_no, source=source)
    return ApplyResult.APPLIED


def _operation_sync_by_order(*, operation: OrderOperation, client, source: str) -> ApplyResult:
    """Settle an operation without a number of its own by what ``order.query`` shows of the transaction it
    named: after a capture a tip adjustment names the capture (FOLLOW_UPS), which holds the tip."""
    order = operation.order
    queried = order.merchant_order_no
    if operation.kind == OperationKind.TIP_ADJUST:
        queried = follow_up_reference(order=order, action="tip_adjust").merchant_order_no
    info = client.query_order(merchant_order_no=queried)
    with operation_locked(operation_id=operation.pk, order_id=operation.order_id) as (order, operation):
        if operation.status != OperationStatus.UNKNOWN:
            return ApplyResult.UNCHANGED
        acted = _operation_acted(operation, order, info)
        message = "settled by order.query"
        if acted is None:
            if timezone.now() - operation.created_at < timedelta(seconds=settings.CODEPAY_UNKNOWN_GRACE_SECONDS):
                return ApplyResult.UNCHANGED
            acted = False
            totals = (info.trans_amount or Decimal("0"), order.authorized_amount, _unsettled_increments(order))
            message = "order.query cannot tell: the gateway holds {}, ours {}, unsettled increments {}".format(
                *(format_amount(total, order.currency) for total in totals)
            )
        if not acted or operation.kind in (OperationKind.CLOSE, OperationKind.REVOKE):
            # A close or revoke changes nothing of ours here: the order follows the gateway's status
            # through its own checks, like an order closed for any other reason.
            operation.next_check_at = None
            status = OperationStatus.SUCCEEDED if acted else OperationStatus.FAILED
            operation_finish(operation, status, message=message)
            return ApplyResult.APPLIED
    operation_apply_success(operation=operation, trans_no=info.trans_no, source=source)
    return ApplyResult.APPLIED


def _operation_acted(operation: OrderOperation, order: Order, info) -> bool | None:
    """Whether the gateway's view of the transaction shows the operation's effect; None when it cannot tell."""
    if operation.kind == OperationKind.INCREMENT:
        # Other increments whose answers were lost may have acted too: the total may include them.
        added = (info.trans_amount or Decimal("0")) - order.authorized_amount
        others = _unsettled_increments(order) - _amount_of(operation)
        if added in (_amount_of(operation), _amount_of(operation) + others):
            return True
        return False if added in (Decimal("0"), others) else None
    if operation.kind == OperationKind.TIP_ADJUST:
        return info.tip_amount == operation.amount
    # Close and revoke: the order is no longer open at the gateway (closed, or paid and revoked).
    return info.trans_status in (TransStatus.CLOSED.value, TransStatus.CANCELLED.value)


def operation_finish(
    operation: OrderOperation, status: str, *, code: str = "", message: str = "", trans_no: str = ""
) -> None:
    """Record an operation's outcome and add it to the order's story."""
    operation.status = status
    operation.gateway_code = code[:16]
    operation.gateway_message = message[:255]
    operation.trans_no = trans_no or operation.trans_no
    operation.save()
    order_event(operation.order, kind=f"{operation.kind}_{status}", source=operation.source, message=message)


def operation_start(
    *, order: Order, kind: str, amount: Decimal | None = None, merchant_order_no: str = "", source: str = "api"
) -> OrderOperation:
    """Record an operation as ``unknown`` before it is sent (reserving its own number, if it has one)."""
    if merchant_order_no:
        merchant_order_no_reserve(account=order.account, merchant_order_no=merchant_order_no, kind=kind)
    # Stored before it is sent, like an order: if this process dies mid-call, an operation with its own
    # number is still looked up by the reconciler (its check is pushed back while the call is under way).
    try:
        with transaction.atomic():
            return _create_operation(
                order, kind=kind, amount=amount, merchant_order_no=merchant_order_no, source=source
            )
    except IntegrityError:
        # Only one_capture_per_authorization can fail here; the order's row lock makes it a backstop.
        raise StateConflict(_ONE_CAPTURE) from None


_ONE_CAPTURE = "This authorization already has a capture; an authorization is captured once (the rest is released)."


def _create_operation(
    order: Order, *, kind: str, amount: Decimal | None, merchant_order_no: str, source: str
) -> OrderOperation:
    return OrderOperation.objects.create(
        order=order,
        kind=kind,
        amount=amount,
        merchant_order_no=merchant_order_no,
        status=OperationStatus.UNKNOWN,
        source=source,
        next_check_at=timezone.now() + _first_check_delay(),
    )


def _first_check_delay() -> timedelta:
    """The first check of an operation stored before it is sent: the first back-off step past the longest a
    call can take (each of its attempts within the connect and read timeouts), so the reconciler does not
    race the call, yet one whose request died (connection dropped, process killed) is found in minutes."""
    longest_call = 3 * (settings.CODEPAY_CONNECT_TIMEOUT + settings.CODEPAY_READ_TIMEOUT)
    return timedelta(seconds=next(d for d in (*CHECK_DELAYS_SECONDS, longest_call) if d >= longest_call))


def _unsettled_operation_total(order: Order, kind: str) -> Decimal:
    return OrderOperation.objects.filter(order=order, kind=kind, status=OperationStatus.UNKNOWN).aggregate(
        total=Sum("amount")
    )["total"] or Decimal("0")


def _unsettled_increments(order: Order) -> Decimal:
    return _unsettled_operation_total(order, OperationKind.INCREMENT)


def _total_within_maximum(total: Decimal, *, currency: str, field: str, what: str) -> None:
    """A sum the operation would store stays within the currency's maximum (payments.gateway.money)."""
    try:
        amount_check_maximum(total, currency, what=what)
    except AmountError as exc:
        raise ValidationFailed(details={field: [str(exc)]}) from None


def order_cancel(*, order: Order, source: str = "api") -> WriteResult[Order]:
    """
    Close a waiting terminal order, revoke a waiting online order, void an authorization, or void the
    capture of an authorization (trans_type 7) while the gateway still allows it (before its batch closes;
    a refusal is a 409 telling to refund instead).
    """
    with order_locked(order_id=order.pk) as order:
        captured_auth = order.status == OrderStatus.SUCCEEDED and order.trans_type == TransType.AUTH
        if order.status == OrderStatus.AUTHORIZED or captured_auth:
            if captured_auth and order_refunds_reserved(order):
                raise StateConflict("The capture is partly refunded; refund the rest instead of voiding it.")
            reference = follow_up_reference(order=order, action="void")
            operation = operation_start(
                order=order, kind=OperationKind.VOID, merchant_order_no=merchant_order_no_generate(), source=source
            )
        elif order.status in (OrderStatus.PENDING, OrderStatus.PROCESSING):
            kind = OperationKind.CLOSE if order.channel == Channel.TERMINAL else OperationKind.REVOKE
            operation = operation_start(order=order, kind=kind, source=source)
        elif order.status == OrderStatus.SUCCEEDED:
            raise StateConflict("The order is paid; refund it instead of cancelling it.")
        else:
            raise StateConflict(f"A {order.status} order cannot be cancelled.")

    if operation.kind == OperationKind.VOID:
        return _operation_call(
            order=order,
            operation=operation,
            call=lambda c: c.cancel_payment(merchant_order_no=operation.merchant_order_no, trans_no=reference.trans_no),
            declined_conflict=(
                "The gateway no longer allows voiding this capture (for instance after its batch "
                "closed); refund it instead."
            )
            if captured_auth
            else "",
        )
    if operation.kind == OperationKind.CLOSE:
        return _operation_call(
            order=order,
            operation=operation,
            call=lambda c: c.close_cloud_order(
                merchant_order_no=order.merchant_order_no, terminal_sn=order.terminal_sn, store_no=order.store_no
            ),
        )
    return _operation_call(
        order=order, operation=operation, call=lambda c: c.revoke_order(merchant_order_no=order.merchant_order_no)
    )


def order_capture(*, order: Order, amount: Decimal, source: str = "api") -> WriteResult[Order]:
    """Capture (part of) an authorization; never more than authorized plus increments."""
    with order_locked(order_id=order.pk) as order:
        if order.trans_type != TransType.AUTH:
            raise StateConflict("Only an authorization can be captured; this order is a sale.")
        if order.status != OrderStatus.AUTHORIZED:
            raise StateConflict(f"Only an authorized order can be captured; this one is {order.status}.")
        if _unsettled_operation_total(order, OperationKind.CAPTURE):
            raise StateConflict(_ONE_CAPTURE)
        capturable = (
            order.authorized_amount - order.captured_amount - _unsettled_operation_total(order, OperationKind.CAPTURE)
        )
        if amount > capturable:
            raise ValidationFailed(
                details={
                    "amount": [f"At most {format_amount(capturable, order.currency)} {order.currency} can be captured."]
                }
            )
        operation = operation_start(
            order=order,
            kind=OperationKind.CAPTURE,
            amount=amount,
            merchant_order_no=merchant_order_no_generate(),
            source=source,
        )

    return _operation_call(
        order=order,
        operation=operation,
        call=lambda c: c.capture(
            merchant_order_no=operation.merchant_order_no,
            trans_no=order.trans_no,
            amount=amount,
            currency=order.currency,
        ),
    )


def order_increment(*, order: Order, amount: Decimal, source: str = "api") -> WriteResult[Order]:
    """Raise an authorization by ``amount``."""
    with order_locked(order_id=order.pk) as order:
        if order.trans_type != TransType.AUTH or order.status != OrderStatus.AUTHORIZED:
            raise StateConflict(
                f"Only an authorized pre-authorization can be incremented; this order is a {order.status} "
                f"{order.trans_type}."
            )
        pending = _unsettled_operation_total(order, OperationKind.INCREMENT)
        _total_within_maximum(
            order.authorized_amount + pending + amount,
            currency=order.currency,
            field="amount",
            what="The authorized amount with this increment",
        )
        operation = operation_start(order=order, kind=OperationKind.INCREMENT, amount=amount, source=source)

    return _operation_call(
        order=order,
        operation=operation,
        call=lambda c: c.increment_authorization(trans_no=order.trans_no, amount=amount, currency=order.currency),
    )


def order_tip_adjust(*, order: Order, tip_amount: Decimal, source: str = "api") -> WriteResult[Order]:
    """Set the tip of a paid sale or captured authorization (before its batch closes) to ``tip_amount``, the
    new total; a captured authorization's tip goes on its capture."""
    with order_locked(order_id=order.pk) as order:
        if order.status != OrderStatus.SUCCEEDED or (order.trans_type == TransType.AUTH and not order.captured_amount):
            raise StateConflict(f"Only a paid order's tip can be adjusted; this one is {order.status}.")
        new_paid = _paid_with_tip(order, tip_amount)
        _total_within_maximum(
            new_paid, currency=order.currency, field="tip_amount", what="The paid amount with this tip"
        )
        if new_paid < order_refunds_reserved(order):
            raise ValidationFailed(details={"tip_amount": ["The order would then be paid less than its refunds."]})
        operation = operation_start(order=order, kind=OperationKind.TIP_ADJUST, amount=tip_amount, source=source)

    reference = follow_up_reference(order=order, action="tip_adjust")
    if reference.trans_no:
        return _operation_call(
            order=order,
            operation=operation,
            call=lambda c: c.adjust_tip_by_trans_no(
                trans_no=reference.trans_no, tip_amount=tip_amount, currency=order.currency
            ),
        )
    return _operation_call(
        order=order,
        operation=operation,
        call=lambda c: c.adjust_tip(
            merchant_order_no=reference.merchant_order_no, tip_amount=tip_amount, currency=order.currency
        ),
    )
