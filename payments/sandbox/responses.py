"""What the gateway's two faces (the CodePay entry point and the control API) hand back to the HTTP server."""

from __future__ import annotations

import json
from typing import NamedTuple

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes


def json_response(status: int, payload: object) -> Response:
    return Response(status, JSON_CONTENT_TYPE, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def error_response(status: int, code: str, message: str) -> Response:
    """The control API's error shape, the same as our service's (HOUSE_STYLE.md, convention 6)."""
    return json_response(status, {"error": {"code": code, "message": message}})


def text_response(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, content_type, text.encode("utf-8"))
