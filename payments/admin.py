"""
The admin for the people who run the stores' payments: every transaction and its full story.

Orders, refunds, gateway calls and batch closes are read-only. Anything that changes state is an action
that needs its own permission, calls the same service as the API and is recorded in the admin's log under
the operator's name (order actions also leave an event on the order, source "admin"). Merchant accounts
are edited here, except the default one, which mirrors the CODEPAY_* settings.
"""

from __future__ import annotations

from django.contrib import admin, messages
from rest_framework_api_key.admin import APIKeyModelAdmin

from codepay_service.errors import ServiceError
from payments.gateway.errors import GatewayError
from payments.gateway.money import format_amount
from payments.models import (
    ApiKey,
    BatchClose,
    BatchCloseSchedule,
    GatewayCall,
    MerchantAccount,
    Order,
    OrderEvent,
    OrderOperation,
    Refund,
)
from payments.services.batches import batch_close_attempt
from payments.services.operations import order_cancel
from payments.services.orders import order_event, order_sync
from payments.services.refunds import refund_sync


class ReadOnlyAdminMixin:
    """Rows written only by services: visible, never added, edited or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _run_action(modeladmin, request, queryset, action, label):
    """Run a service for each selected row; each attempt is in the admin's log under the operator's name."""
    done, failed = 0, []
    for obj in queryset:
        try:
            action(obj)
            done += 1
            modeladmin.log_change(request, obj, f"{label} (through the service)")
        except (ServiceError, GatewayError) as exc:
            failed.append(f"{obj}: {getattr(exc, 'detail', None) or exc.message}")
            modeladmin.log_change(request, obj, f"{label} failed: {getattr(exc, 'detail', None) or exc.message}")
    if done:
        modeladmin.message_user(request, f"{label}: {done} done.", messages.SUCCESS)
    for line in failed:
        modeladmin.message_user(request, f"{label} failed for {line}", messages.ERROR)


@admin.register(MerchantAccount)
class MerchantAccountAdmin(admin.ModelAdmin):
    """Further accounts are set up here; the default account mirrors the CODEPAY_* settings and is read-only."""

    list_display = ("code", "name", "merchant_no", "app_id", "default_store_no", "sign_type", "is_active")
    search_fields = ("code", "name", "merchant_no", "app_id")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.code == MerchantAccount.DEFAULT_CODE:
            return [field.name for field in MerchantAccount._meta.fields]
        # An account's identity at the gateway does not change once orders point at it.
        return ("code", "app_id", "merchant_no", "created_at", "updated_at") if obj is not None else ("created_at", "updated_at")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "account", "store_no")
    list_select_related = ("account",)
    list_filter = (*APIKeyModelAdmin.list_filter, "account")


class RefundInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Refund
    fields = ("merchant_order_no", "trans_no", "status", "amount", "currency", "reason", "gateway_code", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True


class OperationInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderOperation
    fields = ("kind", "merchant_order_no", "amount", "status", "trans_no", "gateway_code", "gateway_message", "source", "created_at")
    readonly_fields = fields
    extra = 0


class EventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderEvent
    fields = ("created_at", "kind", "source", "from_status", "to_status", "message", "refund")
    readonly_fields = fields
    extra = 0
    verbose_name_plural = "Story"


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("merchant_order_no", "created_at", "channel", "trans_type", "status", "amount_display",
                    "refunded_display", "store_no", "terminal_sn", "trans_no", "account")
    list_filter = ("status", "channel", "trans_type", "store_no", "terminal_sn", ("created_at", admin.DateFieldListFilter), "account")
    search_fields = ("=merchant_order_no", "=trans_no")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
    inlines = (RefundInline, OperationInline, EventInline)
    actions = ("sync_with_gateway", "cancel_orders")
    readonly_fields = [field.name for field in Order._meta.fields]

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, order):
        return f"{format_amount(order.amount, order.currency)} {order.currency}"

    @admin.display(description="Refunded")
    def refunded_display(self, order):
        return f"{format_amount(order.refunded_amount, order.currency)} {order.currency}"

    def _audited(self, request, order, kind):
        order_event(order, kind=kind, source="admin", message=f"by {request.user.get_username()}")

    def has_sync_permission(self, request):
        return request.user.has_perm("payments.sync_order")

    def has_cancel_permission(self, request):
        return request.user.has_perm("payments.cancel_order")

    @admin.action(description="Sync selected orders with CodePay (query now)", permissions=["sync"])
    def sync_with_gateway(self, request, queryset):
        def sync(order):
            self._audited(request, order, "admin_sync")
            order_sync(order=order, source="admin")

        _run_action(self, request, queryset.select_related("account"), sync, "Sync")

    @admin.action(description="Cancel selected orders (close, revoke or void, whichever applies)", permissions=["cancel"])
    def cancel_orders(self, request, queryset):
        def cancel(order):
            self._audited(request, order, "admin_cancel")
            order_cancel(order=order, source="admin")

        _run_action(self, request, queryset.select_related("account"), cancel, "Cancel")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("merchant_order_no", "order", "status", "amount_display", "reason", "trans_no", "created_at")
    list_filter = ("status", "order__store_no", "order__terminal_sn", ("created_at", admin.DateFieldListFilter), "account")
    search_fields = ("=merchant_order_no", "=trans_no", "=order__merchant_order_no")
    list_select_related = ("order", "account")
    readonly_fields = [field.name for field in Refund._meta.fields]
    actions = ("sync_with_gateway",)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, refund):
        return f"{format_amount(refund.amount, refund.currency)} {refund.currency}"

    def has_sync_permission(self, request):
        return request.user.has_perm("payments.sync_refund")

    @admin.action(description="Sync selected refunds with CodePay (query now)", permissions=["sync"])
    def sync_with_gateway(self, request, queryset):
        def sync(refund):
            order_event(refund.order, refund=refund, kind="admin_sync", source="admin", message=f"by {request.user.get_username()}")
            refund_sync(refund=refund, source="admin")

        _run_action(self, request, queryset, sync, "Sync")


@admin.register(GatewayCall)
class GatewayCallAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "method", "merchant_order_no", "outcome", "gateway_code", "duration_ms", "psn")
    list_filter = ("outcome", "method", ("created_at", admin.DateFieldListFilter), "account")
    search_fields = ("=merchant_order_no", "=psn")
    list_select_related = ("account",)
    readonly_fields = [field.name for field in GatewayCall._meta.fields]


@admin.register(BatchCloseSchedule)
class BatchCloseScheduleAdmin(admin.ModelAdmin):
    list_display = ("store_no", "local_time", "time_zone", "weekdays", "enabled", "account")
    list_filter = ("enabled", "account")
    list_select_related = ("account",)


@admin.register(BatchClose)
class BatchCloseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "store_no", "trigger", "status", "attempts", "count", "total_amount", "gateway_code", "business_date")
    list_filter = ("status", "trigger", "store_no", ("created_at", admin.DateFieldListFilter), "account")
    list_select_related = ("account",)
    readonly_fields = [field.name for field in BatchClose._meta.fields]
    actions = ("retry",)

    def has_retry_permission(self, request):
        return request.user.has_perm("payments.retry_batchclose")

    @admin.action(description="Retry selected failed batch closes", permissions=["retry"])
    def retry(self, request, queryset):
        _run_action(self, request, queryset.select_related("account"), lambda batch: batch_close_attempt(batch=batch), "Retry")
