"""Reads of notification deliveries for other pages; registered with payments at start-up (see apps.py)."""

from __future__ import annotations

from django.db.models import Q
from django.urls import reverse

from payments.models import Order
from payments.order_page import TimelineEntry
from payments.selectors import order_refund_numbers

from .models import NotificationDelivery


def order_notification_entries(order: Order) -> list[TimelineEntry]:
    """
    Every delivery about an order or its refunds, one query: matched ones by their link, and unmatched or
    rejected ones (no link yet, or never) by the merchant_order_no they carried.
    """
    about = (
        Q(order_id=order.pk)
        | Q(refund__order_id=order.pk)
        | Q(merchant_order_no=order.merchant_order_no)
        | Q(merchant_order_no__in=order_refund_numbers(order_id=order.pk))
    )
    entries = []
    for delivery in NotificationDelivery.objects.filter(about).order_by("received_at", "id"):
        entries.append(
            TimelineEntry(
                at=delivery.received_at,
                source="notification",
                title=(
                    f"notification #{delivery.pk} {delivery.merchant_order_no} "
                    f"trans_status {delivery.trans_status or '-'}"
                ),
                outcome=f"{delivery.verification}, {delivery.status}",
                detail=delivery.status_message,
                url=reverse("admin:webhooks_notificationdelivery_change", args=[delivery.pk]),
            )
        )
    return entries
