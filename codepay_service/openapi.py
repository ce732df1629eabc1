"""
How the API describes itself (``/api/schema/``, ``/api/docs/``): what every operation shares is added here
once (the request id header, the idempotency headers of every POST, the tag of each resource), and the
page opens with what a store developer needs before the first call. Each operation's own summary,
description and examples sit with its view.
"""

from __future__ import annotations

import re

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

REQUEST_ID = OpenApiParameter(
    "X-Request-ID",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Optional. Your id for this request (letters, digits and `. _ : -`, up to 128 characters); it is written "
        "on every log line the request produces, so support can find it. Anything else is replaced by a "
        "generated id."
    ),
)
REQUEST_ID_ANSWERED = OpenApiParameter(
    "X-Request-ID",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=True,
    description=(
        "The request's id: yours when you sent a valid one, otherwise generated. Quote it when asking for support."
    ),
)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Optional, recommended. A unique key per intended operation (a UUID). Sending the same key with the "
        "same body again, after a timeout or a lost connection, answers the first result again without "
        "charging or refunding twice. Keys are kept 48 hours; the same key with a different body is refused "
        "(422); a retry while the first request is still running gets 409 `idempotency_key_in_use`."
    ),
)
IDEMPOTENT_REPLAYED = OpenApiParameter(
    "Idempotent-Replayed",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=True,
    enum=["true"],
    description=(
        "`true` when this answer is the stored answer to an earlier request with the same Idempotency-Key; "
        "absent otherwise."
    ),
)

# The tag of each path, most specific pattern first.
TAGS = (
    (re.compile(r"^/api/v1/orders/[^/]+/refunds/$|^/api/v1/refunds/"), "refunds"),
    (re.compile(r"^/api/v1/orders/[^/]+/(cancel|capture|increment|tip|sync)/$"), "operations"),
    (re.compile(r"^/api/v1/orders/"), "orders"),
    (re.compile(r"^/api/v1/batches/"), "batches"),
    (re.compile(r"^/api/v1/event-endpoints/"), "events"),
    (re.compile(r"^/(healthz|readyz)$"), "health"),
)

TAG_DESCRIPTIONS = [
    {
        "name": "orders",
        "description": (
            "Take a payment: on a card terminal, on a hosted checkout page, or with card details you collected. "
            "Follow it until it is final."
        ),
    },
    {
        "name": "refunds",
        "description": "Give money back on a paid order, in full or in part, as many times as the paid amount allows.",
    },
    {
        "name": "operations",
        "description": (
            "Act on an existing order: cancel or void it, capture or raise an authorization, adjust a tip, "
            "or ask CodePay for its state now."
        ),
    },
    {"name": "batches", "description": "Settle the day: see what is in a terminal's open batch and close it."},
    {
        "name": "events",
        "description": (
            "Register the URLs that receive signed events when an order or refund changes, "
            "so your system is told instead of polling."
        ),
    },
    {"name": "health", "description": "For load balancers and orchestrators; no API key."},
]

API_DESCRIPTION = """
Take card, wallet and terminal payments through CodePay from your store system. This service talks to
CodePay for you: it signs requests, keeps every order and refund, applies CodePay's notifications and
looks up anything whose outcome was lost.

**Authentication.** Send `Authorization: Api-Key <key>` on every call. A key belongs to one merchant account
and may be limited to one store; it only sees that account's (and store's) orders.

**Money.** Amounts are strings in major units with the currency's digits: `"12.34"` USD, `"200"` JPY. A JSON
number is refused, so no amount is ever rounded by a float.

**Retries.** Send an `Idempotency-Key` with every POST. When a call times out, send it again with the same key
and body: you get the first answer (with `Idempotent-Replayed: true`), never a second charge.

**Outcomes.** `201`/`200`: done, the body says the state. `202`: the request reached CodePay but its answer was
lost; the order, refund or operation is `unknown` and the service finds out by itself — read it again
later (or call `sync`), do not send it again under a new key.

**Errors.** Every error has the same body: `{"error": {"code", "message", "details"}}`; `details` names each
invalid field and how to fix it. `code` is stable, `message` is for people.

**Support.** Every answer carries `X-Request-ID`; send your own to join your logs with ours.
""".strip()


class ServiceAutoSchema(AutoSchema):
    def get_tags(self) -> list[str]:
        explicit = super().get_tags()
        for pattern, tag in TAGS:
            if pattern.search(self.path):
                return [tag]
        return explicit

    def get_override_parameters(self):
        parameters = [*super().get_override_parameters(), REQUEST_ID, REQUEST_ID_ANSWERED]
        if self.method == "POST" and self.path.startswith("/api/v1/"):
            parameters += [IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED]
        return parameters


def describe_api(result, generator, request, public):
    """Postprocessing hook: the introduction and the tag descriptions of the page."""
    result["info"]["description"] = API_DESCRIPTION
    result["tags"] = TAG_DESCRIPTIONS
    return result
