"""
Reads for the API and admin, always scoped to the caller's merchant account and, if bound, its store; and
the reads the notification receiver (``webhooks``) makes of orders, refunds and operations, scoped to the
account a notification came for.
"""

from __future__ import annotations

import logging
from datetime import UTC

import django_filters
from django import forms
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField

from codepay_service.errors import NotFound
from payments.models import ApiKey, BatchClose, Channel, Order, OrderOperation, OrderStatus, Refund
from payments.state_machine import (
    ORDER_OPEN_STATUSES,
    order_can_move,
    order_status_from_gateway,
    refund_can_move,
    refund_status_from_gateway,
)

logger = logging.getLogger(__name__)

# What turning a stored value into Python raises when the row holds something the model cannot: on SQLite,
# a decimal past its column's digits (decimal.InvalidOperation is an ArithmeticError).
UNREADABLE_ROW_ERRORS = (ArithmeticError, ValueError, TypeError)


def unreadable_rows(queryset: QuerySet) -> list[int]:
    """
    The ids of the rows of ``queryset`` that cannot be read, each logged. Money columns and bounds make
    such a row impossible through the service; one written around it must cost an operator a log line,
    not the store every list, another order's detail or a reconciliation chunk.
    """
    model = queryset.model
    unreadable = []
    for pk in queryset.order_by().values_list("pk", flat=True):
        try:
            list(model._base_manager.filter(pk=pk))
        except UNREADABLE_ROW_ERRORS as exc:
            logger.error(
                "unreadable row skipped", extra={"model": model._meta.label, "pk": pk, "error": type(exc).__name__}
            )
            unreadable.append(pk)
    return unreadable


def rows_readable(queryset: QuerySet) -> list:
    """The rows of ``queryset``, less any that cannot be read (``unreadable_rows``)."""
    try:
        return list(queryset)
    except UNREADABLE_ROW_ERRORS:
        return list(queryset.exclude(pk__in=unreadable_rows(queryset)))


def _scoped(queryset: QuerySet, api_key: ApiKey, store_field: str = "store_no") -> QuerySet:
    queryset = queryset.filter(account_id=api_key.account_id)
    if api_key.store_no:
        queryset = queryset.filter(**{store_field: api_key.store_no})
    return queryset


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time brought to UTC here: PostgreSQL refuses offsets past ±15:59 that Python accepts."""

    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("Out of range; send a time such as 2026-01-31T09:00:00Z.") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class OrderFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    store_no = django_filters.CharFilter()
    terminal_sn = django_filters.CharFilter()
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["status", "channel", "store_no", "terminal_sn", "created_after", "created_before"]


def order_list(*, api_key: ApiKey) -> QuerySet[Order]:
    """The caller's orders, newest first, with refunds fetched in one extra query per page."""
    return _scoped(Order.objects.all(), api_key).prefetch_related("refunds__order").order_by("-created_at", "-id")


def _no_such_number(merchant_order_no: str) -> bool:
    """A number no row can have (PostgreSQL text holds no NUL): answered 404 without asking the database."""
    return "\x00" in merchant_order_no or len(merchant_order_no) > 64


def order_get(*, api_key: ApiKey, merchant_order_no: str) -> Order:
    if _no_such_number(merchant_order_no):
        raise NotFound(f"No order '{merchant_order_no}' for this API key.")
    order = (
        _scoped(Order.objects.select_related("account"), api_key)
        .prefetch_related("refunds__order", "operations__order")
        .filter(merchant_order_no=merchant_order_no)
        .first()
    )
    if order is None:
        raise NotFound(f"No order '{merchant_order_no}' for this API key.")
    return order


def order_is_settled(*, order_id: int) -> bool:
    """Whether a waiting client can be answered: the order has left pending, processing and unknown."""
    return Order.objects.filter(pk=order_id).exclude(status__in=ORDER_OPEN_STATUSES).exists()


def refund_get(*, api_key: ApiKey, merchant_order_no: str) -> Refund:
    if _no_such_number(merchant_order_no):
        raise NotFound(f"No refund '{merchant_order_no}' for this API key.")
    refund = (
        _scoped(Refund.objects.select_related("order"), api_key, store_field="order__store_no")
        .filter(merchant_order_no=merchant_order_no)
        .first()
    )
    if refund is None:
        raise NotFound(f"No refund '{merchant_order_no}' for this API key.")
    return refund


def batch_close_list(*, api_key: ApiKey) -> QuerySet[BatchClose]:
    return _scoped(BatchClose.objects.all(), api_key).order_by("-created_at", "-id")


def order_refund_numbers(*, order_id: int) -> QuerySet:
    """The merchant_order_no of each of the order's refunds, as a subquery (``__in``) that costs no query of its own."""
    return Refund.objects.filter(order_id=order_id).values("merchant_order_no")


def gateway_target_find(
    *, account_id: int | None, merchant_order_no: str, trans_no: str
) -> Order | Refund | OrderOperation | None:
    """
    What a gateway message is about, by merchant_order_no within the account (trans_no when it has none):
    a refund, an order, or a capture or void (which carries its own merchant_order_no); None when nothing is.
    """
    if merchant_order_no:
        key = {"merchant_order_no": merchant_order_no}
    elif trans_no:
        key = {"trans_no": trans_no}
    else:
        return None
    refund = Refund.objects.filter(account_id=account_id, **key).first()
    if refund is not None:
        return refund
    order = Order.objects.filter(account_id=account_id, **key).first()
    if order is not None:
        return order
    return OrderOperation.objects.filter(order__account_id=account_id, **key).select_related("order").first()


def gateway_status_ahead(*, target: Order | Refund, trans_status: str) -> bool:
    """
    Could the gateway's ``trans_status`` still move the order (or refund) forward from the status it has
    now, by the state machine? Read afresh from the database, not from ``target``.
    """
    if isinstance(target, Refund):
        current = Refund.objects.values_list("status", flat=True).get(pk=target.pk)
        notified = refund_status_from_gateway(trans_status)
        return notified is not None and refund_can_move(current, notified)
    current, trans_type = Order.objects.values_list("status", "trans_type").get(pk=target.pk)
    notified = order_status_from_gateway(trans_status, trans_type)
    return notified is not None and order_can_move(current, notified)
