"""
The REST API for store systems: one view per operation, each parsing input, calling one service or
selector, and rendering. Every POST honours an ``Idempotency-Key`` header.
"""

from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from codepay_service.errors import ServiceError, ValidationFailed
from payments import selectors, serializers
from payments.services.accounts import store_no_resolve
from payments.services.batches import batch_close, batch_open_summary
from payments.services.gateway_errors import gateway_errors_as_service_errors
from payments.services.idempotency import StoredResponse, idempotency_begin, idempotency_finish, idempotency_release
from payments.services.operations import order_cancel, order_capture, order_increment, order_tip_adjust
from payments.services.orders import order_create, order_sync
from payments.services.refunds import order_refund

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Same key and body: the stored answer is replayed without a second gateway call (kept 48 h).",
)


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "Invalid input; `details` names each field and the fix.",
        401: "No API key, or an unknown or revoked one.",
        404: "No such object for this API key's account and store.",
        409: "State conflict (e.g. refund of an unpaid order, duplicate merchant_order_no, request in flight).",
        422: "Idempotency-Key reused with a different body.",
        429: "Too many requests for this API key.",
        500: "The service's CodePay configuration is wrong (code `gateway_misconfigured`), or an internal error.",
        502: "CodePay refused the request; `details` has its code and message.",
        503: "CodePay could not be reached, or its answer was lost; see the message.",
    }
    return {code: OpenApiResponse(serializers.ErrorSerializer, description=descriptions[code]) for code in codes}


COMMON_ERRORS = (401, 429)


class OrderCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class IdempotentPostApi(APIView):
    """A POST that replays its first answer for a repeated Idempotency-Key. Subclasses implement ``handle_post``."""

    def post(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return self.handle_post(request, *args, **kwargs)
        claim = idempotency_begin(api_key=request.auth, key=key, method=request.method, path=request.path, body=request.data)
        if isinstance(claim, StoredResponse):
            return Response(claim.body, status=claim.status, headers={"Idempotent-Replayed": "true"})
        try:
            try:
                response = self.handle_post(request, *args, **kwargs)
            except (ServiceError, APIException) as exc:
                response = self.handle_exception(exc)
        except Exception:
            idempotency_release(record=claim)
            raise
        body = json.loads(JSONRenderer().render(response.data)) if response.data is not None else None
        idempotency_finish(record=claim, status=response.status_code, body=body)
        return response

    def handle_post(self, request, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError


def _validated(serializer_class, request, **context):
    serializer = serializer_class(data=request.data, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return serializer


@extend_schema_view(post=extend_schema(
    operation_id="orders_create",
    parameters=[IDEMPOTENCY_HEADER],
    request=serializers.OrderCreateSerializer,
    responses={
        201: serializers.OrderSerializer,
        202: OpenApiResponse(serializers.OrderSerializer, description="Sent, but CodePay's answer was lost: status `unknown`, resolved by query."),
        **_errors(400, 409, 422, 500, 502, 503, *COMMON_ERRORS),
    },
))
class OrderListCreateApi(IdempotentPostApi):
    pagination_class = OrderCursorPagination

    @extend_schema(
        operation_id="orders_list",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=[c for c, _ in serializers.Order._meta.get_field("status").choices]),
            OpenApiParameter("channel", OpenApiTypes.STR, enum=["terminal", "checkout", "card"]),
            OpenApiParameter("store_no", OpenApiTypes.STR),
            OpenApiParameter("terminal_sn", OpenApiTypes.STR),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
            OpenApiParameter("cursor", OpenApiTypes.STR),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
        responses={200: serializers.OrderSerializer(many=True), **_errors(400, *COMMON_ERRORS)},
    )
    def get(self, request):
        filterset = selectors.OrderFilter(request.query_params, queryset=selectors.order_list(api_key=request.auth))
        if not filterset.is_valid():
            raise ValidationFailed(details={field: list(errors) for field, errors in filterset.errors.items()})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(filterset.qs, request, view=self)
        return paginator.get_paginated_response(serializers.OrderSerializer(page, many=True).data)

    def handle_post(self, request):
        serializer = _validated(serializers.OrderCreateSerializer, request)
        data = dict(serializer.validated_data)
        card = serializer.card_details()
        options = {
            name: data.pop(name)
            for name in ("card_type", "on_screen_tip", "on_screen_signature", "confirm_on_terminal",
                         "reject_when_terminal_offline", "receipt_print_mode", "return_url", "order_detail", "billing_address")
            if name in data
        }
        data.pop("card", None)
        result = order_create(account=request.auth.account, api_key=request.auth, options=options, card=card, **data)
        # A new order has no refunds yet: its answer needs no query for them.
        result.order._prefetched_objects_cache = {"refunds": result.order.refunds.none()}
        return Response(
            serializers.OrderSerializer(result.order).data,
            status=status.HTTP_202_ACCEPTED if result.outcome_unknown else status.HTTP_201_CREATED,
        )


class OrderDetailApi(APIView):
    @extend_schema(responses={200: serializers.OrderDetailSerializer, **_errors(404, *COMMON_ERRORS)})
    def get(self, request, merchant_order_no):
        order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        return Response(serializers.OrderDetailSerializer(order).data)


@extend_schema_view(post=extend_schema(
    operation_id="orders_refunds_create",
    parameters=[IDEMPOTENCY_HEADER],
    request=serializers.RefundCreateSerializer,
    responses={
        201: serializers.RefundSerializer,
        202: OpenApiResponse(serializers.RefundSerializer, description="Sent, outcome not yet known (`unknown`)."),
        **_errors(400, 404, 409, 422, 500, 502, 503, *COMMON_ERRORS),
    },
))
class OrderRefundCreateApi(IdempotentPostApi):
    def handle_post(self, request, merchant_order_no):
        order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        data = _validated(serializers.RefundCreateSerializer, request, currency=order.currency).validated_data
        refund = order_refund(order=order, api_key=request.auth, **data)
        code = status.HTTP_202_ACCEPTED if refund.status == "unknown" else status.HTTP_201_CREATED
        return Response(serializers.RefundSerializer(refund).data, status=code)


class RefundDetailApi(APIView):
    @extend_schema(responses={200: serializers.RefundSerializer, **_errors(404, *COMMON_ERRORS)})
    def get(self, request, merchant_order_no):
        refund = selectors.refund_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        return Response(serializers.RefundSerializer(refund).data)


class _OrderActionApi(IdempotentPostApi):
    """POST /orders/{merchant_order_no}/<action>/: one service call, answers the updated order."""

    input_serializer = None

    def act(self, order, data):  # pragma: no cover - abstract
        raise NotImplementedError

    def handle_post(self, request, merchant_order_no):
        order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        data = {}
        if self.input_serializer is not None:
            data = _validated(self.input_serializer, request, currency=order.currency).validated_data
        result = self.act(order, data)
        order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        unknown = result is not None and result.outcome_unknown
        return Response(serializers.OrderDetailSerializer(order).data, status=status.HTTP_202_ACCEPTED if unknown else status.HTTP_200_OK)


def _action_schema(request_serializer=None, description=""):
    return extend_schema(
        parameters=[IDEMPOTENCY_HEADER],
        request=request_serializer,
        description=description,
        responses={
            200: serializers.OrderDetailSerializer,
            202: OpenApiResponse(serializers.OrderDetailSerializer, description="Sent, but CodePay's answer was lost: the operation is `unknown` and is looked up, never resent."),
            **_errors(400, 404, 409, 422, 500, 502, 503, *COMMON_ERRORS),
        },
    )


class OrderCancelApi(_OrderActionApi):
    @_action_schema(description="Close a waiting terminal order, revoke a waiting online order, or void an authorization.")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        return order_cancel(order=order)


class OrderCaptureApi(_OrderActionApi):
    input_serializer = serializers.AmountSerializer

    @_action_schema(serializers.AmountSerializer, "Capture an authorization; a partial amount is allowed.")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        return order_capture(order=order, amount=data["amount"])


class OrderIncrementApi(_OrderActionApi):
    input_serializer = serializers.AmountSerializer

    @_action_schema(serializers.AmountSerializer, "Raise an authorization by `amount`.")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        return order_increment(order=order, amount=data["amount"])


class OrderTipApi(_OrderActionApi):
    input_serializer = serializers.TipSerializer

    @_action_schema(serializers.TipSerializer, "Set the tip of a paid sale before its batch closes.")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        return order_tip_adjust(order=order, tip_amount=data["tip_amount"])


class OrderSyncApi(_OrderActionApi):
    @_action_schema(description="Query CodePay now and apply what it says.")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        with gateway_errors_as_service_errors("order query"):
            order_sync(order=order, source="api")


class BatchOpenApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("terminal_sn", OpenApiTypes.STR), OpenApiParameter("store_no", OpenApiTypes.STR)],
        responses={200: serializers.OpenBatchSerializer, **_errors(400, 502, 503, *COMMON_ERRORS)},
    )
    def get(self, request):
        store_no = store_no_resolve(account=request.auth.account, api_key=request.auth, requested=request.query_params.get("store_no", ""))
        terminal_sn = request.query_params.get("terminal_sn", "")
        summary = batch_open_summary(account=request.auth.account, store_no=store_no, terminal_sn_list=[terminal_sn] if terminal_sn else None)
        return Response(
            serializers.OpenBatchSerializer(
                {"count": summary.count, "total_amount": summary.total_amount, "store_no": store_no, "terminal_sn": terminal_sn}
            ).data
        )


@extend_schema_view(post=extend_schema(
    parameters=[IDEMPOTENCY_HEADER],
    request=serializers.BatchCloseInputSerializer,
    responses={201: serializers.BatchCloseSerializer, **_errors(400, 409, 422, *COMMON_ERRORS)},
))
class BatchCloseApi(IdempotentPostApi):
    def handle_post(self, request):
        data = _validated(serializers.BatchCloseInputSerializer, request).validated_data
        batch = batch_close(
            account=request.auth.account,
            trigger="api",
            store_no=store_no_resolve(account=request.auth.account, api_key=request.auth, requested=data.get("store_no", "")),
            terminal_sn_list=data.get("terminal_sn_list"),
            api_key=request.auth,
        )
        return Response(serializers.BatchCloseSerializer(batch).data, status=status.HTTP_201_CREATED)


class BatchListApi(APIView):
    pagination_class = OrderCursorPagination

    @extend_schema(
        parameters=[OpenApiParameter("cursor", OpenApiTypes.STR), OpenApiParameter("page_size", OpenApiTypes.INT)],
        responses={200: serializers.BatchCloseSerializer(many=True), **_errors(*COMMON_ERRORS)},
    )
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.batch_close_list(api_key=request.auth), request, view=self)
        return paginator.get_paginated_response(serializers.BatchCloseSerializer(page, many=True).data)

