"""
Idempotency-Key handling for POSTs, as store systems know it from payment APIs like Stripe's.

The first request with a key claims it by inserting a row (a unique constraint decides races, not
timing). A twin arriving while the first is still running gets 409; one arriving later gets the stored
answer, status and body, without a second gateway call; the same key with a different body gets 422.
Only answers of requests that reached CodePay are kept (2xx, and 502 for its refusal); invalid input,
conflicts, an unreachable gateway or our configuration did nothing, so the key can be used again once
fixed. A claim left by a process that died is taken over after ``IN_FLIGHT_LEASE``.
The body fingerprint is an HMAC with the secret key, so a card number in a body is never stored, not
even as a plain hash. Records live ``IDEMPOTENCY_KEY_TTL_HOURS`` (at least 24 h), then are purged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from codepay_service.errors import IdempotencyConflict, IdempotencyMismatch, ValidationFailed
from payments.models import ApiKey, IdempotencyRecord

MAX_KEY_LENGTH = 255
# Longer than any request may run (the web server's timeout is 60 s).
IN_FLIGHT_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any


def _fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(settings.SECRET_KEY.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def idempotency_begin(
    *, api_key: ApiKey, key: str, method: str, path: str, body: Any
) -> IdempotencyRecord | StoredResponse:
    """Claim ``key`` for this request, or answer what an earlier request with it already got."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(details={"Idempotency-Key": [f"Use 1 to {MAX_KEY_LENGTH} characters."]})
    fingerprint = _fingerprint(method, path, body)
    now = timezone.now()
    IdempotencyRecord.objects.filter(api_key=api_key, key=key, expires_at__lt=now).delete()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                api_key=api_key,
                key=key,
                request_method=method,
                request_path=path,
                fingerprint=fingerprint,
                expires_at=now + timedelta(hours=max(settings.IDEMPOTENCY_KEY_TTL_HOURS, 24)),
            )
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.get(api_key=api_key, key=key)
    if existing.fingerprint != fingerprint:
        raise IdempotencyMismatch()
    if existing.state == IdempotencyRecord.State.IN_FLIGHT:
        # A claim older than any request can run belongs to a process that died: the twin takes it over.
        taken_over = IdempotencyRecord.objects.filter(
            pk=existing.pk, state=IdempotencyRecord.State.IN_FLIGHT, created_at__lt=now - IN_FLIGHT_LEASE
        ).update(created_at=now)
        if taken_over:
            return IdempotencyRecord.objects.get(pk=existing.pk)
        raise IdempotencyConflict()
    assert existing.response_status is not None  # a completed record keeps its answer
    return StoredResponse(status=existing.response_status, body=existing.response_body)


def idempotency_finish(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    """Keep the answer of a request that reached CodePay (2xx, or its 502 refusal); release the key otherwise."""
    if not (status < 300 or status == 502):
        idempotency_release(record=record)
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.COMPLETED, response_status=status, response_body=body
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget a claim whose request crashed before answering, so the client can retry with the same key."""
    IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyRecord.State.IN_FLIGHT).delete()


def idempotency_purge_expired() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted
