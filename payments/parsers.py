"""
The API's JSON body parser: strict, because a body that parses "somehow" is a body misread.

- A key that appears twice in one object is refused: JSON libraries disagree on which copy wins, so the
  store system and this service could each act on a different value.
- Nesting deeper than ``MAX_DEPTH`` is refused, before Python's recursion limit turns it into a crash.
- A body larger than ``MAX_BODY_BYTES`` is refused with 413 without being read whole; DRF reads the
  request stream itself, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE never sees it.
- Text must be valid Unicode: a lone surrogate ("\\ud800") is refused here, not by the database.
"""

from __future__ import annotations

import json

from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

# Order bodies are a few KiB; order_detail may hold 16 KiB (payments.serializers.MAX_NESTED_BYTES).
MAX_BODY_BYTES = 65_536
# The deepest valid body is an order with order_detail nested MAX_NESTED_DEPTH (8) levels, plus the wrapper.
MAX_DEPTH = 16


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"The body is larger than {MAX_BODY_BYTES} bytes."
    default_code = "request_too_large"


class DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def json_depth(data: object) -> int:
    """How deeply ``data`` nests objects and arrays (a scalar is 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > MAX_BODY_BYTES:
            raise BodyTooLarge()
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise BodyTooLarge()
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            text = raw.decode(encoding)
            data = json.loads(text, object_pairs_hook=_refuse_duplicate_keys, parse_constant=_refuse_constant)
        except DuplicateKey as exc:
            raise ParseError(f"The key '{exc}' appears twice in one object; send each key once.") from None
        except RecursionError:
            raise ParseError(f"The body nests objects or arrays deeper than {MAX_DEPTH} levels.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from None
        if json_depth(data) > MAX_DEPTH:
            raise ParseError(f"The body nests objects or arrays deeper than {MAX_DEPTH} levels.")
        try:
            json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError("The body contains invalid Unicode (a lone surrogate escape).") from None
        return data
