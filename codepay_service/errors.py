"""
The service's error vocabulary and the one place that renders errors for the API.

Every error a client can see is declared as data: a class with ``code``, ``http_status`` and a default
``message``. The DRF exception handler turns these, DRF's own exceptions and Django's 404 into one JSON
shape: ``{"error": {"code": "...", "message": "...", "details": {...}}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import DisallowedHost, PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views.debug import SafeExceptionReporterFilter
from django.views.defaults import bad_request, page_not_found, server_error
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    code = "error"
    http_status: int = status.HTTP_400_BAD_REQUEST
    message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message = message or self.message
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(ServiceError):
    code = "invalid_request"
    message = "The request has invalid fields."


class NotFound(ServiceError):
    code = "not_found"
    http_status = status.HTTP_404_NOT_FOUND
    message = "No such object."


class StateConflict(ServiceError):
    code = "state_conflict"
    http_status = status.HTTP_409_CONFLICT
    message = "The object is not in a state that allows this."


class DuplicateMerchantOrderNo(StateConflict):
    code = "duplicate_merchant_order_no"
    message = "This merchant_order_no is already used for this merchant account; send a new one."


class IdempotencyConflict(ServiceError):
    code = "idempotency_key_in_use"
    http_status = status.HTTP_409_CONFLICT
    message = "A request with this Idempotency-Key is still being processed; retry later."


class IdempotencyMismatch(ServiceError):
    code = "idempotency_key_reused"
    http_status = status.HTTP_422_UNPROCESSABLE_ENTITY
    message = "This Idempotency-Key was used with a different request body; use a new key."


class GatewayRefused(ServiceError):
    code = "gateway_refused"
    http_status = status.HTTP_502_BAD_GATEWAY
    message = "CodePay refused the request."


class GatewayUnavailable(ServiceError):
    code = "gateway_unavailable"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    message = "CodePay could not be reached; nothing was sent. Retry later."


class Misconfigured(ServiceError):
    """
    Our own CodePay settings are wrong. ``detail`` names the setting to fix and is for operators (logs,
    commands, the order's gateway_message); API clients get the generic message, since a setting's value or
    a secret file's path is none of theirs.
    """

    code = "gateway_misconfigured"
    http_status = status.HTTP_500_INTERNAL_SERVER_ERROR
    message = "The service's CodePay configuration is incomplete or wrong; the operator finds the details in its log."

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__()

    def __str__(self) -> str:
        return self.detail


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "rate_limited",
    drf_exceptions.ParseError: "malformed_request",
    drf_exceptions.ValidationError: "invalid_request",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Misconfigured):
        logger.error("CodePay misconfigured: %s", exc.detail)
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), getattr(exc, "default_code", "error"))
    if isinstance(exc, drf_exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        message = "The request has invalid fields; see details."
    else:
        details = {}
        message = str(exc.detail) if hasattr(exc, "detail") else str(exc)
    response.data = error_body(code, message, details)
    return response


def bad_request_view(request, exception=None):
    """Django's own 400s (a Host header we do not serve, a body over DATA_UPLOAD_MAX_MEMORY_SIZE) on /api/."""
    if not request.path.startswith("/api/"):
        return bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(error_body("request_too_large", "The body is too large."), status=413)
    if isinstance(exception, DisallowedHost):
        return JsonResponse(error_body("bad_host", "The Host header names no host this service serves."), status=400)
    return JsonResponse(error_body("bad_request", "The request is malformed."), status=400)


def not_found_view(request, exception=None):
    if request.path.startswith("/admin/"):
        return page_not_found(request, exception)
    return JsonResponse(error_body("not_found", f"No such path: {request.path}"), status=404)


def server_error_view(request):
    if request.path.startswith("/admin/"):
        return server_error(request)
    return JsonResponse(
        error_body("server_error", "Internal error; nothing more is known to the client. It is logged."), status=500
    )


class SensitiveDataFilter(SafeExceptionReporterFilter):
    """
    Django's filter, active with DEBUG on too: a debug page of a card request must not show the PAN or CVV
    in its frames' variables (``sensitive_variables``) or POST data (``sensitive_post_parameters``).
    """

    def is_active(self, request) -> bool:
        return True
