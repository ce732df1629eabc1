"""
Outbound events in the admin: endpoints (with the "disabled for failing" flag), the events, and the
delivery log with a replay action. Events, deliveries and attempts are read-only; replay and re-enable go
through the services and are recorded in the admin's log under the operator's name.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import models

from payments.admin import ReadOnlyAdminMixin
from payments.events.models import Event, EventDelivery, EventDeliveryAttempt, EventEndpoint
from payments.events.services import endpoint_enable, event_delivery_replay, new_secret


@admin.register(EventEndpoint)
class EventEndpointAdmin(admin.ModelAdmin):
    list_display = (
        "url",
        "account",
        "store_no",
        "is_active",
        "disabled_for_failing",
        "consecutive_failures",
        "failing_since",
    )
    list_filter = ("is_active", "account")
    list_select_related = ("account",)
    search_fields = ("url", "store_no", "description")
    fields = (
        "account",
        "store_no",
        "url",
        "description",
        "event_types",
        "is_active",
        "disabled_at",
        "disabled_reason",
        "failing_since",
        "consecutive_failures",
        "previous_secret_expires_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = (
        "disabled_at",
        "disabled_reason",
        "failing_since",
        "consecutive_failures",
        "previous_secret_expires_at",
        "created_at",
        "updated_at",
    )
    actions = ["enable_endpoints"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(boolean=True, description="Disabled for failing")
    def disabled_for_failing(self, obj: EventEndpoint) -> bool:
        return obj.disabled_at is not None

    def save_model(self, request, obj, form, change):
        if not change:
            # The secret is generated, never typed in, and shown this once.
            obj.secret = new_secret()
        super().save_model(request, obj, form, change)
        if not change:
            self.message_user(request, f"Signing secret for {obj.url} (shown once): {obj.secret}", messages.WARNING)

    @admin.action(description="Re-enable (send what they missed, oldest first)", permissions=["change"])
    def enable_endpoints(self, request, queryset):
        for endpoint in queryset:
            endpoint_enable(endpoint=endpoint)
            self.log_change(request, endpoint, "Re-enabled (through the service)")
        self.message_user(request, f"Re-enabled {queryset.count()} endpoint(s).", messages.SUCCESS)


class EventDeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = EventDeliveryAttempt
    fields = ("created_at", "trigger", "http_status", "error", "duration_ms", "response_excerpt")
    readonly_fields = fields
    extra = 0


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "order",
        "endpoint",
        "status",
        "attempts",
        "last_http_status",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "event__type")
    list_select_related = ("event", "endpoint", "order")
    search_fields = ("order__merchant_order_no", "endpoint__url")
    readonly_fields = (
        "event",
        "endpoint",
        "order",
        "status",
        "attempts",
        "next_attempt_at",
        "leased_until",
        "last_http_status",
        "last_error",
        "delivered_at",
        "created_at",
        "updated_at",
        "body",
    )
    inlines = [EventDeliveryAttemptInline]
    actions = ["replay_deliveries"]

    @admin.display(description="Type", ordering="event__type")
    def event_type(self, obj: EventDelivery) -> str:
        return obj.event.type

    @admin.display(description="Body sent")
    def body(self, obj: EventDelivery) -> str:
        return obj.event.body

    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm("payments.replay_eventdelivery")

    @admin.action(description="Replay (send again now)", permissions=["replay"])
    def replay_deliveries(self, request, queryset):
        outcomes = []
        for delivery in queryset.order_by("event_id"):
            replayed = event_delivery_replay(delivery_id=delivery.pk, actor="admin")
            self.log_change(
                request, delivery, f"Replayed: HTTP {replayed.last_http_status or '-'} {replayed.last_error}".strip()
            )
            outcomes.append(replayed.last_error == "")
        self.message_user(
            request,
            f"Replayed {len(outcomes)}: {sum(outcomes)} delivered.",
            messages.SUCCESS if all(outcomes) else messages.WARNING,
        )


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "type", "order", "refund", "store_no", "created_at")
    list_filter = ("type",)
    list_select_related = ("order", "refund")
    search_fields = ("order__merchant_order_no",)
    fields = ("type", "account", "order", "refund", "store_no", "body", "created_at")
