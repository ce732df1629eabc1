"""
The signature on every outbound event, as Stripe signs its webhooks.

    CodePay-Signature: t=1717171717,v1=<hex HMAC-SHA256 of "t.body" with the endpoint secret>[,v1=<previous secret>]

The timestamp is inside what is signed, so a receiver that refuses old timestamps (5 minutes is usual)
refuses replays too. During a secret rotation both secrets sign, each as its own ``v1``, so a receiver
holding either one verifies every event.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "CodePay-Signature"


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(*, secrets: list[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={signature(secret=s, timestamp=timestamp, body=body)}" for s in secrets)])
