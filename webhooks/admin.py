"""
Notification deliveries in the admin: evidence to read, never to edit (HOUSE_STYLE.md, "Admin").

Nothing about a delivery can be added, changed or deleted here. The one action, replay, goes through
``notification_replay`` (the same service the apply task uses) and leaves a NotificationReplay row and an
admin log entry. Bodies are shown escaped; the list loads its accounts, orders and refunds in one query.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from payments.admin import status_badge
from payments.gateway import signing

from .models import NotificationDelivery, NotificationReplay
from .services import notification_replay


def _admin_link(obj, label: str) -> str:
    if obj is None:
        return "-"
    try:
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return label
    return format_html('<a href="{}">{}</a>', url, label)


def _pretty(text: str) -> str:
    """A flat JSON body one field a line, each value exactly as sent (numbers are not re-formatted)."""
    try:
        if not isinstance(json.loads(text), dict):
            return text
        raw = signing.raw_top_level_values(text)
    except ValueError:
        return text
    lines = [f"  {json.dumps(key, ensure_ascii=False)}: {value}" for key, value in raw.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


class NotificationReplayInline(admin.TabularInline):
    model = NotificationReplay
    extra = 0
    can_delete = False
    fields = ("created_at", "actor", "status_before", "status_after", "result", "message")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(admin.ModelAdmin):
    # Seven short columns, readable at 1,366 px; account, trans_no and next attempt are on the detail page.
    list_display = (
        "id",
        "received_at",
        "order_number",
        "trans_status",
        "verification_badge",
        "status_badge",
        "attempts",
    )
    list_filter = ("verification", "status", "body_truncated", "account_code", "received_at")
    search_fields = ("=merchant_order_no", "=trans_no")
    list_select_related = ("account", "order", "refund")
    date_hierarchy = "received_at"
    ordering = ("-received_at", "-id")
    actions = ["replay"]
    inlines = [NotificationReplayInline]
    fieldsets = (
        (
            "Delivery",
            {"fields": ("received_at", "account", "account_code", "source_address", "content_type", "headers")},
        ),
        ("Body", {"fields": ("body_size", "body_truncated", "pretty_body", "payload")}),
        ("Verification", {"fields": ("verification", "verified_with", "verification_detail", "fingerprint")}),
        ("Transaction", {"fields": ("merchant_order_no", "trans_no", "trans_type", "trans_status")}),
        (
            "Processing",
            {
                "fields": (
                    "status",
                    "result",
                    "confirmed_trans_status",
                    "status_message",
                    "attempts",
                    "last_attempt_at",
                    "next_attempt_at",
                    "processed_at",
                    "last_error",
                    "last_traceback_text",
                    "order_link",
                    "refund_link",
                )
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        return [field for section in self.fieldsets for field in section[1]["fields"]]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm("webhooks.replay_notificationdelivery")

    class Media:
        css = {"all": ("payments/admin.css",)}

    @admin.display(description="Verification", ordering="verification")
    def verification_badge(self, delivery: NotificationDelivery) -> str:
        return status_badge(delivery.verification, delivery.get_verification_display())

    @admin.display(description="Status", ordering="status")
    def status_badge(self, delivery: NotificationDelivery) -> str:
        return status_badge(delivery.status)

    @admin.display(description="Merchant order no", ordering="merchant_order_no")
    def order_number(self, delivery: NotificationDelivery) -> str:
        """The number the delivery carried, linked to its order once it matched one."""
        return (
            _admin_link(delivery.order, delivery.merchant_order_no)
            if delivery.order
            else delivery.merchant_order_no or "-"
        )

    @admin.display(description="Order", ordering="order__merchant_order_no")
    def order_link(self, delivery: NotificationDelivery) -> str:
        return _admin_link(delivery.order, delivery.order.merchant_order_no if delivery.order else "")

    @admin.display(description="Refund")
    def refund_link(self, delivery: NotificationDelivery) -> str:
        return _admin_link(delivery.refund, delivery.refund.merchant_order_no if delivery.refund else "")

    @admin.display(description="Raw body")
    def pretty_body(self, delivery: NotificationDelivery) -> str:
        raw = bytes(delivery.raw_body or b"")
        text = raw.decode("utf-8", errors="replace")
        note = " (truncated)" if delivery.body_truncated else ""
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre><p>{} bytes{}</p>', _pretty(text), len(raw), note
        )

    @admin.display(description="Last traceback")
    def last_traceback_text(self, delivery: NotificationDelivery) -> str:
        """The whole traceback of the last failure, as Python printed it (indentation kept)."""
        if not delivery.last_traceback:
            return "-"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', delivery.last_traceback)

    @admin.action(description="Replay selected deliveries (safe: idempotent)", permissions=["replay"])
    def replay(self, request, queryset) -> None:
        outcomes = notification_replay(
            delivery_ids=list(queryset.values_list("pk", flat=True)), actor=f"admin:{request.user.get_username()}"
        )
        deliveries = {delivery.pk: delivery for delivery in queryset}
        for outcome in outcomes:
            self.log_change(
                request,
                deliveries[outcome.delivery_id],
                f"Replayed: {outcome.status_before} -> {outcome.status_after} ({outcome.message})"[:200],
            )
        changed = sum(1 for outcome in outcomes if outcome.changed)
        self.message_user(
            request, f"Replayed {len(outcomes)} deliveries; {changed} changed status.", level=messages.SUCCESS
        )
