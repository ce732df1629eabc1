"""
Delivery of payment and refund notifications to ``notify_url``, as the gateway does it.

docs/protocol.md, "Notifications": the gateway POSTs a flat JSON object signed with its key
whenever a transaction reaches a final status. The merchant must answer HTTP 200 with the plain text
``success`` within 5 seconds; anything else is a failure and is retried on a fixed schedule, 15 tries in
all. The sandbox follows that schedule multiplied by ``schedule_scale``, so a test can watch retries in
milliseconds. Every attempt is recorded on the transaction for the control API.

Each notification is delivered by its own daemon thread: a slow or dead receiver holds up nobody else,
and ``cancel_all`` (on reset and stop) wakes every thread still waiting to retry and ends it.
Bodies are never logged; they carry nothing secret, but logs stay small and structured.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from payments.gateway import signing
from payments.gateway.methods import TransStatus
from payments.gateway.money import format_amount

from .faults import Fault, FaultPlan

logger = logging.getLogger(__name__)

# Waits before each retry; with the first try, 15 tries over about 12 hours (docs/protocol.md, corroborated).
RETRY_DELAYS_SECONDS = (5, 10, 15, 30, 60, 180, 600, 900, 1800, 1800, 1800, 10800, 10800, 10800)
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 5.0
BODY_SNIPPET_CHARS = 200


class Notifier:
    def __init__(
        self,
        *,
        gateway_private_key: rsa.RSAPrivateKey,
        faults: FaultPlan,
        record_attempt: Callable[[str, dict], None],
        schedule_scale: float = 1.0,
    ):
        self._gateway_private_key = gateway_private_key
        self._faults = faults
        self._record_attempt = record_attempt
        self._schedule_scale = schedule_scale
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def notify(self, url: str, fields: dict[str, str]) -> None:
        """Start delivering ``fields`` (unsigned) to ``url`` in the background; returns at once.

        The state calls this under its lock, so it only starts threads: everything that records an
        attempt (which takes that lock again) happens on them.
        """
        fault = self._faults.take_notification_fault()
        with self._lock:
            cancelled = self._cancelled
        copies = fault.count if fault is not None and fault.fault == "duplicate" else 1
        for _ in range(copies):
            threading.Thread(
                target=self._deliver_all,
                args=(url, fields, fault, cancelled),
                name=f"sandbox-notify-{fields['trans_no']}",
                daemon=True,
            ).start()

    def cancel_all(self) -> None:
        """End every delivery in flight; the next notification starts afresh."""
        with self._lock:
            self._cancelled.set()
            self._cancelled = threading.Event()

    def _deliver_all(self, url: str, fields: dict[str, str], fault: Fault | None, cancelled: threading.Event) -> None:
        if fault is not None and fault.fault == "drop":
            self._record(fields, outcome="dropped")
            return
        if fault is not None and fault.fault == "delay" and cancelled.wait(fault.seconds):
            return
        self._deliver(url, fields, cancelled)
        if fault is not None and fault.fault == "reorder":
            # A stale "in progress" message arriving after the final one, as a slow retry of it would.
            stale = {
                **fields,
                "trans_status": TransStatus.IN_PROGRESS.value,
                "paid_amount": format_amount(Decimal(0), fields["price_currency"]),
                "trans_end_time": "",
            }
            self._deliver(url, stale, cancelled)

    def _deliver(self, url: str, fields: dict[str, str], cancelled: threading.Event) -> None:
        body = json.dumps({**fields, "sign": signing.sign(fields, self._gateway_private_key)}, ensure_ascii=False)
        for attempt, delay in enumerate((0, *RETRY_DELAYS_SECONDS), start=1):
            if cancelled.wait(delay * self._schedule_scale):
                return
            if self._post(url, body, fields, attempt):
                return
        logger.warning("Notification abandoned after %d tries", attempt, extra={"trans_no": fields["trans_no"]})

    def _post(self, url: str, body: str, fields: dict[str, str], attempt: int) -> bool:
        try:
            response = requests.post(
                url,
                data=body.encode("utf-8"),
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
            )
        except requests.RequestException as exc:
            self._record(fields, outcome="failed", attempt=attempt, error=type(exc).__name__)
            return False
        delivered = response.status_code == 200 and response.text.strip() == "success"
        self._record(
            fields,
            outcome="delivered" if delivered else "failed",
            attempt=attempt,
            http_status=response.status_code,
            body=response.text[:BODY_SNIPPET_CHARS],
        )
        return delivered

    def _record(self, fields: dict[str, str], *, outcome: str, attempt: int = 0, **details) -> None:
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "attempt": attempt,
            "trans_status": fields["trans_status"],
            "outcome": outcome,
            **details,
        }
        self._record_attempt(fields["trans_no"], record)
        logger.info(
            "Notification %s",
            outcome,
            extra={"trans_no": fields["trans_no"], "attempt": attempt, "http_status": details.get("http_status")},
        )
