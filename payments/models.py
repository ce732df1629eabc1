"""
Merchant accounts, orders, refunds, operations on orders, gateway calls and batch closes.

The invariants that money depends on are database constraints, so no code path can break them:
one ``merchant_order_no`` per merchant account across orders, refunds and operations (the gateway's
rule, held by ``MerchantOrderNumber``), positive amounts, refunds never above what was paid and
captures never above what was authorized. Services change these rows under ``select_for_update``.
"""

from __future__ import annotations

from typing import TypedDict

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from rest_framework_api_key.models import AbstractAPIKey
from timezone_field import TimeZoneField


# Every amount and every sum of amounts the service accepts has at most 12 digits down to the currency's
# minor unit (payments.gateway.money.amount_maximum), so 12 integer digits and 3 decimals hold each of them
# exactly; 15 significant digits is also what SQLite (which stores decimals as floats) keeps exactly.
# A TypedDict, so `DecimalField(**MONEY)` stays one spelling and still type-checks keyword by keyword.
class MoneyDigits(TypedDict):
    max_digits: int
    decimal_places: int


MONEY: MoneyDigits = {"max_digits": 15, "decimal_places": 3}


class MerchantAccount(models.Model):
    """A CodePay merchant number with its app id. Secrets (private key, Basic Auth password) stay in the environment."""

    DEFAULT_CODE = "default"

    class SignType(models.TextChoices):
        RSA2 = "RSA2"
        NONE = "NONE", "NONE (Basic Auth)"

    code = models.SlugField(unique=True, help_text="Short name used in URLs and env secrets, e.g. 'default'.")
    name = models.CharField(max_length=100)
    app_id = models.CharField(max_length=32)
    merchant_no = models.CharField(max_length=32, unique=True)
    default_store_no = models.CharField(max_length=32, blank=True)
    sign_type = models.CharField(max_length=8, choices=SignType.choices, default=SignType.RSA2)
    gateway_public_key = models.TextField(blank=True, help_text="Base64 DER or PEM. Public, not a secret.")
    next_gateway_public_key = models.TextField(blank=True, help_text="Also accepted during a key rotation.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.merchant_no})"


class ApiKey(AbstractAPIKey):
    """A store system's key; only its hash is stored. Bound to an account and optionally one store."""

    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT, related_name="api_keys")
    store_no = models.CharField(max_length=32, blank=True, help_text="Empty: every store of the account.")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"


class MerchantOrderNumber(models.Model):
    """Reserves a merchant_order_no: the gateway requires it unique per merchant across every kind of request."""

    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT)
    merchant_order_no = models.CharField(max_length=32)
    kind = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "merchant_order_no"], name="merchant_order_no_unique_per_account"
            )
        ]

    def __str__(self) -> str:
        return f"{self.merchant_order_no} ({self.kind})"


class Channel(models.TextChoices):
    TERMINAL = "terminal", "Cloud push to a CodePay Register terminal"
    CHECKOUT = "checkout", "CodePay-hosted checkout"
    CARD = "card", "Merchant-hosted card checkout"


class TransType(models.TextChoices):
    SALE = "sale"
    AUTH = "auth", "Pre-authorization"
    CASHBACK = "cashback"


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    AUTHORIZED = "authorized"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class RefundStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Order(models.Model):
    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT, related_name="orders")
    merchant_order_no = models.CharField(max_length=32)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    trans_type = models.CharField(max_length=16, choices=TransType.choices, default=TransType.SALE)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.UNKNOWN)

    currency = models.CharField(max_length=3)
    amount = models.DecimalField(**MONEY)
    tip_amount = models.DecimalField(**MONEY, default=0)
    cashback_amount = models.DecimalField(**MONEY, default=0)
    # What the authorization holds (amount plus increments), what was captured, what moved, what went back.
    authorized_amount = models.DecimalField(**MONEY, default=0)
    captured_amount = models.DecimalField(**MONEY, default=0)
    paid_amount = models.DecimalField(**MONEY, default=0)
    refunded_amount = models.DecimalField(**MONEY, default=0)
    paid_at = models.DateTimeField(null=True, blank=True, help_text="When the money first moved (capture, payment).")
    # What order.query reports was given off by the payment channel and the merchant, and the fee the
    # customer paid (docs/protocol.md, "Amounts the gateway reports"); paid = total - discounts + fee.
    discount_bpc = models.DecimalField(**MONEY, default=0)
    discount_bmopc = models.DecimalField(**MONEY, default=0)
    trans_fee_c = models.DecimalField(**MONEY, default=0)

    description = models.CharField(max_length=128)
    attach = models.CharField(max_length=128, blank=True)
    store_no = models.CharField(max_length=32, blank=True)
    terminal_sn = models.CharField(max_length=32, blank=True)
    pay_scenario = models.CharField(max_length=32, blank=True)
    pay_method_id = models.CharField(max_length=32, blank=True)
    # Channel options as sent (terminal flags, checkout page details, return_url). Never card data.
    options = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    trans_no = models.CharField(max_length=32, blank=True)
    pay_url = models.URLField(max_length=512, blank=True)
    redirect_url_3dsecure = models.URLField(max_length=512, blank=True)
    terminal_online_status = models.CharField(max_length=16, blank=True)
    gateway_trans_status = models.CharField(max_length=2, blank=True)
    gateway_code = models.CharField(max_length=16, blank=True)
    gateway_message = models.CharField(max_length=255, blank=True)
    # Why the payment failed, as the gateway said (trans_error_code / trans_error_msg, or a refusal's code).
    failure_code = models.CharField(max_length=32, blank=True)
    failure_message = models.CharField(max_length=255, blank=True)

    expires_in = models.PositiveIntegerField(default=300)
    expires_at = models.DateTimeField()
    # Reconciliation: when to ask the gateway next, how often it was asked, since when it did not know us,
    # and until when a worker holds the row for a check (payments.services.reconcile, "Claiming").
    next_check_at = models.DateTimeField(null=True, blank=True)
    check_attempts = models.PositiveIntegerField(default=0)
    not_found_since = models.DateTimeField(null=True, blank=True)
    check_leased_until = models.DateTimeField(null=True, blank=True)

    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("sync_order", "Can sync orders with CodePay"),
            ("cancel_order", "Can cancel orders at CodePay"),
            ("refund_order", "Can refund orders"),
            ("capture_order", "Can capture authorizations"),
            ("void_order", "Can void authorizations"),
            ("adjust_tip_order", "Can adjust tips"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["account", "merchant_order_no"], name="order_merchant_order_no_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="order_amount_positive"),
            models.CheckConstraint(
                condition=Q(tip_amount__gte=0, cashback_amount__gte=0, captured_amount__gte=0, refunded_amount__gte=0),
                name="order_amounts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(refunded_amount__lte=F("paid_amount")), name="order_refunds_within_paid"
            ),
            models.CheckConstraint(
                condition=Q(captured_amount__lte=F("authorized_amount")), name="order_captures_within_authorized"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="order_account_recent"),
            models.Index(fields=["next_check_at"], name="order_due_check", condition=Q(next_check_at__isnull=False)),
            models.Index(fields=["trans_no"], name="order_trans_no"),
        ]

    def __str__(self) -> str:
        return self.merchant_order_no


class Refund(models.Model):
    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT, related_name="refunds")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    merchant_order_no = models.CharField(max_length=32)
    trans_no = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=RefundStatus.choices, default=RefundStatus.UNKNOWN)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=64)
    gateway_trans_status = models.CharField(max_length=2, blank=True)
    gateway_code = models.CharField(max_length=16, blank=True)
    gateway_message = models.CharField(max_length=255, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    check_attempts = models.PositiveIntegerField(default=0)
    not_found_since = models.DateTimeField(null=True, blank=True)
    check_leased_until = models.DateTimeField(null=True, blank=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("sync_refund", "Can sync refunds with CodePay")]
        constraints = [
            models.UniqueConstraint(fields=["account", "merchant_order_no"], name="refund_merchant_order_no_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]
        indexes = [
            models.Index(fields=["next_check_at"], name="refund_due_check", condition=Q(next_check_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return self.merchant_order_no


class OperationKind(models.TextChoices):
    CAPTURE = "capture"
    INCREMENT = "increment", "Incremental authorization"
    TIP_ADJUST = "tip_adjust", "Tip adjustment"
    VOID = "void", "Void authorization"
    CLOSE = "close", "Close terminal order"
    REVOKE = "revoke", "Revoke online order"


class OperationStatus(models.TextChoices):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


class OrderOperation(models.Model):
    """A follow-up call on an order (capture, increment, tip, void, close, revoke) and its result."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="operations")
    kind = models.CharField(max_length=16, choices=OperationKind.choices)
    merchant_order_no = models.CharField(
        max_length=32, blank=True, help_text="The operation's own number, if it has one."
    )
    amount = models.DecimalField(**MONEY, null=True, blank=True)
    status = models.CharField(max_length=16, choices=OperationStatus.choices)
    trans_no = models.CharField(max_length=32, blank=True)
    gateway_code = models.CharField(max_length=16, blank=True)
    gateway_message = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=16, default="api")
    # An operation whose outcome is unknown and that has its own number is looked up by the reconciler.
    next_check_at = models.DateTimeField(null=True, blank=True)
    check_attempts = models.PositiveIntegerField(default=0)
    check_leased_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0), name="operation_amount_not_negative"
            ),
            # One capture per authorization (docs/protocol.md, "Follow-ups"): a capture that succeeded or
            # may have succeeded holds the place; only a failed one leaves room for another.
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(kind="capture", status__in=["succeeded", "unknown"]),
                name="one_capture_per_authorization",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_check_at"], name="operation_due_check", condition=Q(next_check_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.merchant_order_no}".strip()


class OrderEvent(models.Model):
    """One line of an order's story: status changes, gateway answers, notifications, conflicts."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    kind = models.CharField(max_length=32)
    source = models.CharField(max_length=16)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    message = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} ({self.source})"


class GatewayCall(models.Model):
    """Audit of one HTTP call to CodePay, redacted: no card data, keys or passwords."""

    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT, null=True, related_name="gateway_calls")
    method = models.CharField(max_length=64)
    merchant_order_no = models.CharField(max_length=32, blank=True, db_index=True)
    outcome = models.CharField(max_length=16)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    gateway_code = models.CharField(max_length=16, blank=True)
    gateway_message = models.CharField(max_length=255, blank=True)
    psn = models.CharField(max_length=32, blank=True)
    duration_ms = models.PositiveIntegerField()
    request = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    response = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.method} {self.merchant_order_no}".strip()


class IdempotencyRecord(models.Model):
    """The first answer to a POST with an Idempotency-Key, replayed for the same key and body."""

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        COMPLETED = "completed"

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_method = models.CharField(max_length=8)
    request_path = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique_per_api_key")]

    def __str__(self) -> str:
        return f"{self.request_method} {self.request_path} [{self.key}]"


def all_weekdays() -> list[int]:
    return [1, 2, 3, 4, 5, 6, 7]


class BatchCloseSchedule(models.Model):
    """
    When a store's terminal batches close: a local time of day on chosen weekdays, in the store's time
    zone. It fires once per business day (the local date), at or after the local time, even when that
    time does not exist on a daylight-saving day (02:30 on a spring-forward day fires at 03:00).
    """

    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT, related_name="batch_schedules")
    store_no = models.CharField(max_length=32)
    terminal_sn_list = models.JSONField(
        default=list, blank=True, help_text="Empty: every terminal of the store.", encoder=DjangoJSONEncoder
    )
    local_time = models.TimeField()
    time_zone = TimeZoneField(default="UTC")
    weekdays = models.JSONField(
        default=all_weekdays, help_text="ISO weekdays 1 (Monday) to 7 (Sunday).", encoder=DjangoJSONEncoder
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.store_no} at {self.local_time:%H:%M} {self.time_zone}"

    def clean(self) -> None:
        errors = {}
        if (
            not isinstance(self.weekdays, list)
            or not self.weekdays
            or any(type(day) is not int or not 1 <= day <= 7 for day in self.weekdays)
            or len(set(self.weekdays)) != len(self.weekdays)
        ):
            errors["weekdays"] = "A list of distinct ISO weekdays, 1 (Monday) to 7 (Sunday), at least one."
        if not isinstance(self.terminal_sn_list, list) or any(
            not isinstance(sn, str) or not sn or len(sn) > 32 for sn in self.terminal_sn_list
        ):
            errors["terminal_sn_list"] = "A list of terminal serial numbers (text, at most 32 characters each)."
        if errors:
            raise ValidationError(errors)


class BatchCloseStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


class BatchClose(models.Model):
    """One batch close, on demand or by schedule, with what the gateway answered."""

    class Trigger(models.TextChoices):
        API = "api"
        SCHEDULE = "schedule"
        COMMAND = "command"
        ADMIN = "admin"

    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT, related_name="batch_closes")
    schedule = models.ForeignKey(
        BatchCloseSchedule, on_delete=models.PROTECT, null=True, blank=True, related_name="runs"
    )
    business_date = models.DateField(null=True, blank=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    store_no = models.CharField(max_length=32, blank=True)
    terminal_sn_list = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=BatchCloseStatus.choices, default=BatchCloseStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    count = models.PositiveIntegerField(null=True, blank=True)
    # A batch total is the gateway's sum over many orders, beyond any one order's maximum.
    total_amount = models.DecimalField(max_digits=18, decimal_places=3, null=True, blank=True)
    gateway_code = models.CharField(max_length=16, blank=True)
    gateway_message = models.CharField(max_length=255, blank=True)
    response = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("retry_batchclose", "Can retry batch closes")]
        constraints = [
            # A schedule fires once per business day, however many beat or worker processes race for it.
            models.UniqueConstraint(
                fields=["schedule", "business_date"],
                condition=Q(schedule__isnull=False),
                name="batch_close_once_per_schedule_day",
            ),
            models.CheckConstraint(
                condition=Q(schedule__isnull=True) | Q(business_date__isnull=False),
                name="batch_close_scheduled_has_business_date",
            ),
        ]
        indexes = [
            # The retry sweep: failed closes whose next attempt is due.
            models.Index(
                fields=["next_attempt_at"], name="batch_close_due_retry", condition=Q(next_attempt_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"batch close {self.pk} ({self.status})"


# Outbound events keep their models in their own package (payments/events); imported here so Django finds them.
from payments.events.models import Event, EventDelivery, EventDeliveryAttempt, EventEndpoint  # noqa: E402,F401
