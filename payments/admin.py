"""
The admin for the people who run the stores' payments: every transaction and its full story.

Orders, refunds, gateway calls and batch closes are read-only. Anything that changes state is an action
that needs its own permission, calls the same service as the API and is recorded in the admin's log under
the operator's name (order actions also leave an event on the order, source "admin"). Merchant accounts
are edited here, except the default one, which mirrors the CODEPAY_* settings.

The order page opens with a summary and one timeline (``payments.order_page``) and offers the money
actions of ``payments.admin_order_actions``, each on its own confirmation page. At the end of this module:
the site itself (one "API keys" entry, periodic tasks for superusers only, no app menu beside the lists).
"""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from codepay_service.errors import ServiceError
from payments.admin_order_actions import ORDER_ACTIONS
from payments.gateway.errors import GatewayError
from payments.gateway.money import format_amount
from payments.models import (
    ApiKey,
    BatchClose,
    BatchCloseSchedule,
    GatewayCall,
    MerchantAccount,
    OperationStatus,
    Order,
    OrderEvent,
    OrderOperation,
    OrderStatus,
    Refund,
    RefundStatus,
    TransType,
)
from payments.order_page import order_summary, order_timeline
from payments.services.batches import batch_close_attempt
from payments.services.operations import order_cancel
from payments.services.orders import order_event, order_sync
from payments.services.refunds import order_refundable_amount, refund_sync


class ReadOnlyAdminMixin:
    """Rows written only by services: visible, never added, edited or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _error_text(exc: ServiceError | GatewayError) -> str:
    return getattr(exc, "detail", None) or exc.message


def _run_action(modeladmin, request, queryset, action, label):
    """Run a service for each selected row; each attempt is in the admin's log under the operator's name."""
    done, failed = 0, []
    for obj in queryset:
        try:
            action(obj)
            done += 1
            modeladmin.log_change(request, obj, f"{label} (through the service)")
        except (ServiceError, GatewayError) as exc:
            failed.append(f"{obj}: {_error_text(exc)}")
            modeladmin.log_change(request, obj, f"{label} failed: {_error_text(exc)}")
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
        return (
            ("code", "app_id", "merchant_no", "created_at", "updated_at")
            if obj is not None
            else ("created_at", "updated_at")
        )

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    # The library's attributes are tuples of fixed length to mypy; these extend them.
    list_display = (*APIKeyModelAdmin.list_display, "account", "store_no")  # type: ignore[assignment]
    list_select_related = ("account",)
    list_filter = (*APIKeyModelAdmin.list_filter, "account")  # type: ignore[assignment]


def _money(amount, currency: str) -> str:
    return f"{format_amount(amount, currency)} {currency}" if amount is not None else "-"


class RefundInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Refund
    fields = ("merchant_order_no", "status", "amount_display", "reason", "gateway_code", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True

    @admin.display(description="Amount")
    def amount_display(self, refund):
        return _money(refund.amount, refund.currency)


class OperationInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderOperation
    fields = (
        "kind",
        "merchant_order_no",
        "amount_display",
        "status",
        "gateway_code",
        "gateway_message",
        "source",
        "created_at",
    )
    readonly_fields = fields
    extra = 0

    @admin.display(description="Amount")
    def amount_display(self, operation):
        return _money(operation.amount, operation.order.currency)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order")


STATUS_BADGE_CLASSES = {
    "succeeded": "ok",
    "applied": "ok",
    "valid": "ok",
    "authorized": "info",
    "pending": "wait",
    "processing": "wait",
    "received": "wait",
    "retrying": "wait",
    "failed": "bad",
    "dead": "bad",
    "conflict": "bad",
    "rejected": "bad",
    "unknown": "unknown",
    "unmatched": "unknown",
    # Gateway call outcomes (payments.gateway.errors kinds).
    "ok": "ok",
    "declined": "bad",
    "not_sent": "bad",
    "misconfigured": "bad",
    "error": "bad",
}


def status_badge(value: str, label: str = "") -> str:
    """A coloured status label; the colour classes live in payments/static/payments/admin.css."""
    return format_html(
        '<span class="cp-badge cp-{}">{}</span>', STATUS_BADGE_CLASSES.get(value, "plain"), label or value
    )


class StatusBadgeMixin:
    class Media:
        css = {"all": ("payments/admin.css",)}

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        return status_badge(obj.status)


# Shown after the summary, which holds the status and every amount (in the currency's digits); the other
# columns, money ones excepted, are folded into "Internal".
ORDER_MAIN_FIELDS = (
    "merchant_order_no",
    "account",
    "channel",
    "trans_type",
    "description",
    "attach",
    "store_no",
    "terminal_sn",
    "created_at",
    "updated_at",
    "expires_at",
)
ORDER_SUMMARY_FIELDS = (
    "status",
    "currency",
    "amount",
    "tip_amount",
    "cashback_amount",
    "authorized_amount",
    "captured_amount",
    "paid_amount",
    "refunded_amount",
)
ORDER_GATEWAY_FIELDS = ("trans_no", "gateway_code", "gateway_message", "pay_method_id", "pay_scenario", "pay_url")


class NeedsOperatorFilter(admin.SimpleListFilter):
    """The queues an operator works (docs/operations.md): unknown outcomes and amount conflicts."""

    title = "needs an operator"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return (
            ("unknown", "Order outcome unknown"),
            ("operation_unknown", "Operation outcome unknown"),
            ("refund_unknown", "Refund outcome unknown"),
            ("conflict", "Amount conflict recorded"),
        )

    def queryset(self, request, queryset):
        related = {
            "operation_unknown": OrderOperation.objects.filter(order=OuterRef("pk"), status=OperationStatus.UNKNOWN),
            "refund_unknown": Refund.objects.filter(order=OuterRef("pk"), status=RefundStatus.UNKNOWN),
            "conflict": OrderEvent.objects.filter(order=OuterRef("pk"), kind="conflict"),
        }
        if self.value() == "unknown":
            return queryset.filter(status=OrderStatus.UNKNOWN)
        subquery = related.get(self.value() or "")
        return queryset.filter(Exists(subquery)) if subquery is not None else queryset


@admin.register(Order)
class OrderAdmin(StatusBadgeMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "merchant_order_no",
        "created_at",
        "status_badge",
        "amount_display",
        "refunded_display",
        "kind_display",
        "terminal_sn",
    )
    list_display_links = ("merchant_order_no",)
    list_filter = (
        NeedsOperatorFilter,
        "status",
        "channel",
        "trans_type",
        "store_no",
        ("created_at", admin.DateFieldListFilter),
        "account",
    )
    search_fields = ("=merchant_order_no", "=trans_no")
    list_select_related = ("account",)
    list_per_page = 50
    date_hierarchy = "created_at"
    inlines = (RefundInline, OperationInline)
    actions = ("sync_with_gateway", "cancel_orders")
    readonly_fields = [field.name for field in Order._meta.fields]
    change_form_template = "admin/payments/order/change_form.html"

    def get_fieldsets(self, request, obj=None):
        shown = set(ORDER_MAIN_FIELDS) | set(ORDER_GATEWAY_FIELDS) | set(ORDER_SUMMARY_FIELDS)
        internal = [field.name for field in Order._meta.fields if field.name not in shown and field.name != "id"]
        return (
            (None, {"fields": ORDER_MAIN_FIELDS}),
            ("Gateway", {"fields": ORDER_GATEWAY_FIELDS}),
            ("Internal", {"classes": ("collapse",), "fields": internal}),
        )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account", "api_key")

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, order):
        return _money(order.amount, order.currency)

    @admin.display(description="Refunded")
    def refunded_display(self, order):
        return _money(order.refunded_amount, order.currency) if order.refunded_amount else "-"

    @admin.display(description="Kind", ordering="channel")
    def kind_display(self, order):
        return order.channel if order.trans_type == TransType.SALE else f"{order.channel} {order.trans_type}"

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/actions/<slug:action>/",
                self.admin_site.admin_view(self.order_action_view),
                name="payments_order_action",
            ),
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        order = self.get_object(request, object_id)
        if order is not None:
            extra_context = {
                **(extra_context or {}),
                "summary": order_summary(order=order, refundable=order_refundable_amount(order)),
                "timeline": order_timeline(order=order),
                "order_actions": [
                    action
                    for action in ORDER_ACTIONS.values()
                    if action.offered(order) and request.user.has_perm(action.permission)
                ],
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def order_action_view(self, request, object_id, action):
        """The confirmation page of one money action: names the amount, then calls the service."""
        order_action = ORDER_ACTIONS.get(action)
        order = self.get_object(request, object_id)
        if order_action is None or order is None:
            raise Http404("No such order or action.")
        if not (self.has_view_permission(request, order) and request.user.has_perm(order_action.permission)):
            raise PermissionDenied
        change_url = reverse("admin:payments_order_change", args=[order.pk])
        form = order_action.form(request.POST or None, order=order, initial=order_action.initial(order))
        if request.method == "POST" and form.is_valid():
            username = request.user.get_username()
            # The audit event comes first, so an attempt that fails or never returns is still on record.
            order_event(
                order,
                kind=f"admin_{order_action.slug}",
                source="admin",
                message=order_action.audit_message(order, form.cleaned_data, username),
            )
            try:
                outcome_unknown = order_action.run(order, form.cleaned_data)
            except (ServiceError, GatewayError) as exc:
                text = _error_text(exc)
                self.log_change(request, order, f"{order_action.label} failed: {text}"[:200])
                for field, errors in (getattr(exc, "details", None) or {}).items():
                    if field in form.fields and isinstance(errors, list):
                        form.add_error(field, errors)
                if not form.errors:
                    form.add_error(None, text)
            else:
                self.log_change(request, order, order_action.audit_message(order, form.cleaned_data, username)[:200])
                if outcome_unknown:
                    self.message_user(
                        request,
                        f"{order_action.label}: CodePay did not answer; the reconciler will find out.",
                        messages.WARNING,
                    )
                else:
                    self.message_user(request, f"{order_action.label}: done.", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": order,
            "title": f"{order_action.label} order {order.merchant_order_no}",
            "order_action": order_action,
            "description": order_action.describe(order),
            "summary": order_summary(order=order, refundable=order_refundable_amount(order)),
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/payments/order/action_confirm.html", context)

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

    @admin.action(
        description="Cancel selected orders (close, revoke or void, whichever applies)", permissions=["cancel"]
    )
    def cancel_orders(self, request, queryset):
        def cancel(order):
            self._audited(request, order, "admin_cancel")
            order_cancel(order=order, source="admin")

        _run_action(self, request, queryset.select_related("account"), cancel, "Cancel")


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """One event in full (its data included); reached from the order's timeline, not listed in the index."""

    readonly_fields = [field.name for field in OrderEvent._meta.fields]
    list_display = ("created_at", "order", "kind", "source", "to_status")
    list_select_related = ("order", "refund")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order", "refund")

    def has_module_permission(self, request):
        return False


# Every column but the id, the amount in the currency's digits instead of the raw column; all read-only.
REFUND_ADMIN_FIELDS = tuple(
    field.name if field.name != "amount" else "amount_display" for field in Refund._meta.fields if field.name != "id"
)


@admin.register(Refund)
class RefundAdmin(StatusBadgeMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("merchant_order_no", "created_at", "status_badge", "amount_display", "order", "reason")
    list_filter = (
        "status",
        "order__store_no",
        "order__terminal_sn",
        ("created_at", admin.DateFieldListFilter),
        "account",
    )
    search_fields = ("=merchant_order_no", "=trans_no", "=order__merchant_order_no")
    list_select_related = ("order", "account")
    fields = REFUND_ADMIN_FIELDS
    readonly_fields = REFUND_ADMIN_FIELDS
    actions = ("sync_with_gateway",)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, refund):
        return _money(refund.amount, refund.currency)

    def has_sync_permission(self, request):
        return request.user.has_perm("payments.sync_refund")

    @admin.action(description="Sync selected refunds with CodePay (query now)", permissions=["sync"])
    def sync_with_gateway(self, request, queryset):
        def sync(refund):
            order_event(
                refund.order,
                refund=refund,
                kind="admin_sync",
                source="admin",
                message=f"by {request.user.get_username()}",
            )
            refund_sync(refund=refund, source="admin")

        _run_action(self, request, queryset, sync, "Sync")


@admin.register(GatewayCall)
class GatewayCallAdmin(StatusBadgeMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "method", "merchant_order_no", "outcome_badge", "gateway_code", "duration_ms")
    list_filter = ("outcome", "method", ("created_at", admin.DateFieldListFilter), "account")
    search_fields = ("=merchant_order_no", "=psn")
    list_select_related = ("account",)
    readonly_fields = [field.name for field in GatewayCall._meta.fields]

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, call):
        return status_badge(call.outcome)


@admin.register(BatchCloseSchedule)
class BatchCloseScheduleAdmin(admin.ModelAdmin):
    list_display = ("store_no", "local_time", "time_zone", "weekdays", "enabled", "account")
    list_filter = ("enabled", "account")
    list_select_related = ("account",)


@admin.register(BatchClose)
class BatchCloseAdmin(StatusBadgeMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "store_no",
        "trigger",
        "status_badge",
        "attempts",
        "count",
        "total_amount",
        "gateway_code",
    )
    list_filter = ("status", "trigger", "store_no", ("created_at", admin.DateFieldListFilter), "account")
    list_select_related = ("account",)
    readonly_fields = [field.name for field in BatchClose._meta.fields]
    actions = ("retry",)

    def has_retry_permission(self, request):
        return request.user.has_perm("payments.retry_batchclose")

    @admin.action(description="Retry selected failed batch closes", permissions=["retry"])
    def retry(self, request, queryset):
        _run_action(
            self, request, queryset.select_related("account"), lambda batch: batch_close_attempt(batch=batch), "Retry"
        )


# Room for the lists at 1,366 px: the app menu is on the index page, not beside every list.
admin.site.enable_nav_sidebar = False
admin.site.site_header = "CodePay payments"
admin.site.site_title = "CodePay payments"

# One "API keys" entry: the library's own model admin makes keys without an account, which every request
# then refuses (401); keys are made in ApiKeyAdmin above.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


class SuperuserOnlyAdminMixin(admin.ModelAdmin):
    """Periodic-task plumbing: schedules are seeded by migrations, so only superusers see or touch them."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request, *args):
        return request.user.is_active and request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser and super().has_delete_permission(request, obj)


for _model in apps.get_app_config("django_celery_beat").get_models():
    if admin.site.is_registered(_model):
        _library_admin = type(admin.site.get_model_admin(_model))
        admin.site.unregister(_model)
        admin.site.register(
            _model, type(f"SuperuserOnly{_library_admin.__name__}", (SuperuserOnlyAdminMixin, _library_admin), {})
        )
