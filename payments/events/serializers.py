"""Input and output of the event endpoint API."""

from __future__ import annotations

from rest_framework import serializers

from payments.events.models import EventEndpoint, EventType

SUBSCRIBABLE_TYPES = [choice for choice, _ in EventType.choices]
MAX_OVERLAP_SECONDS = 7 * 24 * 3600


class EventEndpointCreateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=512, help_text="Where events are POSTed (https in production).")
    store_no = serializers.CharField(
        max_length=32, required=False, default="", allow_blank=True, help_text="Empty: every store."
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE_TYPES),
        required=False,
        default=list,
        help_text="Empty: every type.",
    )
    description = serializers.CharField(max_length=128, required=False, default="", allow_blank=True)


class RotateSecretSerializer(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(
        min_value=0,
        max_value=MAX_OVERLAP_SECONDS,
        default=86400,
        help_text="How long the previous secret keeps signing too (0 to 604800; default one day).",
    )


class EventEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = EventEndpoint
        fields = [
            "id",
            "url",
            "store_no",
            "event_types",
            "description",
            "is_active",
            "disabled_at",
            "disabled_reason",
            "previous_secret_expires_at",
            "created_at",
        ]
        read_only_fields = fields


class EventEndpointWithSecretSerializer(EventEndpointSerializer):
    """Only in the answer to a create or a rotation: the secret is not shown again."""

    class Meta(EventEndpointSerializer.Meta):
        fields = [*EventEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields
