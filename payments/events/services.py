"""
Record events in the outbox, send them in order per (endpoint, order), retry, give up, disable, replay.

Sending: ``event_chain_send`` takes the oldest pending delivery of one endpoint and one order, leases it
(no row lock is held over HTTP), posts it, and records the attempt. A success moves on to the next event
of the chain; a failure schedules the next attempt with back-off (``EVENTS_RETRY_DELAYS``) and stops the
chain, so a later event never overtakes an earlier one. Past ``EVENTS_RETRY_WINDOW_SECONDS`` (3 days)
after the event, a delivery is given up (``failed``; replayable) and the chain moves on. An endpoint
failing without a single success for ``EVENTS_ENDPOINT_DISABLE_AFTER_SECONDS`` and at least
``EVENTS_ENDPOINT_DISABLE_MIN_FAILURES`` attempts is disabled; the operator learns it from an error log,
the endpoint's flag in the admin and an ``endpoint.disabled`` event to the account's other endpoints.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from payments.events.models import (
    DeliveryStatus,
    Event,
    EventDelivery,
    EventDeliveryAttempt,
    EventEndpoint,
    EventType,
)
from payments.events.signing import SIGNATURE_HEADER, signature_header
from payments.models import MerchantAccount, Order, Refund

logger = logging.getLogger(__name__)

LEASE_SECONDS = 60
SECRET_PREFIX = "whsec_"

_ORDER_STATUS_EVENTS = {
    "failed": EventType.ORDER_FAILED,
    "cancelled": EventType.ORDER_CANCELLED,
    "expired": EventType.ORDER_EXPIRED,
    "authorized": EventType.ORDER_AUTHORIZED,
}
_REFUND_STATUS_EVENTS = {"succeeded": EventType.REFUND_SUCCEEDED, "failed": EventType.REFUND_FAILED}


def event_type_for(*, kind: str, from_status: str, to_status: str) -> str | None:
    """The outbound event for one line of an order's story (see ``order_event``); None when there is none."""
    if kind == "conflict":
        return EventType.ORDER_CONFLICT
    if kind == "refund_status_changed":
        return _REFUND_STATUS_EVENTS.get(to_status)
    if kind != "status_changed":
        return None
    if to_status == "succeeded":
        # A sale is paid; an authorization moving to succeeded was captured.
        return EventType.ORDER_CAPTURED if from_status == "authorized" else EventType.ORDER_SUCCEEDED
    return _ORDER_STATUS_EVENTS.get(to_status)


# --- Recording (inside the caller's transaction) --------------------------------------------------------


def event_record(
    *, order: Order, refund: Refund | None, kind: str, from_status: str, to_status: str, message: str = ""
) -> Event | None:
    """
    Write the event for a change of ``order`` (or its ``refund``) and a delivery per matching endpoint, in
    the caller's transaction. Nothing is written when no endpoint wants it.
    """
    event_type = event_type_for(kind=kind, from_status=from_status, to_status=to_status)
    if event_type is None:
        return None
    endpoints = _endpoints_for(account_id=order.account_id, store_no=order.store_no, event_type=event_type)
    if not endpoints:
        return None
    from payments.serializers import OrderSerializer, RefundSerializer

    data: dict = {"object": RefundSerializer(refund).data if refund is not None else OrderSerializer(order).data}
    if event_type == EventType.ORDER_CONFLICT:
        data["message"] = message
    return _event_create(
        account_id=order.account_id,
        store_no=order.store_no,
        event_type=event_type,
        data=data,
        order=order,
        refund=refund,
        endpoints=endpoints,
    )


def _endpoints_for(
    *, account_id: int, store_no: str, event_type: str, exclude_id: int | None = None
) -> list[EventEndpoint]:
    candidates = EventEndpoint.objects.filter(account_id=account_id).filter(Q(store_no="") | Q(store_no=store_no))
    if exclude_id is not None:
        candidates = candidates.exclude(pk=exclude_id)
    # Disabled endpoints still get their deliveries recorded: re-enabled, they catch up in order.
    return [endpoint for endpoint in candidates if not endpoint.event_types or event_type in endpoint.event_types]


def _event_create(
    *,
    account_id: int,
    store_no: str,
    event_type: str,
    data: dict,
    endpoints: list[EventEndpoint],
    order: Order | None = None,
    refund: Refund | None = None,
) -> Event:
    now = timezone.now()
    event = Event.objects.create(
        account_id=account_id, order=order, refund=refund, type=event_type, store_no=store_no, body=""
    )
    payload = {"id": f"evt_{event.pk}", "type": event_type, "created": now.isoformat(), "livemode": True, "data": data}
    event.body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)
    event.save(update_fields=["body"])
    EventDelivery.objects.bulk_create(
        [EventDelivery(event=event, endpoint=endpoint, order=order, next_attempt_at=now) for endpoint in endpoints]
    )
    for endpoint in endpoints:
        transaction.on_commit(partial(_queue_chain, endpoint.pk, order.pk if order else None))
    return event


def _queue_chain(endpoint_id: int, order_id: int | None) -> None:
    """Queue the chain's send; a broker that is down only leaves it to the sweep (the delivery is already due)."""
    from payments.events.tasks import send_event_chain

    try:
        send_event_chain.apply_async(args=[endpoint_id, order_id], retry=False)
    except Exception as exc:  # kombu, redis, socket errors: the sweep sends it
        logger.warning(
            "event send not queued",
            extra={"endpoint_id": endpoint_id, "order_id": order_id, "error_type": type(exc).__name__},
        )


# --- Endpoints ------------------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def endpoint_create(
    *,
    account: MerchantAccount,
    url: str,
    store_no: str = "",
    event_types: list[str] | None = None,
    description: str = "",
) -> EventEndpoint:
    return EventEndpoint.objects.create(
        account=account,
        url=url,
        store_no=store_no,
        event_types=event_types or [],
        description=description,
        secret=new_secret(),
    )


def endpoint_rotate_secret(*, endpoint: EventEndpoint, overlap_seconds: int) -> EventEndpoint:
    """A new secret; the old one keeps signing too for ``overlap_seconds`` so receivers can switch at leisure."""
    with transaction.atomic():
        endpoint = EventEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret = endpoint.secret if overlap_seconds > 0 else ""
        endpoint.previous_secret_expires_at = (
            timezone.now() + timedelta(seconds=overlap_seconds) if overlap_seconds > 0 else None
        )
        endpoint.secret = new_secret()
        endpoint.save()
    return endpoint


def endpoint_enable(*, endpoint: EventEndpoint) -> EventEndpoint:
    """Turn an endpoint back on (after a fix); its waiting deliveries are due now, oldest first."""
    with transaction.atomic():
        endpoint = EventEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.is_active, endpoint.disabled_at, endpoint.disabled_reason = True, None, ""
        endpoint.failing_since, endpoint.consecutive_failures = None, 0
        endpoint.save()
        EventDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).update(
            next_attempt_at=timezone.now()
        )
    return endpoint


def endpoint_signing_secrets(endpoint: EventEndpoint, *, now: datetime) -> list[str]:
    signing = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        signing.append(endpoint.previous_secret)
    return signing


# --- Sending --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    delivered: bool
    http_status: int | None
    error: str
    response_excerpt: str
    duration_ms: int


def _post(endpoint: EventEndpoint, event: Event) -> AttemptResult:
    body = event.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "codepay-merchant-service-events/1",
        "CodePay-Event-Id": f"evt_{event.pk}",
        "CodePay-Event-Type": event.type,
        SIGNATURE_HEADER: signature_header(
            secrets=endpoint_signing_secrets(endpoint, now=timezone.now()), timestamp=int(time.time()), body=body
        ),
    }
    started = time.monotonic()
    try:
        response = requests.post(
            endpoint.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=(settings.EVENTS_CONNECT_TIMEOUT, settings.EVENTS_READ_TIMEOUT),
        )
    except requests.RequestException as exc:
        return AttemptResult(
            False, None, f"{type(exc).__name__}: {exc}"[:255], "", int((time.monotonic() - started) * 1000)
        )
    delivered = 200 <= response.status_code < 300
    return AttemptResult(
        delivered,
        response.status_code,
        "" if delivered else f"HTTP {response.status_code}",
        response.text[:500],
        int((time.monotonic() - started) * 1000),
    )


def _chain_head(endpoint_id: int, order_id: int | None):
    chain = EventDelivery.objects.filter(endpoint_id=endpoint_id, status=DeliveryStatus.PENDING)
    chain = chain.filter(order__isnull=True) if order_id is None else chain.filter(order_id=order_id)
    return chain.select_related("event", "endpoint").select_for_update(of=("self",)).order_by("event_id").first()


def _claim_head(endpoint_id: int, order_id: int | None, now: datetime) -> EventDelivery | None:
    with transaction.atomic():
        head = _chain_head(endpoint_id, order_id)
        if head is None or not head.endpoint.is_active:
            return None
        if head.leased_until and head.leased_until > now:
            return None  # another sender is on this chain
        if head.next_attempt_at and head.next_attempt_at > now:
            return None  # backing off; the sweep comes back
        head.leased_until = now + timedelta(seconds=LEASE_SECONDS)
        head.save(update_fields=["leased_until", "updated_at"])
        return head


def event_chain_send(*, endpoint_id: int, order_id: int | None, max_events: int = 100) -> int:
    """
    Send the due events of one (endpoint, order) chain, oldest first; stops at the first failure.
    Answers how many were delivered.
    """
    delivered = 0
    for _ in range(max_events):
        head = _claim_head(endpoint_id, order_id, timezone.now())
        if head is None:
            break
        result = _post(head.endpoint, head.event)
        _attempt_record(head, result, trigger="send")
        if not result.delivered:
            break
        delivered += 1
    return delivered


def _retry_delay(attempts: int) -> int:
    delays = settings.EVENTS_RETRY_DELAYS
    return delays[min(attempts, len(delays)) - 1]


def _attempt_record(delivery: EventDelivery, result: AttemptResult, *, trigger: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        endpoint = EventEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        delivery = EventDelivery.objects.select_for_update().select_related("event").get(pk=delivery.pk)
        EventDeliveryAttempt.objects.create(
            delivery=delivery,
            trigger=trigger,
            http_status=result.http_status,
            error=result.error,
            response_excerpt=result.response_excerpt,
            duration_ms=result.duration_ms,
        )
        delivery.attempts += 1
        delivery.leased_until = None
        delivery.last_http_status, delivery.last_error = result.http_status, result.error
        if result.delivered:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, now, None
            endpoint.failing_since, endpoint.consecutive_failures = None, 0
        else:
            endpoint.failing_since = endpoint.failing_since or now
            endpoint.consecutive_failures += 1
            if delivery.status != DeliveryStatus.PENDING:
                pass  # a failed replay of a settled delivery leaves it as it was
            elif now - delivery.event.created_at >= timedelta(seconds=settings.EVENTS_RETRY_WINDOW_SECONDS):
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
                logger.warning(
                    "event delivery given up", extra={"delivery_id": delivery.pk, "endpoint_id": endpoint.pk}
                )
            else:
                delivery.next_attempt_at = now + timedelta(seconds=_retry_delay(delivery.attempts))
        delivery.save()
        endpoint.save(update_fields=["failing_since", "consecutive_failures", "updated_at"])
        if not result.delivered and endpoint.is_active and _keeps_failing(endpoint, now):
            _endpoint_disable(endpoint, now=now)


def _keeps_failing(endpoint: EventEndpoint, now: datetime) -> bool:
    return (
        endpoint.consecutive_failures >= settings.EVENTS_ENDPOINT_DISABLE_MIN_FAILURES
        and endpoint.failing_since is not None
        and now - endpoint.failing_since >= timedelta(seconds=settings.EVENTS_ENDPOINT_DISABLE_AFTER_SECONDS)
    )


def _endpoint_disable(endpoint: EventEndpoint, *, now: datetime) -> None:
    endpoint.is_active, endpoint.disabled_at = False, now
    endpoint.disabled_reason = (
        f"{endpoint.consecutive_failures} failed attempts since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
    )
    endpoint.save(update_fields=["is_active", "disabled_at", "disabled_reason", "updated_at"])
    logger.error(
        "event endpoint disabled: it keeps failing",
        extra={"endpoint_id": endpoint.pk, "url": endpoint.url, "reason": endpoint.disabled_reason},
    )
    others = [
        other
        for other in _endpoints_for(
            account_id=endpoint.account_id,
            store_no=endpoint.store_no,
            event_type=EventType.ENDPOINT_DISABLED,
            exclude_id=endpoint.pk,
        )
        if other.is_active
    ]
    if others:
        data = {
            "object": {
                "id": endpoint.pk,
                "url": endpoint.url,
                "store_no": endpoint.store_no,
                "disabled_reason": endpoint.disabled_reason,
            }
        }
        _event_create(
            account_id=endpoint.account_id,
            store_no=endpoint.store_no,
            event_type=EventType.ENDPOINT_DISABLED,
            data=data,
            endpoints=others,
        )


def event_deliveries_send_due(*, time_budget_seconds: float = 25.0, limit: int = 200) -> int:
    """
    The sweep: every chain whose head is due (a missed queue, a retry, a re-enabled endpoint).
    Answers deliveries made.
    """
    started = time.monotonic()
    chains = (
        EventDelivery.objects.filter(
            status=DeliveryStatus.PENDING, endpoint__is_active=True, next_attempt_at__lte=timezone.now()
        )
        .values("endpoint_id", "order_id")
        .annotate(oldest=Min("event_id"))
        .order_by("oldest")[:limit]
    )
    delivered = 0
    for chain in list(chains):
        endpoint_id, order_id = chain["endpoint_id"], chain["order_id"]
        if time.monotonic() - started > time_budget_seconds:
            break
        delivered += event_chain_send(endpoint_id=endpoint_id, order_id=order_id)
    return delivered


# --- Replay ---------------------------------------------------------------------------------------------


def event_delivery_replay(*, delivery_id: int, actor: str) -> EventDelivery:
    """
    Send one delivery again now, whatever its status (an operator's or a store system's request after a
    fix), and log it; a receiver must already accept repeats (at-least-once). Ordering is the operator's call here.
    """
    delivery = EventDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    result = _post(delivery.endpoint, delivery.event)
    _attempt_record(delivery, result, trigger=f"replay:{actor}"[:16])
    return EventDelivery.objects.get(pk=delivery_id)


def event_deliveries_for_replay(
    *, statuses: list[str], since: datetime | None, ids: list[int] | None, endpoint_id: int | None = None
) -> list[int]:
    deliveries = EventDelivery.objects.filter(pk__in=ids) if ids else EventDelivery.objects.filter(status__in=statuses)
    if since is not None:
        deliveries = deliveries.filter(event__created_at__gte=since)
    if endpoint_id is not None:
        deliveries = deliveries.filter(endpoint_id=endpoint_id)
    return list(deliveries.order_by("event_id").values_list("pk", flat=True))
