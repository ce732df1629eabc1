"""
Every notification CodePay POSTs to us, exactly as it arrived, and what became of it.

A delivery row is written before the gateway gets its answer, whether the delivery is valid or not, and
rows are never deleted: the table is the evidence for an operator (what arrived, from where, did it
verify, what did it change) and the queue the apply task and the sweep work from. Only a delivery whose
signature verified may ever be applied; the database refuses any other combination.
"""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q


class Verification(models.TextChoices):
    VALID = "valid"
    INVALID_SIGNATURE = "invalid_signature", "Invalid signature"
    UNSIGNED = "unsigned"
    MALFORMED = "malformed", "Malformed body"
    TOO_LARGE = "too_large", "Body too large"
    UNKNOWN_ACCOUNT = "unknown_account", "Unknown merchant account"
    ACCOUNT_MISMATCH = "account_mismatch", "Signed for another merchant"
    SOURCE_NOT_ALLOWED = "source_not_allowed", "Source address not allowed"
    KEY_UNAVAILABLE = "key_unavailable", "No usable gateway public key"


class ProcessingStatus(models.TextChoices):
    RECEIVED = "received", "Received, waiting to be applied"
    APPLIED = "applied", "Applied (or already true)"
    DUPLICATE = "duplicate", "Duplicate of an applied delivery"
    STALE = "stale", "Stale: the order had moved on"
    CONFLICT = "conflict", "Conflict: amount or currency differs"
    UNMATCHED = "unmatched", "No matching order or refund"
    IGNORED = "ignored", "Nothing to apply"
    RETRYING = "retrying", "Failed, retrying"
    DEAD = "dead", "Failed, retries exhausted"
    REJECTED = "rejected", "Rejected: not verified"


# Statuses the apply task and the sweep still work on (an ``unmatched`` one only while it has a next attempt).
PENDING_STATUSES = frozenset({ProcessingStatus.RECEIVED, ProcessingStatus.RETRYING, ProcessingStatus.UNMATCHED})
# Statuses that mean the payments services have seen exactly this content and decided.
SETTLED_STATUSES = frozenset({ProcessingStatus.APPLIED, ProcessingStatus.STALE})


class NotificationDelivery(models.Model):
    """One POST to the notification URL: raw request, verification verdict, processing status and outcome."""

    # What arrived.
    account = models.ForeignKey(
        "payments.MerchantAccount",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notification_deliveries",
    )
    account_code = models.CharField(max_length=64, help_text="The account code in the URL, even when it matched none.")
    received_at = models.DateTimeField(db_index=True)
    source_address = models.GenericIPAddressField(null=True, blank=True, help_text="REMOTE_ADDR as the server saw it.")
    headers = models.JSONField(default=dict, blank=True, help_text="Request headers without Authorization and Cookie.")
    content_type = models.CharField(max_length=255, blank=True)
    raw_body = models.BinaryField(help_text="The body byte for byte; a rejected delivery keeps its first 4 KiB.")
    body_size = models.PositiveIntegerField(help_text="Bytes announced by Content-Length, or read when it was absent.")
    body_truncated = models.BooleanField(default=False)
    payload = models.JSONField(
        null=True, blank=True, encoder=DjangoJSONEncoder, help_text="The parsed fields as signed text, without sign."
    )

    # Whether it is genuine.
    verification = models.CharField(max_length=24, choices=Verification.choices)
    verified_with = models.CharField(max_length=8, blank=True, help_text="'current' or 'next' gateway key.")
    verification_detail = models.CharField(max_length=255, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True, help_text="sha256 of the canonical sign string.")

    # What it is about.
    merchant_order_no = models.CharField(max_length=64, blank=True)
    trans_no = models.CharField(max_length=64, blank=True)
    trans_type = models.CharField(max_length=8, blank=True)
    trans_status = models.CharField(max_length=8, blank=True)

    # What became of it.
    status = models.CharField(max_length=16, choices=ProcessingStatus.choices, default=ProcessingStatus.RECEIVED)
    result = models.CharField(max_length=16, blank=True, help_text="What the payments service answered.")
    confirmed_trans_status = models.CharField(
        max_length=8,
        blank=True,
        help_text="What the confirming query last answered; empty: applied from the notification.",
    )
    status_message = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Empty: nothing more is scheduled.")
    last_error = models.TextField(blank=True)
    last_traceback = models.TextField(
        blank=True,
        help_text="The formatted traceback of the failure behind last_error, its end when long; empty: none.",
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    order = models.ForeignKey(
        "payments.Order", on_delete=models.PROTECT, null=True, blank=True, related_name="notification_deliveries"
    )
    refund = models.ForeignKey(
        "payments.Refund", on_delete=models.PROTECT, null=True, blank=True, related_name="notification_deliveries"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "notification delivery"
        verbose_name_plural = "notification deliveries"
        permissions = [("replay_notificationdelivery", "Can replay notification deliveries")]
        constraints = [
            models.CheckConstraint(
                condition=Q(verification=Verification.VALID) | Q(status=ProcessingStatus.REJECTED),
                name="notification_only_verified_are_processed",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "fingerprint"], name="notification_fingerprint"),
            models.Index(fields=["merchant_order_no"], name="notification_merchant_order"),
            models.Index(fields=["trans_no"], name="notification_trans_no"),
            models.Index(fields=["status", "-received_at"], name="notification_status_recent"),
            models.Index(
                fields=["next_attempt_at"], name="notification_due", condition=Q(next_attempt_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.merchant_order_no or '-'} ({self.verification}, {self.status})"


class NotificationReplay(models.Model):
    """Audit of one replay: who asked, and the delivery's status before and after."""

    delivery = models.ForeignKey(NotificationDelivery, on_delete=models.PROTECT, related_name="replays")
    actor = models.CharField(max_length=150, help_text="'admin:<username>' or 'command'.")
    created_at = models.DateTimeField(auto_now_add=True)
    status_before = models.CharField(max_length=16, choices=ProcessingStatus.choices)
    status_after = models.CharField(max_length=16, choices=ProcessingStatus.choices)
    result = models.CharField(max_length=16, blank=True)
    message = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"replay of #{self.delivery_id} by {self.actor}: {self.status_before} -> {self.status_after}"
