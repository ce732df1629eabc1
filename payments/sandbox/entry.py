"""
The CodePay entry point, ``POST /api/entry``: parse, authenticate, dispatch, answer signed.

Checks run in the order a careful gateway runs them, cheapest and least revealing first: the body parses
and every value is a string; the common fields are present and hold their fixed values; the app exists
and owns ``merchant_no``; the signature (RSA2) or the Basic credentials (NONE) hold; the timestamp is
within 15 minutes; the method is known; then the method's own fields (docs/protocol.md, "Request signing",
"Basic Auth", "Rules").

Every refusal is an HTTP 200 with an ``E`` code, and every answer, refusals included, is signed with the
gateway key over code, msg, psn and ``data``, which is a compact JSON string (docs/protocol.md,
"Responses"), unless the ``unsigned_errors`` fault leaves refusals unsigned.
Transport faults (``faults.py``) are applied around all of this, as a network or front end would.
The call log keeps method, order number and outcome only: never a field that could carry card data.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa

from payments.gateway import signing
from payments.gateway.methods import Method

from . import errors
from .errors import SandboxError, require, require_found
from .faults import FaultPlan
from .operations import Fields, Operations
from .responses import Response, json_response, text_response
from .state import SandboxState

COMMON_FIELDS = ("app_id", "method", "format", "charset", "sign_type", "version", "timestamp", "merchant_no")
FIXED_VALUES = {"format": "JSON", "charset": "UTF-8", "version": "1.0"}
SIGN_TYPES = ("RSA2", "NONE")
TIMESTAMP_TOLERANCE_MS = 15 * 60 * 1000
TRANSPORT_FAULTS = frozenset({"latency", "http_500", "http_500_after", "timeout_after_create"})
UNSIGNED_FAULT = frozenset({"unsigned_errors"})
SUCCESS_CODE = "0"


@dataclass(frozen=True)
class SandboxApp:
    """An app the sandbox accepts: its id, its merchant, its public key (RSA2) and Basic pair (NONE)."""

    app_id: str
    merchant_no: str
    public_key: rsa.RSAPublicKey
    basic_auth: tuple[str, str] | None = None


class Entry:
    def __init__(
        self,
        *,
        apps: Mapping[str, SandboxApp],
        gateway_private_key: rsa.RSAPrivateKey,
        state: SandboxState,
        faults: FaultPlan,
        operations: Operations,
        clock: Callable[[], float],
        wait: Callable[[float], object],
    ):
        self._apps = apps
        self._gateway_private_key = gateway_private_key
        self._state = state
        self._faults = faults
        self._operations = operations
        self._clock = clock
        # Waits end early when the gateway stops, so a simulated timeout never holds up shutdown.
        self._wait = wait

    def handle(self, body: bytes, *, content_type: str, authorization: str) -> Response:
        try:
            fields = parse_body(body, content_type)
        except SandboxError as exc:
            return self._refuse({}, exc, fault_name="")
        fault = self._faults.take_call_fault(fields.get("method", ""), TRANSPORT_FAULTS)
        fault_name = fault.fault if fault else ""
        if fault_name == "http_500":
            self._record_call(fields, code="", fault_name=fault_name)
            return text_response(500, "Internal Server Error")
        if fault is not None and fault.fault == "latency":
            self._wait(fault.seconds)
        try:
            data = self._process(fields, authorization)
        except SandboxError as exc:
            response = self._refuse(fields, exc, fault_name=fault_name)
        else:
            response = self._answer(fields, SUCCESS_CODE, "success", data, fault_name=fault_name)
        if fault_name == "http_500_after":
            return text_response(500, "Internal Server Error")
        if fault is not None and fault.fault == "timeout_after_create":
            self._wait(fault.seconds)
        return response

    def _process(self, fields: dict[str, str], authorization: str) -> dict:
        for name in COMMON_FIELDS:
            require(bool(fields.get(name)), errors.MISSING_PARAMETER, name)
        for name, value in FIXED_VALUES.items():
            require(fields[name] == value, errors.INVALID_PARAMETER, f"{name} must be {value}")
        require(fields["sign_type"] in SIGN_TYPES, errors.INVALID_PARAMETER, "sign_type must be RSA2 or NONE")
        app = self._authenticate(fields, authorization)
        self._check_timestamp(fields["timestamp"])
        try:
            method = Method(fields["method"])
        except ValueError:
            raise SandboxError(errors.UNSUPPORTED_METHOD, fields["method"]) from None
        return self._operations.run(method, Fields(fields), app_id=app.app_id, merchant_no=app.merchant_no)

    def _authenticate(self, fields: dict[str, str], authorization: str) -> SandboxApp:
        app = require_found(self._apps.get(fields["app_id"]), errors.UNKNOWN_APP)
        require(fields["merchant_no"] == app.merchant_no, errors.MERCHANT_MISMATCH)
        if fields["sign_type"] == "RSA2":
            require(bool(fields.get("sign")), errors.MISSING_PARAMETER, "sign")
            require(signing.verify(fields, fields["sign"], app.public_key), errors.SIGNATURE_INVALID)
        else:
            require(
                app.basic_auth is not None and _basic_auth_matches(authorization, app.basic_auth),
                errors.BASIC_AUTH_INVALID,
            )
        return app

    def _check_timestamp(self, timestamp: str) -> None:
        require(
            re.fullmatch(r"\d{13}", timestamp) is not None,
            errors.INVALID_PARAMETER,
            "timestamp must be 13-digit epoch milliseconds",
        )
        require(abs(int(timestamp) - self._clock() * 1000) <= TIMESTAMP_TOLERANCE_MS, errors.TIMESTAMP_OUT_OF_RANGE)

    def _refuse(self, fields: Mapping[str, str], error: SandboxError, *, fault_name: str) -> Response:
        unsigned = self._faults.take_call_fault(fields.get("method", ""), UNSIGNED_FAULT) is not None
        return self._answer(
            fields,
            error.code,
            error.msg,
            None,
            fault_name="unsigned_errors" if unsigned else fault_name,
            signed=not unsigned,
        )

    def _answer(
        self, fields: Mapping[str, str], code: str, msg: str, data: dict | None, *, fault_name: str, signed: bool = True
    ) -> Response:
        self._record_call(fields, code=code, fault_name=fault_name)
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        envelope = {"code": code, "msg": msg, "psn": f"{now:%m%d%H%M%S}{self._state.next_serial():010d}"}
        if data is not None:
            envelope["data"] = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if signed:
            envelope["sign"] = signing.sign(envelope, self._gateway_private_key)
        return json_response(200, envelope)

    def _record_call(self, fields: Mapping[str, str], *, code: str, fault_name: str) -> None:
        self._state.record_call(
            {
                "time": datetime.fromtimestamp(self._clock(), tz=UTC).isoformat(timespec="milliseconds"),
                "method": fields.get("method", ""),
                "merchant_order_no": fields.get("merchant_order_no", ""),
                "code": code,
                "fault": fault_name,
            }
        )


def parse_body(body: bytes, content_type: str) -> dict[str, str]:
    """The request's fields: a flat JSON object of strings, or a form (docs/protocol.md, "Transport")."""
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
        fields = json.loads(text)
    except ValueError:
        raise SandboxError(errors.INVALID_PARAMETER, "the body must be UTF-8 JSON or a form") from None
    require(isinstance(fields, dict), errors.INVALID_PARAMETER, "the body must be a JSON object")
    for name, value in fields.items():
        # Nested objects, numbers and booleans would be signed as text the client never signed.
        require(isinstance(value, str), errors.INVALID_PARAMETER, f"{name} must be sent as a JSON string")
    return fields


def _basic_auth_matches(authorization: str, expected: tuple[str, str]) -> bool:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared in constant time, and both always compared.
    user_ok = hmac.compare_digest(user.encode(), expected[0].encode())
    password_ok = hmac.compare_digest(password.encode(), expected[1].encode())
    return user_ok and password_ok
