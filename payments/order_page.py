"""
Reads for the admin's order page: a summary an operator can take in at a glance, and one timeline.

The timeline merges three sources in time order: the order's events (status changes, conflicts, admin
actions), every gateway call made about the order (its own, its refunds' and operations' numbers, and the
calls addressed by ``trans_no`` only: incremental authorization and tip adjustment by trans_no), and
whatever other apps register as a provider. Notification deliveries live in ``webhooks``, which imports
``payments`` and never the reverse, so the webhooks app registers its deliveries here at start-up
(``order_timeline_provider_register``) instead of this module querying a model it must not know.

Each source costs one query, whatever the number of rows: the page never makes a query per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q
from django.urls import reverse

from payments.gateway.money import format_amount
from payments.models import GatewayCall, Order, OrderEvent, OrderOperation, OrderStatus, Refund


@dataclass(frozen=True, kw_only=True)
class TimelineEntry:
    """One line of the order's timeline; ``url`` opens its detail in the admin."""

    at: datetime
    source: str  # "event", "gateway call" or "notification"
    title: str
    outcome: str = ""
    detail: str = ""
    url: str = ""


TimelineProvider = Callable[[Order], list[TimelineEntry]]
_PROVIDERS: list[TimelineProvider] = []


def order_timeline_provider_register(provider: TimelineProvider) -> None:
    """Add a source of timeline entries (called once per process from an AppConfig.ready); idempotent."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)


@dataclass(frozen=True, kw_only=True)
class OrderSummary:
    status: str
    status_label: str
    currency: str
    amount: str
    tip: str
    paid: str
    authorized: str
    captured: str
    refunded: str
    refundable: str
    paid_with: str
    decline_reason: str


def _money(order: Order, amount: Decimal) -> str:
    return f"{format_amount(amount, order.currency)} {order.currency}"


def order_decline_reason(order: Order) -> str:
    """Why the gateway refused the order, as stored; empty unless the order failed."""
    # Orders may carry failure_code / failure_message columns; where they do not (or they are empty),
    # a failed order's last gateway answer is its reason.
    code = getattr(order, "failure_code", "") or ""
    message = getattr(order, "failure_message", "") or ""
    if not (code or message) and order.status == OrderStatus.FAILED:
        code, message = order.gateway_code, order.gateway_message
    if not (code or message):
        return ""
    return f"{message} (code {code})" if code and message else message or f"code {code}"


def order_summary(*, order: Order, refundable: Decimal) -> OrderSummary:
    """What an operator reads first: status, amounts in the currency's digits, how it was paid, why it failed."""
    paid_with = " · ".join(part for part in (order.pay_method_id, order.pay_scenario) if part) or "-"
    return OrderSummary(
        status=order.status,
        status_label=order.get_status_display(),
        currency=order.currency,
        amount=_money(order, order.amount),
        tip=_money(order, order.tip_amount),
        paid=_money(order, order.paid_amount),
        authorized=_money(order, order.authorized_amount),
        captured=_money(order, order.captured_amount),
        refunded=_money(order, order.refunded_amount),
        refundable=_money(order, refundable),
        paid_with=paid_with,
        decline_reason=order_decline_reason(order),
    )


def _admin_url(model_name: str, pk: int) -> str:
    return reverse(f"admin:payments_{model_name}_change", args=[pk])


def _event_entries(order: Order) -> list[TimelineEntry]:
    entries = []
    for event in OrderEvent.objects.filter(order=order).select_related("refund").order_by("created_at", "id"):
        move = f"{event.from_status or '·'} → {event.to_status}" if event.to_status else ""
        subject = f"refund {event.refund.merchant_order_no}: " if event.refund else ""
        entries.append(
            TimelineEntry(
                at=event.created_at,
                source="event",
                title=f"{subject}{event.kind.replace('_', ' ')}",
                outcome=move,
                detail=" ".join(part for part in (event.message, f"({event.source})") if part),
                url=_admin_url("orderevent", event.pk),
            )
        )
    return entries


def order_gateway_calls(order: Order):
    """
    Every call about this order: by its number or a refund's or operation's number (subqueries, one
    query), or by its trans_no for the calls that carry no merchant_order_no (increment, tip by trans_no).
    """
    numbers = Q(merchant_order_no=order.merchant_order_no)
    numbers |= Q(merchant_order_no__in=Refund.objects.filter(order=order).values("merchant_order_no"))
    numbers |= Q(
        merchant_order_no__in=OrderOperation.objects.filter(order=order)
        .exclude(merchant_order_no="")
        .values("merchant_order_no")
    )
    if order.trans_no:
        numbers |= Q(merchant_order_no="", request__trans_no=order.trans_no)
    # Nothing about an order is sent before it was stored; the bound lets the created_at index do the work.
    return GatewayCall.objects.filter(numbers, account_id=order.account_id, created_at__gte=order.created_at)


def _gateway_call_entries(order: Order) -> list[TimelineEntry]:
    entries = []
    for call in order_gateway_calls(order).order_by("created_at", "id"):
        code = f"code {call.gateway_code}" if call.gateway_code else ""
        number = call.merchant_order_no if call.merchant_order_no != order.merchant_order_no else ""
        entries.append(
            TimelineEntry(
                at=call.created_at,
                source="gateway call",
                title=" ".join(part for part in (call.method, number) if part),
                outcome=" ".join(part for part in (call.outcome, code) if part),
                detail=f"{call.duration_ms} ms" + (f" · {call.gateway_message}" if call.gateway_message else ""),
                url=_admin_url("gatewaycall", call.pk),
            )
        )
    return entries


def order_timeline(*, order: Order) -> list[TimelineEntry]:
    """Events, gateway calls and registered sources of one order, oldest first (ties keep source order)."""
    entries = _event_entries(order) + _gateway_call_entries(order)
    for provider in _PROVIDERS:
        entries.extend(provider(order))
    return sorted(entries, key=lambda entry: entry.at)
