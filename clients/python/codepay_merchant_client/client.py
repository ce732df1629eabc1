"""
The client: one method per operation, frozen dataclasses out, errors split by what the caller must do.

Retries, only where they are safe:
- the connection could not be made (nothing reached the service): any call;
- ``503 gateway_unavailable`` (the service says nothing was sent to CodePay) and ``429`` (after its
  ``Retry-After``): any call;
- the answer was lost (read timeout, connection dropped) or ``409 idempotency_key_in_use``: a GET, or a POST
  that carries its Idempotency-Key. Every POST gets a fresh key (uuid4) per call, reused by all of that
  call's retries, so the service runs it at most once and answers the retry with the first answer.
Anything else is raised at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests

from codepay_merchant_client import errors

RETRY_AFTER_CAP_SECONDS = 30.0


@dataclass(frozen=True)
class Refund:
    merchant_order_no: str
    orig_merchant_order_no: str
    status: str
    amount: Decimal
    currency: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Refund:
        return cls(
            merchant_order_no=data["merchant_order_no"],
            orig_merchant_order_no=data.get("orig_merchant_order_no", ""),
            status=data["status"],
            amount=Decimal(data["amount"]),
            currency=data["currency"],
            raw=data,
        )


@dataclass(frozen=True)
class Order:
    merchant_order_no: str
    status: str
    channel: str
    amount: Decimal
    currency: str
    trans_no: str
    refunds: tuple[Refund, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    SETTLED_STATUSES = frozenset({"authorized", "succeeded", "failed", "cancelled", "expired"})

    @property
    def settled(self) -> bool:
        """Left pending, processing and unknown: what ``get_order(wait=...)`` waits for."""
        return self.status in self.SETTLED_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Order:
        return cls(
            merchant_order_no=data["merchant_order_no"],
            status=data["status"],
            channel=data.get("channel", ""),
            amount=Decimal(data["amount"]),
            currency=data["currency"],
            trans_no=data.get("trans_no", ""),
            refunds=tuple(Refund.from_json(refund) for refund in data.get("refunds", [])),
            raw=data,
        )


_ERRORS_BY_STATUS: dict[int, type[errors.ServiceError]] = {
    400: errors.InvalidRequestError,
    401: errors.AuthenticationError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    422: errors.InvalidRequestError,
    429: errors.RateLimitError,
    502: errors.GatewayError,
}


class MerchantClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        connect_timeout: float = 3.05,
        read_timeout: float = 30.0,
        max_retries: int = 2,
        backoff_seconds: float = 0.5,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Api-Key {api_key}"
        self._sleep = sleep

    # --- Orders ------------------------------------------------------------------------------------

    def create_order(
        self, *, channel: str, amount: Decimal | str, currency: str, description: str, idempotency_key: str | None = None, **fields: Any
    ) -> Order:
        """Create an order (terminal, checkout or card); other fields (terminal_sn, merchant_order_no...) as keywords."""
        body = {"channel": channel, "amount": str(amount), "currency": currency, "description": description, **_plain(fields)}
        return Order.from_json(self._post("/api/v1/orders/", body, idempotency_key))

    def get_order(self, merchant_order_no: str, *, wait: int | None = None) -> Order:
        """
        The order; with ``wait`` (1-60 s) the service answers as soon as it settles, or after ``wait`` seconds
        with its current state (check ``order.settled``).
        """
        params = {"wait": str(wait)} if wait else None
        extra = float(wait or 0)
        return Order.from_json(self._request("GET", f"/api/v1/orders/{merchant_order_no}/", params=params, extra_read_timeout=extra))

    def wait_for_order(self, merchant_order_no: str, *, timeout: float, step: int = 60) -> Order:
        """Wait up to ``timeout`` seconds (beyond the 60 s of one request) for the order to settle."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = int(deadline - time.monotonic())
            order = self.get_order(merchant_order_no, wait=max(min(step, remaining), 0) or None)
            if order.settled or remaining <= 0:
                return order

    def refund(self, merchant_order_no: str, *, amount: Decimal | str, reason: str, idempotency_key: str | None = None) -> Refund:
        body = {"amount": str(amount), "reason": reason}
        return Refund.from_json(self._post(f"/api/v1/orders/{merchant_order_no}/refunds/", body, idempotency_key))

    def cancel_order(self, merchant_order_no: str, *, idempotency_key: str | None = None) -> Order:
        return Order.from_json(self._post(f"/api/v1/orders/{merchant_order_no}/cancel/", None, idempotency_key))

    def capture_order(self, merchant_order_no: str, *, amount: Decimal | str, idempotency_key: str | None = None) -> Order:
        return Order.from_json(self._post(f"/api/v1/orders/{merchant_order_no}/capture/", {"amount": str(amount)}, idempotency_key))

    def sync_order(self, merchant_order_no: str, *, idempotency_key: str | None = None) -> Order:
        return Order.from_json(self._post(f"/api/v1/orders/{merchant_order_no}/sync/", None, idempotency_key))

    # --- Event endpoints -----------------------------------------------------------------------------

    def create_event_endpoint(self, *, url: str, store_no: str = "", event_types: list[str] | None = None, description: str = "") -> dict[str, Any]:
        """Register ``url`` for events; the answer's ``secret`` is shown only here: keep it to verify events."""
        body = {"url": url, "store_no": store_no, "event_types": event_types or [], "description": description}
        return self._post("/api/v1/event-endpoints/", body, None)

    def list_event_endpoints(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/event-endpoints/")

    def rotate_event_endpoint_secret(self, endpoint_id: int, *, overlap_seconds: int = 86400) -> dict[str, Any]:
        """A new secret; the previous one keeps signing too for ``overlap_seconds``."""
        return self._post(f"/api/v1/event-endpoints/{endpoint_id}/rotate-secret/", {"overlap_seconds": overlap_seconds}, None)

    def delete_event_endpoint(self, endpoint_id: int) -> None:
        self._request("DELETE", f"/api/v1/event-endpoints/{endpoint_id}/")

    # --- Transport --------------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any] | None, idempotency_key: str | None) -> Any:
        return self._request("POST", path, json=body, idempotency_key=idempotency_key or str(uuid.uuid4()))

    def _request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None,
        idempotency_key: str | None = None, extra_read_timeout: float = 0.0,
    ) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        # A GET, or a POST with its key, may be repeated when its answer was lost; nothing else may.
        repeatable = method == "GET" or idempotency_key is not None
        attempt = 0
        while True:
            attempt += 1
            retry_in: float | None = None
            try:
                response = self.session.request(
                    method, self.base_url + path, json=json, params=params, headers=headers,
                    timeout=(self.connect_timeout, self.read_timeout + extra_read_timeout),
                )
            except requests.exceptions.ConnectTimeout as exc:
                error = errors.ConnectionFailed(f"Could not connect: {exc}", may_have_been_sent=False)
            except requests.exceptions.ConnectionError as exc:
                # Refused or unresolvable: nothing was sent. Dropped after connecting: it may have been.
                never_connected = _never_connected(exc)
                error = errors.ConnectionFailed(f"Connection failed: {exc}", may_have_been_sent=not never_connected)
                if not never_connected and not repeatable:
                    raise error from exc
            except requests.exceptions.Timeout as exc:
                error = errors.ConnectionFailed(f"No answer in time: {exc}", may_have_been_sent=True)
                if not repeatable:
                    raise error from exc
            else:
                if response.status_code < 400:
                    return response.json() if response.content else None
                error = _error_from(response)
                retry_in = _retry_delay(response, error, repeatable=repeatable)
                if retry_in is None:
                    raise error
            if attempt > self.max_retries:
                raise error
            self._sleep(retry_in if retry_in is not None else self.backoff_seconds * 2 ** (attempt - 1))


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: str(value) if isinstance(value, Decimal) else value for name, value in fields.items()}


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    reason = exc.args[0] if exc.args else None
    text = f"{reason!r} {getattr(reason, 'reason', '')!r}"
    return any(marker in text for marker in ("NewConnectionError", "NameResolutionError", "ConnectionRefused", "Connection refused"))


def _error_from(response: requests.Response) -> errors.ServiceError:
    try:
        body = response.json().get("error") or {}
    except (ValueError, AttributeError):
        body = {}
    message = body.get("message") or f"HTTP {response.status_code}"
    error_class = _ERRORS_BY_STATUS.get(response.status_code, errors.UnavailableError if response.status_code >= 500 else errors.ServiceError)
    error = error_class(message, code=body.get("code", "error"), http_status=response.status_code, details=body.get("details"))
    return error


def _retry_delay(response: requests.Response, error: errors.ServiceError, *, repeatable: bool) -> float | None:
    """Seconds to wait before a safe retry, or None when retrying this answer is not safe."""
    if response.status_code == 429:
        retry_after = response.headers.get("Retry-After", "")
        return min(float(retry_after), RETRY_AFTER_CAP_SECONDS) if retry_after.replace(".", "", 1).isdigit() else None
    if response.status_code == 503 and error.code == "gateway_unavailable":
        return 1.0
    if response.status_code == 409 and error.code == "idempotency_key_in_use" and repeatable:
        return 1.0
    return None
