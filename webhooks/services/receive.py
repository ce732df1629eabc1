"""
Notification intake: verify, store, acknowledge; the apply step runs later (HOUSE_STYLE.md, "Webhooks").

Why store before acknowledging: CodePay stops re-posting once it reads ``success`` (docs/protocol.md,
"Notifications"). Whatever is acknowledged must already be committed, or a crash between
the answer and the write would lose the payment's news for good. So every delivery, valid or not, is a
committed row before the view answers, and storing depends on nothing but the database: the apply task
is handed after the commit to this process's publisher thread (``webhooks.services.publish``), so the answer
never waits for the broker, and a delivery whose task was not queued (or got lost) is picked up by the
periodic sweep (``webhooks.services.sweep``) through ``next_attempt_at``. Nothing is deleted; failures are
retried with backoff and then parked ("unmatched", "dead") for an operator, who can replay them.

Why rejected deliveries keep at most ``REJECTED_BODY_MAX_BYTES`` (4 KiB) of their body: anyone can POST to the
notify_url, and a body that did not verify is evidence, not news. Its first 4 KiB show what it was; a longer
one is cut and flagged truncated, and its parsed payload is not kept (only the identifying fields). A genuine
notification is about 1 KiB, so one rejected for a key problem is still whole, and a replay verifies it again
once an operator has fixed the key (``webhooks.services.replay``). Valid deliveries keep their whole body.

Intake does not look for copies of a message already settled: the worker recognises them before anything
else (``webhooks.services.apply``) and records them as "duplicate". Looking here cost every delivery a
query and a third of the receiver's CPU, to spare the worker a few queries for the rare copy.

Logs carry ids and statuses, never bodies (``attach`` and other fields are the merchant's).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from codepay_service.errors import ServiceError
from codepay_service.rows import row_insert
from payments.services.accounts import merchant_account_effective, merchant_account_get

from .. import conf
from ..models import NotificationDelivery, ProcessingStatus, Verification
from ..verification import (
    MalformedBody,
    ParsedNotification,
    Verdict,
    gateway_keys_load,
    notification_fingerprint,
    notification_parse,
    notification_verify,
    source_allowed,
)
from .publish import apply_task_pending_make_due, apply_task_publish

logger = logging.getLogger(__name__)

SUCCESS_BODY = "success"
# What a rejected delivery keeps of its body (valid ones keep all of it).
REJECTED_BODY_MAX_BYTES = 4096
# Headers never stored: credentials a proxy or a misconfigured sender could attach.
DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# What a delivery keeps of its headers: a sender controls them, and 90 KiB of them is no evidence.
HEADERS_MAX_BYTES = 4096
HEADER_VALUE_MAX_CHARS = 512
# Rejected deliveries from one source address stored in full per minute; past that a row still counts
# each one (received_at, source, verdict) without body or headers, so a flood costs rows of fixed size.
REJECTED_FULL_PER_SOURCE_PER_MINUTE = 20

_HTTP_STATUS: dict[str, int] = {
    Verification.VALID: 200,
    Verification.TOO_LARGE: 413,
    Verification.SOURCE_NOT_ALLOWED: 403,
    Verification.KEY_UNAVAILABLE: 503,
}


@dataclass(frozen=True)
class ReceiveResult:
    delivery_id: int
    verification: str
    http_status: int
    body: str


def notification_receive(
    *,
    account_code: str,
    body: bytes,
    body_size: int,
    body_truncated: bool,
    content_type: str,
    headers: dict[str, str],
    source_address: str | None,
) -> ReceiveResult:
    """
    Verify and store one delivery, then say what to answer: 200 ``success`` only for a valid one.

    The row is committed before this returns; the apply task is queued after the commit, in the
    background, so a broker outage neither raises here nor delays the answer.
    """
    now = timezone.now()
    parsed: ParsedNotification | None = None
    malformed = ""
    if not body_truncated:
        try:
            parsed = notification_parse(body, content_type)
        except MalformedBody as exc:
            malformed = str(exc)
    try:
        account = merchant_account_get(code=account_code)
    except ServiceError:
        account = None

    verdict: Verdict
    if body_truncated:
        verdict = Verdict(Verification.TOO_LARGE, f"body of {body_size} bytes exceeds CODEPAY_NOTIFICATION_MAX_BYTES")
    elif not source_allowed(source_address, conf.allowed_network_entries()):
        verdict = Verdict(
            Verification.SOURCE_NOT_ALLOWED, f"{source_address} is outside CODEPAY_NOTIFICATION_ALLOWED_NETWORKS"
        )
    else:
        verdict = delivery_verdict(account, parsed, malformed)

    fields = parsed.fields if parsed is not None else {}
    address = _ip_or_none(source_address)
    flooding = not verdict.valid and _rejected_recently(address, now=now) >= REJECTED_FULL_PER_SOURCE_PER_MINUTE
    kept_body_bytes = len(body) if verdict.valid else 0 if flooding else REJECTED_BODY_MAX_BYTES
    keep_whole_body = len(body) <= kept_body_bytes
    delivery = NotificationDelivery(
        account=account,
        account_code=account_code[:64],
        received_at=now,
        source_address=address,
        headers={} if flooding else _headers_kept(headers),
        content_type=content_type[:255],
        raw_body=body[:kept_body_bytes],
        body_size=body_size,
        body_truncated=body_truncated or not keep_whole_body,
        payload=fields if parsed is not None and keep_whole_body else None,
        verification=verdict.verification,
        verified_with=verdict.verified_with,
        verification_detail=verdict.detail[:255],
        fingerprint=notification_fingerprint(fields) if parsed is not None else "",
        merchant_order_no=_text(fields, "merchant_order_no", 64),
        trans_no=_text(fields, "trans_no", 64),
        trans_type=_text(fields, "trans_type", 8),
        trans_status=_text(fields, "trans_status", 8),
    )
    if verdict.valid:
        delivery.status = ProcessingStatus.RECEIVED
        # The queued task should have run by then; if not, the sweep takes over.
        delivery.next_attempt_at = now + timedelta(seconds=conf.sweep_grace_seconds())
    else:
        delivery.status = ProcessingStatus.REJECTED
        delivery.status_message = f"not verified: {verdict.verification}"[:255]
        if flooding:
            delivery.status_message = (
                f"not verified: {verdict.verification}; over {REJECTED_FULL_PER_SOURCE_PER_MINUTE} rejected a minute "
                "from this source, body and headers not kept"
            )[:255]
    # One INSERT, committed on its own; the apply task is queued once it is (at once outside a transaction).
    row_insert(delivery)
    if delivery.status == ProcessingStatus.RECEIVED:
        delivery_id = delivery.pk
        transaction.on_commit(lambda: _queue_after_receive(delivery_id), robust=True)

    log = logger.info if verdict.valid else logger.warning
    log(
        "notification received",
        extra={
            "delivery_id": delivery.pk,
            "account_code": account_code,
            "verification": verdict.verification,
            "merchant_order_no": delivery.merchant_order_no,
            "trans_status": delivery.trans_status,
        },
    )
    http_status = _HTTP_STATUS.get(verdict.verification, 400)
    return ReceiveResult(
        delivery_id=delivery.pk,
        verification=verdict.verification,
        http_status=http_status,
        body=SUCCESS_BODY if verdict.valid else f"rejected: {verdict.verification}",
    )


def delivery_verdict(account, parsed: ParsedNotification | None, malformed: str) -> Verdict:
    if account is None:
        return Verdict(Verification.UNKNOWN_ACCOUNT, "no active merchant account with this code")
    if parsed is None:
        return Verdict(Verification.MALFORMED, malformed)
    try:
        # The default account as the CODEPAY_* settings describe it now (a key rotation takes effect on restart).
        configured = merchant_account_effective(account)
    except ServiceError as exc:
        return Verdict(Verification.KEY_UNAVAILABLE, getattr(exc, "detail", exc.message))
    keys = gateway_keys_load({"current": configured.gateway_public_key, "next": configured.next_gateway_public_key})
    for label in keys.unreadable:
        logger.error("gateway public key unreadable", extra={"account_code": account.code, "key": label})
    return notification_verify(parsed, keys=keys, merchant_no=configured.merchant_no, app_id=configured.app_id)


def _rejected_recently(address: str | None, *, now: datetime) -> int:
    return NotificationDelivery.objects.filter(
        source_address=address, status=ProcessingStatus.REJECTED, received_at__gte=now - timedelta(minutes=1)
    ).count()


def _headers_kept(headers: dict[str, str]) -> dict[str, str]:
    """The headers worth keeping, within HEADERS_MAX_BYTES; what is left out is counted under "(truncated)"."""
    kept: dict[str, str] = {}
    budget = HEADERS_MAX_BYTES
    dropped = 0
    for name, value in headers.items():
        if name.lower() in DROPPED_HEADERS:
            continue
        name, value = name[:HEADER_VALUE_MAX_CHARS], str(value)[:HEADER_VALUE_MAX_CHARS]
        cost = len(name.encode()) + len(value.encode())
        if cost > budget:
            dropped += 1
            continue
        kept[name] = value
        budget -= cost
    if dropped:
        kept["(truncated)"] = f"{dropped} more headers over {HEADERS_MAX_BYTES} bytes not kept"
    return kept


def _text(fields: dict, name: str, length: int) -> str:
    value = fields.get(name)
    return "" if value is None else str(value)[:length]


def _ip_or_none(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None


def _queue_after_receive(delivery_id: int) -> None:
    if not apply_task_publish(delivery_id):
        # Due now: the next sweep applies it.
        apply_task_pending_make_due(delivery_id)
