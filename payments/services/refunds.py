"""
Refunds: reserved under the order's row lock, sent, then applied as the gateway reports them.

What can still be refunded is the paid amount minus every refund that has not failed (succeeded,
pending or unknown), checked while the order row is locked, so two concurrent refunds can never
together exceed what was paid. ``refunded_amount`` on the order counts succeeded refunds only, and a
database constraint keeps it at or below ``paid_amount``.

A refund names what it gives money back from as ``payments.services.follow_ups`` says: a sale by its own
merchant_order_no, a captured authorization by its capture's trans_no (the gateway records a completion
refund, trans_type 8); the authorization itself moved no money and would be refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from codepay_service.errors import Misconfigured, StateConflict, ValidationFailed
from payments.gateway.errors import (
    GatewayError,
    GatewayOutcomeUnknown,
    GatewayRequestNotSent,
    is_order_not_found,
)
from payments.gateway.methods import ORDER_NOT_FOUND_CODE, Target
from payments.gateway.money import format_amount
from payments.gateway.results import RefundInfo
from payments.locks import order_locked, refund_locked
from payments.models import ApiKey, Order, Refund, RefundStatus
from payments.services.accounts import gateway_client_for
from payments.services.checks import next_check_at
from payments.services.follow_ups import follow_up_reference
from payments.services.gateway_errors import client_error, failure_reason
from payments.services.orders import (
    ApplyResult,
    merchant_order_no_generate,
    merchant_order_no_release,
    merchant_order_no_reserve,
    order_event,
    order_refunds_reserved,
)
from payments.services.results import WriteResult
from payments.state_machine import (
    ORDER_PAID_STATUSES,
    REFUND_OPEN_STATUSES,
    refund_can_move,
    refund_status_from_gateway,
)


def order_refundable_amount(order: Order) -> Decimal:
    return order.paid_amount - order_refunds_reserved(order)


def order_refund(
    *,
    order: Order,
    amount: Decimal,
    reason: str,
    merchant_order_no: str = "",
    api_key: ApiKey | None = None,
    source: str = "api",
) -> WriteResult[Refund]:
    """
    Refund (part of) a paid order. Raises StateConflict for an unpaid order, ValidationFailed above the
    refundable amount; a lost answer keeps the refund ``unknown`` and says so (``outcome_unknown``).
    """
    with order_locked(order_id=order.pk) as order:
        if order.status not in ORDER_PAID_STATUSES:
            raise StateConflict(f"Only a paid order can be refunded; this one is {order.status}.")
        refundable = order_refundable_amount(order)
        if amount > refundable:
            raise ValidationFailed(
                details={
                    "amount": [
                        f"At most {format_amount(refundable, order.currency)} {order.currency} can still be "
                        "refunded on this order."
                    ]
                }
            )
        merchant_order_no = merchant_order_no or merchant_order_no_generate()
        merchant_order_no_reserve(account=order.account, merchant_order_no=merchant_order_no, kind="refund")
        refund = Refund.objects.create(
            account=order.account,
            order=order,
            merchant_order_no=merchant_order_no,
            amount=amount,
            currency=order.currency,
            reason=reason,
            status=RefundStatus.UNKNOWN,
            api_key=api_key,
            next_check_at=next_check_at(0),
        )
        order_event(
            order, refund=refund, kind="refund_requested", source=source, message=f"{amount} {order.currency}: {reason}"
        )
        reference = follow_up_reference(order=order, action="refund")
    # A sale is named by its number, which never changes; a capture by the trans_no the gateway gave it.
    if reference.follow_up.target is Target.COMPLETION:
        original = {"orig_trans_no": reference.trans_no}
    else:
        original = {"orig_merchant_order_no": reference.merchant_order_no}

    try:
        result = gateway_client_for(order.account).submit_refund(
            merchant_order_no=refund.merchant_order_no,
            **original,
            amount=amount,
            currency=order.currency,
            description=reason,
        )
    except GatewayOutcomeUnknown as exc:
        _refund_note(refund, message=exc.message, source=source)
        return WriteResult(obj=Refund.objects.get(pk=refund.pk), outcome_unknown=True)
    except GatewayRequestNotSent as exc:
        # Nothing left this machine: forget the refund and its number so the same request can be retried.
        with transaction.atomic():
            Refund.objects.filter(pk=refund.pk).delete()
            merchant_order_no_release(account_id=order.account_id, merchant_order_no=refund.merchant_order_no)
        raise client_error(
            exc,
            action="refund",
            not_sent="; nothing was kept.",
            details={"merchant_order_no": refund.merchant_order_no},
        ) from None
    except (GatewayError, Misconfigured) as exc:
        _refund_failed(refund, exc, source=source)
        raise client_error(
            exc,
            action="refund",
            not_sent=" and is marked failed.",
            details={"merchant_order_no": refund.merchant_order_no},
        ) from None

    Refund.objects.filter(pk=refund.pk).update(gateway_code="0", gateway_message="success")
    refund_apply_gateway_state(
        refund_id=refund.pk,
        info=RefundInfo(
            trans_no=result.trans_no,
            merchant_order_no=refund.merchant_order_no,
            trans_status=result.trans_status or "0",
            price_currency=order.currency,
            order_amount=result.trans_amount,
            trans_end_time="",
            data=result.data,
            psn=result.psn,
        ),
        source=source,
    )
    return WriteResult(obj=Refund.objects.get(pk=refund.pk), outcome_unknown=False)


def _refund_note(refund: Refund, *, message: str, source: str) -> None:
    # The refund's row is written after its order's lock (payments.locks: the one lock order).
    with order_locked(order_id=refund.order_id) as order:
        Refund.objects.select_for_update().filter(pk=refund.pk).update(
            gateway_message=message[:255], updated_at=timezone.now()
        )
        order_event(order, refund=refund, kind="refund_outcome_unknown", source=source, message=message)


def _refund_failed(refund: Refund, exc, *, source: str) -> None:
    with refund_locked(refund_id=refund.pk, order_id=refund.order_id) as (_, refund):
        refund.gateway_code, refund.gateway_message = failure_reason(exc)
        refund_transition(refund, RefundStatus.FAILED, source=source)


def refund_transition(refund: Refund, to_status: str | None, *, source: str, data: dict | None = None) -> ApplyResult:
    """The one place a refund's status changes. The caller holds the order's and the refund's row locks."""
    if to_status is None or to_status == refund.status:
        refund.save()
        return ApplyResult.UNCHANGED
    if not refund_can_move(refund.status, to_status):
        refund.save()
        order_event(
            refund.order,
            refund=refund,
            kind="stale_refund_status_ignored",
            source=source,
            from_status=refund.status,
            to_status=to_status,
            data=data,
        )
        return ApplyResult.STALE
    order = refund.order
    if to_status == RefundStatus.SUCCEEDED and order.refunded_amount + refund.amount > order.paid_amount:
        # Only possible for a late success of a refund whose amount was freed; never book more than paid.
        order_event(
            order,
            refund=refund,
            kind="conflict",
            source=source,
            message="refund success would exceed the paid amount",
            data=data,
        )
        return ApplyResult.CONFLICT
    from_status = refund.status
    refund.status = to_status
    if to_status not in REFUND_OPEN_STATUSES:
        refund.next_check_at = None
    refund.save()
    if to_status == RefundStatus.SUCCEEDED:
        order = refund.order
        order.refunded_amount += refund.amount
        order.save(update_fields=["refunded_amount", "updated_at"])
    order_event(
        refund.order,
        refund=refund,
        kind="refund_status_changed",
        source=source,
        from_status=from_status,
        to_status=to_status,
        data=data,
    )
    return ApplyResult.APPLIED


def refund_apply_gateway_state(*, refund_id: int, info: RefundInfo, source: str) -> ApplyResult:
    """Apply what the gateway says about a refund, under the order's then the refund's row lock."""
    with refund_locked(refund_id=refund_id) as (order, refund):
        refund.order = order
        if (info.price_currency and info.price_currency.upper() != refund.currency) or (
            info.order_amount is not None and info.order_amount != refund.amount
        ):
            order_event(
                order,
                refund=refund,
                kind="conflict",
                source=source,
                message="gateway refund amount or currency differs from ours",
                data=info.data,
            )
            return ApplyResult.CONFLICT
        if info.trans_no and not refund.trans_no:
            refund.trans_no = info.trans_no
        refund.gateway_trans_status = info.trans_status
        refund.not_found_since = None
        return refund_transition(refund, refund_status_from_gateway(info.trans_status), source=source, data=info.data)


def refund_sync(*, refund: Refund, source: str = "sync", client=None, now: datetime | None = None) -> ApplyResult:
    """
    Ask the gateway about the refund now and apply the answer (``client``: e.g. a rate-limited one; ``now``:
    the reconciler's clock for the not-found grace period).
    """
    client = client or gateway_client_for(refund.account)
    try:
        info = client.query_refund(merchant_order_no=refund.merchant_order_no)
    except GatewayError as exc:
        if not is_order_not_found(exc):
            raise
        return refund_mark_not_found(refund_id=refund.pk, source=source, now=now)
    return refund_apply_gateway_state(refund_id=refund.pk, info=info, source=source)


def refund_mark_not_found(*, refund_id: int, source: str, now: datetime | None = None) -> ApplyResult:
    """
    A refund the gateway does not know, past the grace period (counted on ``now``, the current time by
    default), never reached it: it failed and frees its amount.
    """
    now = now or timezone.now()
    with refund_locked(refund_id=refund_id) as (order, refund):
        refund.order = order
        if refund.not_found_since is None:
            refund.not_found_since = now
            refund.save(update_fields=["not_found_since", "updated_at"])
        if refund.status == RefundStatus.UNKNOWN and now - refund.not_found_since >= timedelta(
            seconds=settings.CODEPAY_UNKNOWN_GRACE_SECONDS
        ):
            refund.gateway_code = ORDER_NOT_FOUND_CODE
            refund.gateway_message = "The gateway never received this refund; request it again."
            return refund_transition(refund, RefundStatus.FAILED, source=source)
        return ApplyResult.UNCHANGED
