"""
Verify the events the service POSTs to a store system's endpoint.

    CodePay-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">[,v1=...]

Verify the raw body exactly as received (before any JSON parsing), with the endpoint's secret; during a
rotation pass both secrets. An old timestamp is refused so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from typing import Any

from codepay_merchant_client.errors import SignatureVerificationError

SIGNATURE_HEADER = "CodePay-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def verify_signature(
    payload: bytes, header: str | None, secrets: str | Iterable[str], *, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> None:
    """Raise SignatureVerificationError unless one ``v1`` matches one of ``secrets`` and ``t`` is recent."""
    if not header:
        raise SignatureVerificationError(f"No {SIGNATURE_HEADER} header.")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureVerificationError(f"Malformed {SIGNATURE_HEADER} header: expected t=... and v1=....")
    if tolerance and abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise SignatureVerificationError(f"Timestamp outside the {tolerance} s tolerance.")
    signed = f"{timestamp}.".encode() + payload
    secret_list = [secrets] if isinstance(secrets, str) else list(secrets)
    for secret in secret_list:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return
    raise SignatureVerificationError("No signature matches the given secret(s).")


def construct_event(
    payload: bytes, header: str | None, secrets: str | Iterable[str], *, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> dict[str, Any]:
    """The verified event as a dict (``id``, ``type``, ``created``, ``data.object``); raises if not verified."""
    verify_signature(payload, header, secrets, tolerance=tolerance, now=now)
    return json.loads(payload)
