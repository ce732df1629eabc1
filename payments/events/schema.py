"""
The outbound events in the OpenAPI document (its ``webhooks`` section, OpenAPI 3.1): one entry per event
type, with the body the store system's endpoint receives and the answer expected from it.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, OpenApiWebhook, extend_schema, inline_serializer
from rest_framework import serializers as drf

from payments import serializers as api_serializers
from payments.events.models import EventType
from payments.events.signing import SIGNATURE_HEADER

SIGNATURE_NOTE = (
    f'Signed: `{SIGNATURE_HEADER}: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the endpoint secret>`; '
    "during a secret rotation a second `v1` is signed with the previous secret. Verify against the raw body, refuse "
    "timestamps older than 5 minutes, and answer 2xx quickly: anything else (or no answer within 10 s) is retried with "
    "back-off for 3 days. Delivery is at least once: deduplicate on the event `id`. Events of one order reach an "
    "endpoint in the order they happened."
)

_DESCRIPTIONS = {
    EventType.ORDER_SUCCEEDED: "The order is paid.",
    EventType.ORDER_FAILED: "The order failed (declined, closed, or never reached CodePay).",
    EventType.ORDER_CANCELLED: (
        "The order was cancelled (a revoked payment, a voided authorization, a closed terminal order)."
    ),
    EventType.ORDER_EXPIRED: "The order expired unpaid.",
    EventType.ORDER_AUTHORIZED: "A pre-authorization was approved; capture it to take the money.",
    EventType.ORDER_CAPTURED: "An authorization was captured: the order is paid.",
    EventType.ORDER_CONFLICT: (
        "CodePay reported amounts that differ from ours; nothing was changed and an operator looks into it."
    ),
    EventType.REFUND_SUCCEEDED: "A refund went through.",
    EventType.REFUND_FAILED: "A refund failed; its amount can be refunded again.",
    EventType.ENDPOINT_DISABLED: "Another endpoint of the account was disabled after failing for days.",
}


def _event_body(event_type: str, data_object) -> drf.Serializer:
    name = "".join(part.capitalize() for part in event_type.replace(".", "_").split("_"))
    data_fields = {"object": data_object}
    if event_type == EventType.ORDER_CONFLICT:
        data_fields["message"] = drf.CharField(help_text="What differs.")
    return inline_serializer(
        name=f"{name}Event",
        fields={
            "id": drf.CharField(help_text="evt_<number>; the same on every retry of this event."),
            "type": drf.ChoiceField(choices=[str(event_type)]),
            "created": drf.DateTimeField(),
            "livemode": drf.BooleanField(),
            "data": inline_serializer(name=f"{name}EventData", fields=data_fields),
        },
    )


def _data_object(event_type: str):
    if event_type.startswith("refund."):
        return api_serializers.RefundSerializer()
    if event_type == EventType.ENDPOINT_DISABLED:
        return inline_serializer(
            name="DisabledEndpoint",
            fields={
                "id": drf.IntegerField(),
                "url": drf.URLField(),
                "store_no": drf.CharField(),
                "disabled_reason": drf.CharField(),
            },
        )
    return api_serializers.OrderSerializer()


WEBHOOKS = [
    OpenApiWebhook(
        name=str(event_type),
        decorator=extend_schema(
            summary=description,
            description=SIGNATURE_NOTE,
            tags=["events"],
            request=_event_body(event_type, _data_object(event_type)),
            responses={200: OpenApiResponse(description="Received (any 2xx).")},
        ),
    )
    for event_type, description in _DESCRIPTIONS.items()
]
