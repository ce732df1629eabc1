"""
The event endpoint API: store systems register, list, remove, rotate the secret of, and re-enable the
URLs that receive their events. Scoped like every other API call: the key's account, and its store if bound.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from codepay_service.errors import NotFound
from payments.api import COMMON_ERRORS, _errors, _validated
from payments.events import serializers
from payments.events.models import EventEndpoint
from payments.events.services import endpoint_create, endpoint_enable, endpoint_rotate_secret
from payments.services.accounts import store_no_resolve

TAGS = ["events"]


def _endpoints(api_key):
    endpoints = EventEndpoint.objects.filter(account_id=api_key.account_id)
    return endpoints.filter(store_no=api_key.store_no) if api_key.store_no else endpoints


def _endpoint_get(api_key, endpoint_id: int) -> EventEndpoint:
    endpoint = _endpoints(api_key).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"No event endpoint {endpoint_id} for this API key.")
    return endpoint


class EventEndpointListCreateApi(APIView):
    @extend_schema(
        tags=TAGS,
        operation_id="event_endpoints_list",
        summary="List event endpoints",
        description="The endpoints this API key may manage: the account's, or only its store's for a store-bound key.",
        responses={200: serializers.EventEndpointSerializer(many=True), **_errors(*COMMON_ERRORS)},
    )
    def get(self, request):
        return Response(serializers.EventEndpointSerializer(_endpoints(request.auth), many=True).data)

    @extend_schema(
        tags=TAGS,
        operation_id="event_endpoints_create",
        summary="Register an event endpoint",
        request=serializers.EventEndpointCreateSerializer,
        responses={201: serializers.EventEndpointWithSecretSerializer, **_errors(400, *COMMON_ERRORS)},
        description=(
            "Register a URL for the account's events (or one store's). "
            "The answer holds the signing secret, shown only here."
        ),
    )
    def post(self, request):
        data = _validated(serializers.EventEndpointCreateSerializer, request).validated_data
        # A store-bound key registers for its own store only; an account-wide key for any or all stores.
        store_no = (
            store_no_resolve(account=request.auth.account, api_key=request.auth, requested=data["store_no"])
            if request.auth.store_no
            else data["store_no"]
        )
        endpoint = endpoint_create(
            account=request.auth.account,
            url=data["url"],
            store_no=store_no,
            event_types=data["event_types"],
            description=data["description"],
        )
        return Response(serializers.EventEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EventEndpointDetailApi(APIView):
    @extend_schema(
        tags=TAGS,
        operation_id="event_endpoints_retrieve",
        summary="Read an event endpoint",
        description="Its URL, store, event types, and whether it is enabled or was disabled for failing.",
        responses={200: serializers.EventEndpointSerializer, **_errors(404, *COMMON_ERRORS)},
    )
    def get(self, request, endpoint_id):
        return Response(serializers.EventEndpointSerializer(_endpoint_get(request.auth, endpoint_id)).data)

    @extend_schema(
        tags=TAGS,
        operation_id="event_endpoints_destroy",
        summary="Remove an event endpoint",
        description="No further events are sent to it; what was already delivered stays in the delivery log.",
        responses={204: None, **_errors(404, *COMMON_ERRORS)},
    )
    def delete(self, request, endpoint_id):
        _endpoint_get(request.auth, endpoint_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventEndpointRotateSecretApi(APIView):
    @extend_schema(
        tags=TAGS,
        operation_id="event_endpoints_rotate_secret",
        summary="Rotate an endpoint's signing secret",
        request=serializers.RotateSecretSerializer,
        responses={200: serializers.EventEndpointWithSecretSerializer, **_errors(400, 404, *COMMON_ERRORS)},
        description="A new signing secret; the previous one keeps signing too (a second `v1`) for `overlap_seconds`.",
    )
    def post(self, request, endpoint_id):
        endpoint = _endpoint_get(request.auth, endpoint_id)
        data = _validated(serializers.RotateSecretSerializer, request).validated_data
        endpoint = endpoint_rotate_secret(endpoint=endpoint, overlap_seconds=data["overlap_seconds"])
        return Response(serializers.EventEndpointWithSecretSerializer(endpoint).data)


class EventEndpointEnableApi(APIView):
    @extend_schema(
        tags=TAGS,
        operation_id="event_endpoints_enable",
        summary="Re-enable an event endpoint",
        request=None,
        responses={200: serializers.EventEndpointSerializer, **_errors(404, *COMMON_ERRORS)},
        description="Turn an endpoint disabled for failing back on; the events it missed are sent, oldest first.",
    )
    def post(self, request, endpoint_id):
        endpoint = endpoint_enable(endpoint=_endpoint_get(request.auth, endpoint_id))
        return Response(serializers.EventEndpointSerializer(endpoint).data)
