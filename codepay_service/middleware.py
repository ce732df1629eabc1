"""
Every error answer on ``/api/`` in the API's error shape, ``{"error": {"code", "message", "details"}}``.

DRF's exception handler shapes what the views raise; this middleware catches what happens outside them:
Django's own 400/404/405/413 pages (with DEBUG on, its technical pages), and a POST to a path missing its
trailing slash, which Django would redirect (dropping the body) or, with DEBUG on, fail with a 500.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import is_valid_path

from codepay_service.errors import error_body

API_PREFIX = "/api/"
_CODES = {
    400: ("bad_request", "The request is malformed."),
    401: ("not_authenticated", "Authentication is required."),
    403: ("permission_denied", "Not allowed."),
    404: ("not_found", "No such path."),
    405: ("method_not_allowed", "This method is not allowed on this path."),
    413: ("request_too_large", "The body is too large."),
    415: ("unsupported_media_type", "Send the body as application/json."),
}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiErrorShapeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if not path.startswith(API_PREFIX):
            return self.get_response(request)
        if (
            request.method not in _SAFE_METHODS
            and not path.endswith("/")
            and not is_valid_path(path)
            and is_valid_path(f"{path}/")
        ):
            return JsonResponse(
                error_body(
                    "not_found",
                    f"No such path: {path}. The API's paths end with a slash: {path}/",
                    {"path": f"{path}/"},
                ),
                status=404,
            )
        response = self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            code, message = _CODES.get(
                response.status_code,
                ("server_error" if response.status_code >= 500 else "error", "The request failed."),
            )
            if response.status_code >= 500:
                message = "Internal error; nothing more is known to the client. It is logged."
            shaped = JsonResponse(error_body(code, message), status=response.status_code)
            for header in ("Allow", "Retry-After"):
                if header in response:
                    shaped[header] = response[header]
            return shaped
        return response
