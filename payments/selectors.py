"""Reads for the API and admin, always scoped to the caller's merchant account and, if bound, its store."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from codepay_service.errors import NotFound
from payments.models import ApiKey, BatchClose, Channel, Order, OrderStatus, Refund
from payments.state_machine import ORDER_OPEN_STATUSES


def _scoped(queryset: QuerySet, api_key: ApiKey, store_field: str = "store_no") -> QuerySet:
    queryset = queryset.filter(account_id=api_key.account_id)
    if api_key.store_no:
        queryset = queryset.filter(**{store_field: api_key.store_no})
    return queryset


class OrderFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    store_no = django_filters.CharFilter()
    terminal_sn = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["status", "channel", "store_no", "terminal_sn", "created_after", "created_before"]


def order_list(*, api_key: ApiKey) -> QuerySet[Order]:
    """The caller's orders, newest first, with refunds fetched in one extra query per page."""
    return _scoped(Order.objects.all(), api_key).prefetch_related("refunds__order").order_by("-created_at", "-id")


def order_get(*, api_key: ApiKey, merchant_order_no: str) -> Order:
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
