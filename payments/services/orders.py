"""
Orders: create on any channel, apply what the gateway says, sync, and "never reached the gateway".

Why an order row is written before the gateway is called: if the process dies or the call times out,
the row is already there as ``unknown`` and the reconciler resolves it by query. A create is never
lost and never resent. Gateway calls happen outside database transactions, so no row lock is held
while waiting on the network and the audit record of the call is committed whatever happens next.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Model, Sum
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from codepay_service.errors import (
    DuplicateMerchantOrderNo,
    Misconfigured,
)
from codepay_service.instruments import CONFLICTS
from codepay_service.rows import row_insert, row_update_then_insert, rows_insert_together
from payments.events.services import event_record
from payments.gateway.client import CardDetails
from payments.gateway.errors import (
    GatewayError,
    GatewayOutcomeUnknown,
    GatewayRequestNotSent,
    is_order_not_found,
)
from payments.gateway.methods import ORDER_NOT_FOUND_CODE, TransStatus
from payments.gateway.methods import TransType as GatewayTransType
from payments.gateway.money import amount_maximum, format_amount
from payments.gateway.results import OrderInfo
from payments.locks import order_locked
from payments.models import (
    ApiKey,
    Channel,
    MerchantAccount,
    MerchantOrderNumber,
    Order,
    OrderEvent,
    OrderStatus,
    Refund,
    RefundStatus,
    TransType,
)
from payments.services.accounts import gateway_client_for, store_no_resolve
from payments.services.checks import next_check_at
from payments.services.gateway_errors import client_error, failure_reason
from payments.services.results import WriteResult
from payments.services.waits import order_settled_publish_on_commit
from payments.state_machine import ORDER_FINAL_STATUSES, ORDER_OPEN_STATUSES, order_can_move, order_status_from_gateway

logger = logging.getLogger(__name__)

# Keyed by the stored value: TransType members are the same strings.
_GATEWAY_TRANS_TYPE: dict[str, GatewayTransType] = {
    TransType.SALE: GatewayTransType.SALE,
    TransType.AUTH: GatewayTransType.PRE_AUTH,
    TransType.CASHBACK: GatewayTransType.CASHBACK,
}


class ApplyResult(enum.Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    STALE = "stale"
    CONFLICT = "conflict"


def merchant_order_no_generate() -> str:
    """A fresh number within the gateway's rule (``payments.gateway.vocabulary``: <= 32 of letters, digits and
    _-|*@)."""
    return f"CP{timezone.now():%Y%m%d%H%M%S}{secrets.token_hex(6).upper()}"


# The unique constraints that refuse a number already used: the reservation's, and the order's and refund's own.
_NUMBER_TAKEN = frozenset(
    {"merchant_order_no_unique_per_account", "order_merchant_order_no_unique", "refund_merchant_order_no_unique"}
)


def merchant_order_no_reserve(
    *,
    account: MerchantAccount,
    merchant_order_no: str,
    kind: str,
    together: Sequence[Model] = (),
    links: dict[int, dict[str, int]] | None = None,
) -> None:
    """
    Take a number for this account, and store the new rows that use it (``together``) in the same statement:
    all of them or none. ``links`` (indexes into ``together``) lets a row take an earlier one's new primary key.
    Raises DuplicateMerchantOrderNo if anything already used the number. Inside a transaction the insert
    gets a savepoint, so a refusal leaves the caller's transaction usable; outside one it is a statement on
    its own, atomic without the savepoint's round trips.
    """
    number = MerchantOrderNumber(account=account, merchant_order_no=merchant_order_no, kind=kind)
    shifted = {index + 1: {name: earlier + 1 for name, earlier in row.items()} for index, row in (links or {}).items()}
    in_transaction = transaction.get_connection().in_atomic_block
    try:
        with transaction.atomic() if in_transaction else contextlib.nullcontext():
            rows_insert_together([number, *together], links=shifted)
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) not in _NUMBER_TAKEN:
            raise
        raise DuplicateMerchantOrderNo(
            f"merchant_order_no '{merchant_order_no}' is already used for this merchant account; send a new one.",
            details={"merchant_order_no": ["Already used for this merchant account."]},
        ) from None


def merchant_order_no_release(*, account_id: int, merchant_order_no: str) -> None:
    """Give a number back. Only for a row that never reached the gateway, so that its retry may use it again."""
    MerchantOrderNumber.objects.filter(account_id=account_id, merchant_order_no=merchant_order_no).delete()


def order_event(
    order: Order,
    *,
    kind: str,
    source: str,
    message: str = "",
    from_status: str = "",
    to_status: str = "",
    data: dict | None = None,
    refund=None,
) -> None:
    """
    One line of the order's story, in the caller's transaction; the same transaction writes the outbound
    event it implies (payments.events) and, on commit, tells waiting clients (payments.services.waits).
    """
    if kind == "conflict":
        CONFLICTS.labels(source=source).inc()
    event_record(order=order, refund=refund, kind=kind, from_status=from_status, to_status=to_status, message=message)
    if kind == "status_changed" and to_status not in ORDER_OPEN_STATUSES:
        order_settled_publish_on_commit(order_id=order.pk)
    row_insert(
        order_event_row(
            order,
            kind=kind,
            source=source,
            message=message,
            from_status=from_status,
            to_status=to_status,
            data=data,
            refund=refund,
        )
    )


def order_event_row(
    order: Order,
    *,
    kind: str,
    source: str,
    message: str = "",
    from_status: str = "",
    to_status: str = "",
    data: dict | None = None,
    refund=None,
) -> OrderEvent:
    """The ``OrderEvent`` row of one line of the order's story, not yet stored."""
    return OrderEvent(
        order=order,
        refund=refund,
        kind=kind,
        source=source,
        message=message[:255],
        from_status=from_status,
        to_status=to_status,
        data=data or {},
    )


# A card order's details pass through here and every frame below (the client, the card encryption):
# Django's error reports hide the variables of all of them (the nearest marked caller decides).
@sensitive_variables()
def order_create(
    *,
    account: MerchantAccount,
    api_key: ApiKey | None,
    channel: str,
    amount: Decimal,
    currency: str,
    description: str,
    merchant_order_no: str = "",
    attach: str = "",
    expires_in: int = 300,
    store_no: str = "",
    trans_type: str = TransType.SALE,
    tip_amount: Decimal = Decimal("0"),
    cashback_amount: Decimal = Decimal("0"),
    terminal_sn: str = "",
    pay_scenario: str = "",
    pay_method_id: str = "",
    options: dict[str, Any] | None = None,
    card: CardDetails | None = None,
) -> WriteResult[Order]:
    """Store the order, send it to the gateway, and record the answer; ``unknown`` when there is none."""
    options = options or {}
    store_no = store_no_resolve(account=account, api_key=api_key, requested=store_no)
    merchant_order_no = merchant_order_no or merchant_order_no_generate()
    now = timezone.now()

    order = Order(
        account=account,
        api_key=api_key,
        merchant_order_no=merchant_order_no,
        channel=channel,
        trans_type=trans_type,
        status=OrderStatus.UNKNOWN,
        currency=currency,
        amount=amount,
        tip_amount=tip_amount,
        cashback_amount=cashback_amount,
        description=description,
        attach=attach,
        store_no=store_no,
        terminal_sn=terminal_sn,
        pay_scenario=pay_scenario,
        pay_method_id=pay_method_id,
        options=options,
        expires_in=expires_in,
        expires_at=now + timedelta(seconds=expires_in),
        next_check_at=next_check_at(0, now=now),
    )
    # "created" implies no outbound event and wakes no waiting client: its row is all ``order_event`` would write.
    created = order_event_row(
        order,
        kind="created",
        source="api",
        to_status=OrderStatus.UNKNOWN,
        message=f"{channel} order stored before sending",
    )
    # The number, the order and its first event in one statement (one round trip, one commit): all or none.
    merchant_order_no_reserve(
        account=account,
        merchant_order_no=merchant_order_no,
        kind="order",
        together=[order, created],
        links={1: {"order": 0}},
    )

    try:
        client = gateway_client_for(account)
        answer = _send_create(client, order, card=card)
    except (GatewayError, Misconfigured) as exc:
        _record_create_failure(order, exc)
        order.refresh_from_db()
        return WriteResult(obj=order, outcome_unknown=True)

    trans_status = answer.get("trans_status") or TransStatus.CREATED.value
    if _record_create_answer_unknown_to_pending(order, answer, trans_status):
        return WriteResult(obj=order, outcome_unknown=False)
    with order_locked(order_id=order.pk) as order:
        order.trans_no = answer.get("trans_no", "")
        order.pay_url = answer.get("pay_url", "")
        order.redirect_url_3dsecure = answer.get("redirect_url_3dsecure", "")
        order.terminal_online_status = answer.get("terminal_online_status", "")
        order.pay_method_id = answer.get("pay_method_id") or order.pay_method_id
        order.gateway_code, order.gateway_message = "0", "success"
        _record_decline(order, code=answer.get("trans_error_code", ""), message=answer.get("trans_error_msg", ""))
        order.save()
        order_transition(
            order,
            order_status_from_gateway(trans_status, order.trans_type),
            source="api",
            message="gateway accepted the order",
            gateway_trans_status=trans_status,
        )
    return WriteResult(obj=order, outcome_unknown=False)


def _record_create_answer_unknown_to_pending(order: Order, answer: dict[str, str], trans_status: str) -> bool:
    """
    The common answer to a create, applied in one statement, a conditional UPDATE and its event: the gateway took
    the order and it waits for payment. The UPDATE's ``WHERE status = 'unknown'`` takes the row lock and
    checks the transition in the database, so nothing that moved the order meanwhile (a notification, the
    reconciler) is overwritten; then False, and the caller applies the answer under ``select_for_update``
    like any other. Answers that move money (authorized, succeeded) always take that path.
    """
    to_status = order_status_from_gateway(trans_status, order.trans_type)
    if to_status != OrderStatus.PENDING or order.status != OrderStatus.UNKNOWN:
        return False
    fields = {
        "trans_no": answer.get("trans_no", ""),
        "pay_url": answer.get("pay_url", ""),
        "redirect_url_3dsecure": answer.get("redirect_url_3dsecure", ""),
        "terminal_online_status": answer.get("terminal_online_status", ""),
        "pay_method_id": answer.get("pay_method_id") or order.pay_method_id,
        "gateway_code": "0",
        "gateway_message": "success",
        "gateway_trans_status": trans_status,
        "status": to_status,
        "updated_at": timezone.now(),
    }
    # A move to pending implies no outbound event and wakes no waiting client (``order_event``): the
    # update and its event row are the whole change, in one statement.
    moved = order_event_row(
        order,
        kind="status_changed",
        source="api",
        from_status=OrderStatus.UNKNOWN,
        to_status=to_status,
        message="gateway accepted the order",
    )
    if not row_update_then_insert(
        Order.objects.filter(pk=order.pk, status=OrderStatus.UNKNOWN), fields, moved, link="order"
    ):
        return False
    for name, value in fields.items():
        setattr(order, name, value)
    return True


def _send_create(client, order: Order, *, card: CardDetails | None) -> dict[str, str]:
    common = {
        "merchant_order_no": order.merchant_order_no,
        "amount": order.amount,
        "currency": order.currency,
        "description": order.description,
        "expires": order.expires_in,
        "store_no": order.store_no,
        "attach": order.attach,
    }
    options = order.options
    if order.channel == Channel.TERMINAL:
        result = client.create_cloud_order(
            **common,
            terminal_sn=order.terminal_sn,
            trans_type=_GATEWAY_TRANS_TYPE[order.trans_type].value,
            tip_amount=order.tip_amount or None,
            cashback_amount=order.cashback_amount or None,
            pay_scenario=order.pay_scenario,
            pay_method_id=order.pay_method_id,
            card_type=options.get("card_type", ""),
            on_screen_tip=options.get("on_screen_tip"),
            on_screen_signature=options.get("on_screen_signature"),
            confirm_on_terminal=options.get("confirm_on_terminal"),
            reject_when_terminal_offline=options.get("reject_when_terminal_offline"),
            receipt_print_mode=options.get("receipt_print_mode"),
        )
        return {"trans_no": result.trans_no, "terminal_online_status": result.terminal_online_status}
    if order.channel == Channel.CHECKOUT:
        result = client.create_checkout(
            **common, return_url=options.get("return_url", ""), order_detail=options.get("order_detail")
        )
        return {"trans_no": result.trans_no, "pay_url": result.pay_url}
    result = client.create_card_checkout(
        **common, card=card, billing_address=options["billing_address"], return_url=options.get("return_url", "")
    )
    return {
        "trans_no": result.trans_no,
        "trans_status": result.trans_status,
        "pay_method_id": result.pay_method_id,
        "redirect_url_3dsecure": result.redirect_url_3dsecure,
        "trans_error_code": result.trans_error_code,
        "trans_error_msg": result.trans_error_msg,
    }


def _record_create_failure(order: Order, exc: GatewayError | Misconfigured) -> None:
    """
    Record why a create did not succeed, then raise the client's error (unknown outcome: return quietly).

    A create that never left this machine is forgotten instead, its merchant_order_no released: the
    client was told nothing was sent, so its retry (same Idempotency-Key, same body, same number) must
    find nothing in its way. The gateway call audit (GatewayCall) and the log keep the trace.
    """
    if isinstance(exc, GatewayRequestNotSent):
        logger.warning(
            "order not sent, number released",
            extra={"merchant_order_no": order.merchant_order_no, "reason": failure_reason(exc)[1]},
        )
        with transaction.atomic():
            Order.objects.filter(pk=order.pk).delete()
            merchant_order_no_release(account_id=order.account_id, merchant_order_no=order.merchant_order_no)
        raise client_error(
            exc,
            action="order",
            not_sent="; nothing was kept. Retry, with the same merchant_order_no if you like.",
            details={"merchant_order_no": order.merchant_order_no},
        )
    with order_locked(order_id=order.pk) as order:
        order.gateway_code, order.gateway_message = failure_reason(exc)
        if isinstance(exc, GatewayOutcomeUnknown):
            order.save(update_fields=["gateway_code", "gateway_message", "updated_at"])
            order_event(order, kind="outcome_unknown", source="api", message=exc.message)
            return
        order.failure_code, order.failure_message = order.gateway_code, order.gateway_message
        order.save(update_fields=["gateway_code", "gateway_message", "failure_code", "failure_message", "updated_at"])
        order_transition(order, OrderStatus.FAILED, source="api", message=order.gateway_message)
    raise client_error(
        exc,
        action="order",
        not_sent=" and is marked failed. Retry with a new merchant_order_no.",
        details={"merchant_order_no": order.merchant_order_no},
    )


def order_transition(
    order: Order,
    to_status: str | None,
    *,
    source: str,
    message: str = "",
    gateway_trans_status: str = "",
    data: dict | None = None,
) -> ApplyResult:
    """The one place an order's status changes. The caller holds the row lock."""
    if gateway_trans_status:
        order.gateway_trans_status = gateway_trans_status
    if to_status is None or to_status == order.status:
        order.save()
        return ApplyResult.UNCHANGED
    if not order_can_move(order.status, to_status):
        order.save()
        order_event(
            order,
            kind="stale_status_ignored",
            source=source,
            from_status=order.status,
            to_status=to_status,
            message=message,
            data=data,
        )
        return ApplyResult.STALE
    from_status = order.status
    order.status = to_status
    if to_status == OrderStatus.AUTHORIZED and not order.authorized_amount:
        order.authorized_amount = order.amount
    if to_status == OrderStatus.SUCCEEDED and not order.paid_amount:
        order.paid_amount = order.captured_amount or (order.amount + order.tip_amount + order.cashback_amount)
    if to_status == OrderStatus.SUCCEEDED and order.paid_at is None:
        order.paid_at = timezone.now()
    if to_status in ORDER_FINAL_STATUSES:
        order.next_check_at = None
    order.save()
    order_event(
        order,
        kind="status_changed",
        source=source,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data,
    )
    return ApplyResult.APPLIED


def order_apply_gateway_state(*, order_id: int, info: OrderInfo, source: str) -> ApplyResult:
    """
    Apply what the gateway says about an order (a query answer or a confirmed notification).

    Under the order's row lock; never moves backwards; an amount or currency that differs from ours
    changes nothing and is recorded as a conflict for an operator.
    """
    with order_locked(order_id=order_id) as order:
        mismatch = _amount_mismatch(order, info)
        if mismatch:
            order_event(order, kind="conflict", source=source, message=mismatch, data=info.data)
            logger.warning(
                "gateway amount conflict", extra={"merchant_order_no": order.merchant_order_no, "source": source}
            )
            return ApplyResult.CONFLICT
        if info.trans_no and not order.trans_no:
            order.trans_no = info.trans_no
        if info.pay_method_id:
            order.pay_method_id = info.pay_method_id
        order.not_found_since = None
        to_status = order_status_from_gateway(info.trans_status, order.trans_type)
        if to_status in (OrderStatus.FAILED, OrderStatus.CANCELLED):
            _record_decline(order, code=info.trans_error_code, message=info.trans_error_msg)
        if to_status == OrderStatus.SUCCEEDED and order.status != OrderStatus.SUCCEEDED and not order.captured_amount:
            mismatch = _adopt_paid_amounts(order, info)
            if mismatch:
                order_event(order, kind="conflict", source=source, message=mismatch, data=info.data)
                return ApplyResult.CONFLICT
        return order_transition(order, to_status, source=source, gateway_trans_status=info.trans_status, data=info.data)


def _record_decline(order: Order, *, code: str, message: str) -> None:
    """Keep why the payment failed, as the gateway said it (trans_error_code / trans_error_msg)."""
    if code or message:
        order.failure_code, order.failure_message = code[:32], message[:255]


def _adopt_paid_amounts(order: Order, info: OrderInfo) -> str:
    """
    Take what the customer really paid from the gateway: a tip entered on the terminal screen changes it,
    and so do the discounts and the fee order.query reports (docs/protocol.md, "Amounts the gateway
    reports"). The parts must add up (order + tip + cashback - discounts + fee = paid); otherwise nothing
    is taken and the caller records a conflict.
    """
    tip = info.tip_amount if info.tip_amount is not None else order.tip_amount
    paid = info.paid_amount if info.paid_amount is not None else info.trans_amount
    if paid is None:
        return ""
    zero = Decimal("0")
    discount_bpc, discount_bmopc, fee = (
        value or zero for value in (info.discount_bpc, info.discount_bmopc, info.trans_fee_c)
    )
    expected = order.amount + tip + order.cashback_amount - discount_bpc - discount_bmopc + fee
    if paid != expected:
        return (
            f"gateway paid_amount {paid} is not order {order.amount} + tip {tip} + cashback {order.cashback_amount}"
            f" - discounts {discount_bpc} and {discount_bmopc} + fee {fee}"
        )
    if paid > amount_maximum(order.currency):
        # A tip typed on the terminal can push the total past what the service stores exactly.
        return f"gateway paid_amount {paid} exceeds the maximum of {amount_maximum(order.currency)} {order.currency}"
    order.tip_amount, order.paid_amount = tip, paid
    order.discount_bpc, order.discount_bmopc, order.trans_fee_c = discount_bpc, discount_bmopc, fee
    return ""


def order_note_notified_amounts(*, order_id: int, notified: OrderInfo, source: str) -> str:
    """
    A validly signed notification whose amount or currency differs from the order is recorded as a conflict
    for an operator, even when the confirming query then settles the order: the gateway said two things.
    Answers the difference ("" when there is none). The caller holds the order's row lock.
    """
    order = Order.objects.get(pk=order_id)
    mismatch = _amount_mismatch(order, notified)
    if mismatch:
        order_event(order, kind="conflict", source=source, message=f"notification: {mismatch}", data=notified.data)
    return mismatch


def _amount_mismatch(order: Order, info: OrderInfo) -> str:
    if info.price_currency and info.price_currency.upper() != order.currency:
        return f"gateway currency {info.price_currency} differs from ours ({order.currency})"
    if info.order_amount is not None and info.order_amount != order.amount:
        return (
            f"gateway order_amount {info.order_amount} differs from ours "
            f"({format_amount(order.amount, order.currency)})"
        )
    return ""


def order_sync(*, order: Order, source: str = "sync") -> ApplyResult:
    """Ask the gateway about the order now and apply the answer; a gateway that does not know it is recorded."""
    client = gateway_client_for(order.account)
    try:
        info = client.query_order(merchant_order_no=order.merchant_order_no)
    except GatewayError as exc:
        if not is_order_not_found(exc):
            raise
        return order_mark_not_found(order_id=order.pk, source=source)
    return order_apply_gateway_state(order_id=order.pk, info=info, source=source)


def order_mark_not_found(*, order_id: int, source: str, now: datetime | None = None) -> ApplyResult:
    """
    The gateway does not know this order. Right after a create this can be transient (docs/protocol.md,
    "Responses"), so an ``unknown`` order only becomes ``failed`` once it stays unknown past a grace period
    (counted on ``now``: the reconciler's clock, the current time by default).
    """
    grace = timedelta(seconds=settings.CODEPAY_UNKNOWN_GRACE_SECONDS)
    now = now or timezone.now()
    # The first "not found" only starts the grace period: one conditional UPDATE, no lock held around it.
    if grace and Order.objects.filter(pk=order_id, not_found_since__isnull=True).update(
        not_found_since=now, updated_at=now
    ):
        return ApplyResult.UNCHANGED
    with order_locked(order_id=order_id) as order:
        if order.not_found_since is None:
            order.not_found_since = now
            order.save(update_fields=["not_found_since", "updated_at"])
        if order.status == OrderStatus.UNKNOWN and now - order.not_found_since >= grace:
            order.gateway_code = order.failure_code = ORDER_NOT_FOUND_CODE
            order.gateway_message = (
                "The gateway never received this order; create it again with a new merchant_order_no."
            )
            order.failure_message = order.gateway_message
            return order_transition(order, OrderStatus.FAILED, source=source, message=order.gateway_message)
        return ApplyResult.UNCHANGED


def order_refunds_reserved(order: Order) -> Decimal:
    """What the order's refunds hold: succeeded ones, and pending or unknown ones that may yet succeed."""
    total = (
        Refund.objects.filter(order=order).exclude(status=RefundStatus.FAILED).aggregate(total=Sum("amount"))["total"]
    )
    return total or Decimal("0")
