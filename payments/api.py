"""
The REST API for store systems: one view per operation, each parsing input, calling one service or
selector, and rendering. Every POST honours an ``Idempotency-Key`` header.

The texts in ``extend_schema`` are the API documentation (``/api/docs/``), written for the developer of
a store system; headers every operation shares are added by ``codepay_service.openapi``.
"""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from codepay_service.errors import ServiceError, ValidationFailed
from payments import api_examples as examples
from payments import selectors, serializers
from payments.gateway import vocabulary
from payments.models import Order
from payments.services.accounts import store_no_resolve
from payments.services.batches import batch_close, batch_open_summary
from payments.services.gateway_errors import gateway_errors_as_service_errors
from payments.services.idempotency import StoredResponse, idempotency_begin, idempotency_finish, idempotency_release
from payments.services.operations import order_cancel, order_capture, order_increment, order_tip_adjust
from payments.services.orders import order_create, order_sync
from payments.services.refunds import order_refund
from payments.services.results import WriteResult
from payments.services.waits import database_read_then_release, order_wait_until, wsgi_wait_slot
from payments.state_machine import ORDER_OPEN_STATUSES


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
    """Cursor pages; a cursor that does not decode or a page_size that is not 1..200 is a 400, not ignored."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    query_params = ("cursor", "page_size")

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationFailed(details={"page_size": [f"A whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except selectors.UNREADABLE_ROW_ERRORS:
            # One row the database cannot give back (logged by unreadable_rows) must not fail every page.
            return super().paginate_queryset(
                queryset.exclude(pk__in=selectors.unreadable_rows(queryset)), request, view
            )

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationFailed(
                details={"cursor": ["Not a cursor this API issued; use the `next` or `previous` link of a page."]}
            ) from None


MAX_QUERY_VALUE_LENGTH = 256


def query_params_check(request, allowed: tuple[str, ...]) -> None:
    """A list's query parameters: each known and given once, so a mistyped filter never returns everything."""
    errors = {}
    for name in request.query_params:
        values = request.query_params.getlist(name)
        if name not in allowed:
            errors[name] = [f"Unknown query parameter; this list takes: {', '.join(allowed)}."]
        elif len(values) > 1:
            errors[name] = ["Given more than once; give it once."]
        elif len(values[0]) > MAX_QUERY_VALUE_LENGTH or not values[0].isprintable():
            # A NUL or other control character would reach the database; nothing the API lists contains one.
            errors[name] = [f"At most {MAX_QUERY_VALUE_LENGTH} printable characters."]
    if errors:
        raise ValidationFailed(details=errors)


class IdempotentPostApi(APIView):
    # Not a docstring: drf-spectacular would publish it as the description of every POST.
    # A POST that replays its first answer for a repeated Idempotency-Key; subclasses implement ``handle_post``.

    def post(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return self.handle_post(request, *args, **kwargs)
        claim = idempotency_begin(
            api_key=request.auth, key=key, method=request.method, path=request.path, body=request.data
        )
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


@extend_schema_view(
    post=extend_schema(
        operation_id="orders_create",
        summary="Create an order",
        description=(
            "Start a payment on one of three channels. `terminal`: the order is pushed to the card terminal "
            "`terminal_sn` and is `pending` until the customer pays there. `checkout`: the answer has a `pay_url` "
            "for the customer's browser. `card`: you send the card details and the answer is final (`succeeded` "
            "or `failed`), or carries `redirect_url_3dsecure` when the issuer asks for 3-D Secure.\n\n"
            "Follow a pending order by reading it (`GET /orders/{merchant_order_no}/`); it becomes `succeeded`, "
            "`failed`, `cancelled` or `expired` (after `expires_in` seconds). `merchant_order_no` is yours to choose "
            "(unique per merchant account) or generated."
        ),
        request=serializers.OrderCreateSerializer,
        examples=[
            *examples.ORDER_CREATE_REQUESTS,
            examples.ORDER_PENDING,
            examples.ORDER_UNKNOWN,
            examples.INVALID_FIELDS,
        ],
        responses={
            201: OpenApiResponse(
                serializers.OrderSerializer, description="Created; `status` says where the payment is."
            ),
            202: OpenApiResponse(
                serializers.OrderSerializer,
                description="Sent, but CodePay's answer was lost: status `unknown`, resolved by query.",
            ),
            **_errors(400, 409, 422, 500, 502, 503, *COMMON_ERRORS),
        },
    )
)
@method_decorator(sensitive_post_parameters(), name="dispatch")
class OrderListCreateApi(IdempotentPostApi):
    pagination_class = OrderCursorPagination

    @extend_schema(
        operation_id="orders_list",
        summary="List orders",
        description=(
            "Your orders, newest first, a page at a time (follow `next`). Filter by status, channel, store, "
            "terminal and creation time. Only the orders your API key may see are listed."
        ),
        examples=[examples.ORDER_LIST],
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                enum=[c for c, _ in serializers.Order._meta.get_field("status").choices or ()],
            ),
            OpenApiParameter("channel", OpenApiTypes.STR, enum=["terminal", "checkout", "card"]),
            OpenApiParameter("store_no", OpenApiTypes.STR, description="Only this store's orders."),
            OpenApiParameter("terminal_sn", OpenApiTypes.STR, description="Only this terminal's orders."),
            OpenApiParameter(
                "created_after", OpenApiTypes.DATETIME, description="ISO 8601, e.g. `2024-02-28T00:00:00Z`."
            ),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME, description="ISO 8601, exclusive."),
            OpenApiParameter(
                "cursor", OpenApiTypes.STR, description="Taken from `next` or `previous`; do not build it."
            ),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="1 to 200; 50 by default."),
        ],
        responses={200: serializers.OrderSerializer(many=True), **_errors(400, *COMMON_ERRORS)},
    )
    def get(self, request):
        query_params_check(request, (*selectors.OrderFilter.base_filters, *OrderCursorPagination.query_params))
        filterset = selectors.OrderFilter(request.query_params, queryset=selectors.order_list(api_key=request.auth))
        if not filterset.is_valid():
            raise ValidationFailed(details={field: list(errors) for field, errors in filterset.errors.items()})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(filterset.qs, request, view=self)
        return paginator.get_paginated_response(serializers.OrderSerializer(page, many=True).data)

    # The body may hold a card (pan, cvv): no debug page or error report shows the variables of this
    # frame or of any frame it calls (Django hides every frame below a sensitive_variables wrapper).
    @sensitive_variables()
    def handle_post(self, request):
        serializer = _validated(serializers.OrderCreateSerializer, request)
        data = dict(serializer.validated_data)
        card = serializer.card_details()
        options = {name: data.pop(name) for name in vocabulary.ORDER_OPTIONS if name in data}
        data.pop("card", None)
        result = order_create(account=request.auth.account, api_key=request.auth, options=options, card=card, **data)
        # A new order has no refunds yet: its answer needs no query for them. Django's prefetch cache is
        # private, so the stubs do not declare it.
        result.obj._prefetched_objects_cache = {"refunds": result.obj.refunds.none()}  # type: ignore[attr-defined]
        return Response(
            serializers.OrderSerializer(result.obj).data,
            status=status.HTTP_202_ACCEPTED if result.outcome_unknown else status.HTTP_201_CREATED,
        )


WAIT_PARAMETER = OpenApiParameter(
    "wait",
    OpenApiTypes.INT,
    description=(
        "Seconds (0-60) to wait for the order to leave `pending`, `processing` or `unknown` before "
        "answering; the answer comes as soon as it does, or after the wait with the current state."
    ),
)


class OrderDetailApi(APIView):
    @extend_schema(
        operation_id="orders_retrieve",
        summary="Read an order",
        description=(
            "The order as the service knows it now, with its refunds and operations (captures, voids, tip "
            "adjustments). While an order is `pending`, `processing` or `unknown`, pass `wait` to be answered as "
            "soon as it settles instead of polling: notifications from CodePay and the service's own look-ups "
            "keep it current."
        ),
        parameters=[WAIT_PARAMETER],
        examples=[examples.ORDER_SUCCEEDED, examples.ORDER_REFUNDED],
        responses={200: serializers.OrderDetailSerializer, **_errors(400, 404, *COMMON_ERRORS)},
    )
    def get(self, request, merchant_order_no):
        wait = serializers.wait_seconds(request.query_params)
        order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        if wait:
            # For order_detail_view, which waits after this answer (the view of record for the schema).
            request._request.order_wait = (order.pk, wait)
        return Response(serializers.OrderDetailSerializer(order).data)


_order_detail_sync = OrderDetailApi.as_view()


async def order_detail_view(request, merchant_order_no):
    """
    GET /orders/{merchant_order_no}/: ``OrderDetailApi``, and with ``?wait=`` the wait in between
    (payments.services.waits explains why this is async). Authentication, validation and both reads
    run on Django's sync thread; the wait itself holds neither a thread nor a database connection.
    """
    response = await sync_to_async(_order_detail_then_release)(request, merchant_order_no)
    order_wait = getattr(request, "order_wait", None)
    if order_wait is None or response.status_code != 200 or response.data["status"] not in ORDER_OPEN_STATUSES:
        return response
    order_id, seconds = order_wait
    with wsgi_wait_slot(is_wsgi="wsgi.version" in request.META) as may_wait:
        if not may_wait:
            response["Wait-Skipped"] = "busy"
            return response
        await order_wait_until(
            order_id=order_id,
            seconds=seconds,
            is_settled=sync_to_async(lambda: _order_is_settled_then_release(order_id)),
        )
    return await sync_to_async(database_read_then_release)(lambda: _order_detail_render(request, merchant_order_no))


# A waiting request must not hold a database connection: each of its reads gives it back (and a burst of
# waiters shares a few), see payments.services.waits.database_read_then_release.


def _order_detail_then_release(request, merchant_order_no):
    if "wait" not in request.GET:
        return _order_detail_sync(request, merchant_order_no=merchant_order_no)
    return database_read_then_release(lambda: _order_detail_sync(request, merchant_order_no=merchant_order_no))


def _order_is_settled_then_release(order_id: int) -> bool:
    return database_read_then_release(lambda: selectors.order_is_settled(order_id=order_id))


def _order_detail_render(request, merchant_order_no) -> HttpResponse:
    order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
    return HttpResponse(
        JSONRenderer().render(serializers.OrderDetailSerializer(order).data), content_type="application/json"
    )


# Seen by drf-spectacular and DRF as the APIView it fronts.
# A function's attributes are untyped: mypy reads these as unknown names.
order_detail_view.cls = OrderDetailApi  # type: ignore[attr-defined]
order_detail_view.initkwargs = {}  # type: ignore[attr-defined]
order_detail_view = csrf_exempt(order_detail_view)


@extend_schema_view(
    post=extend_schema(
        operation_id="refunds_create",
        summary="Refund an order",
        description=(
            "Give back `amount` of a paid order. Several partial refunds are allowed until their sum reaches the "
            "paid amount (tip included); more is refused with 409 before anything is sent. Most refunds are final "
            "in the answer; a `pending` one completes at CodePay and is followed by the service. Give the refund "
            "its own `merchant_order_no` to find it later with `GET /refunds/{merchant_order_no}/`."
        ),
        request=serializers.RefundCreateSerializer,
        examples=[examples.REFUND_CREATE_REQUEST, examples.REFUND_SUCCEEDED, examples.STATE_CONFLICT],
        responses={
            201: serializers.RefundSerializer,
            202: OpenApiResponse(serializers.RefundSerializer, description="Sent, outcome not yet known (`unknown`)."),
            **_errors(400, 404, 409, 422, 500, 502, 503, *COMMON_ERRORS),
        },
    )
)
class OrderRefundCreateApi(IdempotentPostApi):
    def handle_post(self, request, merchant_order_no):
        order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        data = _validated(serializers.RefundCreateSerializer, request, currency=order.currency).validated_data
        result = order_refund(order=order, api_key=request.auth, **data)
        code = status.HTTP_202_ACCEPTED if result.outcome_unknown else status.HTTP_201_CREATED
        return Response(serializers.RefundSerializer(result.obj).data, status=code)


class RefundDetailApi(APIView):
    @extend_schema(
        operation_id="refunds_retrieve",
        summary="Read a refund",
        description="A refund by its own `merchant_order_no`; `orig_merchant_order_no` is the order it refunds.",
        examples=[examples.REFUND_SUCCEEDED],
        responses={200: serializers.RefundSerializer, **_errors(404, *COMMON_ERRORS)},
    )
    def get(self, request, merchant_order_no):
        refund = selectors.refund_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        return Response(serializers.RefundSerializer(refund).data)


class _OrderActionApi(IdempotentPostApi):
    # POST /orders/{merchant_order_no}/<action>/: one service call, answers the updated order.

    input_serializer: type[serializers.StrictInputSerializer] | None = None

    def act(self, order: Order, data: dict) -> WriteResult[Order] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def handle_post(self, request, merchant_order_no):
        order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        data = _validated(
            self.input_serializer or serializers.EmptyInputSerializer, request, currency=order.currency
        ).validated_data
        result = self.act(order, data)
        order = selectors.order_get(api_key=request.auth, merchant_order_no=merchant_order_no)
        unknown = result is not None and result.outcome_unknown  # a sync writes nothing of its own: None
        return Response(
            serializers.OrderDetailSerializer(order).data,
            status=status.HTTP_202_ACCEPTED if unknown else status.HTTP_200_OK,
        )


def _action_schema(*, operation_id: str, summary: str, description: str, request_serializer=None, example=None):
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        request=request_serializer,
        description=description,
        examples=[*([example] if example else []), examples.ORDER_SUCCEEDED, examples.STATE_CONFLICT],
        responses={
            200: serializers.OrderDetailSerializer,
            202: OpenApiResponse(
                serializers.OrderDetailSerializer,
                description=(
                    "Sent, but CodePay's answer was lost: the operation is `unknown` and is looked up, never resent."
                ),
            ),
            **_errors(400, 404, 409, 422, 500, 502, 503, *COMMON_ERRORS),
        },
    )


class OrderCancelApi(_OrderActionApi):
    @_action_schema(
        operation_id="orders_cancel",
        summary="Cancel an order or void an authorization",
        description=(
            "Stop an order that is still waiting for the customer (a terminal order is taken off the terminal, "
            "a checkout page stops accepting payment), or release the amount held by an `authorized` "
            "pre-authorization. A captured authorization is voided through its capture while the gateway allows "
            "it (before the batch closes, nothing refunded yet); otherwise 409: refund it instead. A paid sale "
            "cannot be cancelled: refund it."
        ),
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        return order_cancel(order=order)


class OrderCaptureApi(_OrderActionApi):
    input_serializer = serializers.AmountSerializer

    @_action_schema(
        operation_id="orders_capture",
        summary="Capture an authorization",
        description=(
            "Take `amount` of an `authorized` pre-authorization, once, at most what is authorized; a smaller amount "
            "releases the rest. The order becomes `succeeded` with `captured_amount` set. A second capture is "
            "refused with 409 (CodePay's reference describes one capture per authorization; the database holds one "
            "capture per order). Refunds, tip adjustments and a void after the capture act on the capture."
        ),
        request_serializer=serializers.AmountSerializer,
        example=examples.AMOUNT_REQUEST,
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        return order_capture(order=order, amount=data["amount"])


class OrderIncrementApi(_OrderActionApi):
    input_serializer = serializers.AmountSerializer

    @_action_schema(
        operation_id="orders_increment",
        summary="Raise an authorization",
        description=(
            "Add `amount` to what an `authorized` pre-authorization holds (a longer stay, extra charges), before "
            "it is captured."
        ),
        request_serializer=serializers.AmountSerializer,
        example=examples.AMOUNT_REQUEST,
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        return order_increment(order=order, amount=data["amount"])


class OrderTipApi(_OrderActionApi):
    input_serializer = serializers.TipSerializer

    @_action_schema(
        operation_id="orders_tip_adjust",
        summary="Adjust the tip",
        description=(
            "Set the tip of a paid terminal sale, or of a captured authorization's capture, until its batch is "
            "closed. `tip_amount` is the new total tip, not an amount to add."
        ),
        request_serializer=serializers.TipSerializer,
        example=examples.TIP_REQUEST,
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        return order_tip_adjust(order=order, tip_amount=data["tip_amount"])


class OrderSyncApi(_OrderActionApi):
    @_action_schema(
        operation_id="orders_sync",
        summary="Look the order up at CodePay now",
        description=(
            "Ask CodePay for the order's state and apply it, instead of waiting for the notification or the "
            "service's periodic look-up. Useful right after the customer says they paid."
        ),
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, order, data):
        with gateway_errors_as_service_errors("order query"):
            order_sync(order=order, source="api")


class BatchOpenApi(APIView):
    @extend_schema(
        operation_id="batches_open_retrieve",
        summary="Read the open batch",
        description=(
            "How many payments, and how much, the open batch holds (as CodePay counts it), for a store or one terminal."
        ),
        examples=[examples.OPEN_BATCH],
        parameters=[
            OpenApiParameter(
                "terminal_sn", OpenApiTypes.STR, description="One terminal; all of the store's when absent."
            ),
            OpenApiParameter(
                "store_no",
                OpenApiTypes.STR,
                description="Defaults to your API key's store or the account's default store.",
            ),
        ],
        responses={200: serializers.OpenBatchSerializer, **_errors(400, 502, 503, *COMMON_ERRORS)},
    )
    def get(self, request):
        query_params_check(request, ("terminal_sn", "store_no"))
        store_no = store_no_resolve(
            account=request.auth.account, api_key=request.auth, requested=request.query_params.get("store_no", "")
        )
        terminal_sn = request.query_params.get("terminal_sn", "")
        summary = batch_open_summary(
            account=request.auth.account, store_no=store_no, terminal_sn_list=[terminal_sn] if terminal_sn else None
        )
        return Response(
            serializers.OpenBatchSerializer(
                {
                    "count": summary.count,
                    "total_amount": summary.total_amount,
                    "store_no": store_no,
                    "terminal_sn": terminal_sn,
                }
            ).data
        )


@extend_schema_view(
    post=extend_schema(
        operation_id="batches_close",
        summary="Close the batch",
        description=(
            "Settle the open batch of a store, or of the listed terminals. The answer is recorded with what "
            "CodePay counted; a close that fails is retried automatically a few times and stays listed with its "
            "attempts. Tips can no longer be adjusted on the closed payments."
        ),
        request=serializers.BatchCloseInputSerializer,
        examples=[examples.BATCH_CLOSE_REQUEST, examples.BATCH_CLOSED],
        responses={201: serializers.BatchCloseSerializer, **_errors(400, 409, 422, *COMMON_ERRORS)},
    )
)
class BatchCloseApi(IdempotentPostApi):
    def handle_post(self, request):
        data = _validated(serializers.BatchCloseInputSerializer, request).validated_data
        batch = batch_close(
            account=request.auth.account,
            trigger="api",
            store_no=store_no_resolve(
                account=request.auth.account, api_key=request.auth, requested=data.get("store_no", "")
            ),
            terminal_sn_list=data.get("terminal_sn_list"),
            api_key=request.auth,
        )
        return Response(serializers.BatchCloseSerializer(batch).data, status=status.HTTP_201_CREATED)


class BatchListApi(APIView):
    pagination_class = OrderCursorPagination

    @extend_schema(
        operation_id="batches_list",
        summary="List batch closes",
        description="Every batch close, newest first, whether made through the API, a schedule or an operator.",
        parameters=[
            OpenApiParameter(
                "cursor", OpenApiTypes.STR, description="Taken from `next` or `previous`; do not build it."
            ),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="1 to 200; 50 by default."),
        ],
        responses={200: serializers.BatchCloseSerializer(many=True), **_errors(400, *COMMON_ERRORS)},
    )
    def get(self, request):
        query_params_check(request, OrderCursorPagination.query_params)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.batch_close_list(api_key=request.auth), request, view=self)
        return paginator.get_paginated_response(serializers.BatchCloseSerializer(page, many=True).data)
