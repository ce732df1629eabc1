"""
Endpoints, events (the outbox), deliveries of an event to an endpoint, and the log of every attempt.

An endpoint's signing secret is stored in the database: it has to be, to sign, and it is the store
system's secret rather than ours (Stripe keeps its endpoint secrets the same way). It is shown once when
created or rotated and masked everywhere else.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from payments.models import MerchantAccount, Order, Refund


class EventType(models.TextChoices):
    ORDER_SUCCEEDED = "order.succeeded"
    ORDER_FAILED = "order.failed"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_EXPIRED = "order.expired"
    ORDER_AUTHORIZED = "order.authorized"
    ORDER_CAPTURED = "order.captured"
    ORDER_CONFLICT = "order.conflict"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    ENDPOINT_DISABLED = "endpoint.disabled"


class EventEndpoint(models.Model):
    """A store system's URL that receives the account's events (optionally one store's only)."""

    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT, related_name="event_endpoints")
    store_no = models.CharField(max_length=32, blank=True, help_text="Empty: events of every store of the account.")
    url = models.URLField(max_length=512)
    description = models.CharField(max_length=128, blank=True)
    event_types = models.JSONField(default=list, blank=True, help_text="Empty: every event type.")
    secret = models.CharField(max_length=64)
    # During a rotation both secrets sign, until the previous one expires.
    previous_secret = models.CharField(max_length=64, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True, help_text="Off: deliveries wait; nothing is sent.")
    disabled_at = models.DateTimeField(null=True, blank=True, help_text="Set when it was disabled for failing.")
    disabled_reason = models.CharField(max_length=255, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "payments"
        ordering = ["id"]
        permissions = [("replay_eventdelivery", "Can replay event deliveries")]

    def __str__(self) -> str:
        return self.url


class Event(models.Model):
    """One event as it is sent: the exact JSON body, written in the transaction of the change it reports."""

    account = models.ForeignKey(MerchantAccount, on_delete=models.PROTECT, related_name="+")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, null=True, blank=True, related_name="outbound_events")
    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, null=True, blank=True, related_name="outbound_events")
    type = models.CharField(max_length=32, choices=EventType.choices)
    store_no = models.CharField(max_length=32, blank=True)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        app_label = "payments"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"evt_{self.pk} {self.type}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed", "Failed (gave up after the retry window)"


class EventDelivery(models.Model):
    """An event owed to one endpoint. ``order`` is the ordering chain: oldest pending first, per endpoint."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(EventEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A sender holds the head of a chain while its HTTP call runs; a crashed sender's lease runs out.
    leased_until = models.DateTimeField(null=True, blank=True)
    last_http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "payments"
        ordering = ["-id"]
        verbose_name_plural = "event deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="event_delivery_once_per_endpoint")]
        indexes = [
            models.Index(
                fields=["endpoint", "order", "event"],
                name="event_delivery_pending_chain",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["next_attempt_at"], name="event_delivery_due", condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint}"


class EventDeliveryAttempt(models.Model):
    """The delivery log: one row per HTTP attempt (or replay), with what the endpoint answered."""

    delivery = models.ForeignKey(EventDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    trigger = models.CharField(max_length=16, default="send")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "payments"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} {self.trigger} -> {self.http_status}"
