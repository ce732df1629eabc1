"""
The CodePay gateway client: one typed method per gateway operation.

It knows HTTP and the protocol (docs/protocol.md) and nothing about our models. Every request goes to
``POST {base_url}/api/entry`` as a flat JSON object of strings, signed with the app key (RSA2) or sent
with Basic Auth (sign_type NONE). Every answer with ``code`` "0" must carry a valid gateway signature.

Why a timeout means "unknown": once the request bytes have left, the gateway may have created the
order or moved the money even if no answer comes back. Such a call raises ``GatewayOutcomeUnknown``
and is never resent here for a money-moving method; the caller finds the truth with ``order.query``.
Only failures before the request left (connection refused, DNS, connect timeout) and read-only calls
are retried.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError

from . import signing
from .errors import (
    GatewayConfigurationError,
    GatewayDeclined,
    GatewayError,
    GatewayOutcomeUnknown,
    GatewayRequestNotSent,
    GatewayUnsignedRefusal,
)
from .methods import MONEY_MOVING_METHODS, Method
from .money import format_amount
from .results import (
    Acknowledged,
    BatchSummary,
    CardCheckoutResult,
    CheckoutCreated,
    CloudOrderCreated,
    GatewayResult,
    OrderInfo,
    RefundInfo,
    RefundSubmitted,
    TransactionResult,
)

logger = logging.getLogger(__name__)

MESSAGE_RECEIVING_APPLICATION = "CodePay Register"
CLOUD_API_VERSION = "2.0"
SUCCESS_CODE = "0"

# Fields never written to the audit record or logs: card ciphertext and anything card- or key-like.
_REDACTED_FIELDS = frozenset({"card", "pan", "cvv", "sign", "password", "private_key"})


@dataclass(frozen=True)
class CardDetails:
    """A card for the merchant-hosted checkout. Lives in memory only; its repr never shows PAN or CVV."""

    pan: str = field(repr=False)
    expiry: str = field(repr=False)  # MMYY
    cvv: str = field(repr=False)
    holder: str = field(repr=False)
    card_type: str = "CREDIT"

    def to_json(self) -> str:
        return json.dumps(
            {
                "card_type": self.card_type,
                "pan": self.pan,
                "expiry": self.expiry,
                "cvv": self.cvv,
                "holder": self.holder,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class CallRecord:
    """What one gateway call leaves behind for audit; redacted, safe to store and show."""

    method: str
    merchant_order_no: str
    started_at: datetime
    duration_ms: int
    outcome: str  # "ok" or a GatewayError.kind
    http_status: int | None
    gateway_code: str
    gateway_message: str
    psn: str
    request: dict[str, Any]
    response: dict[str, Any] | None


def redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: ("[redacted]" if key in _REDACTED_FIELDS else value) for key, value in fields.items()}


def _wire_value(value: Any) -> str:
    """Every field travels as the exact text that is signed (docs/protocol.md, "Request signing")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise TypeError("Floats are never sent to the gateway; pass Decimal amounts.")
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


class CodePayClient:
    """A CodePay gateway client for one merchant account (one app id and merchant number)."""

    def __init__(
        self,
        *,
        base_url: str,
        app_id: str,
        merchant_no: str,
        sign_type: str = "RSA2",
        private_key: rsa.RSAPrivateKey | None = None,
        gateway_public_key: rsa.RSAPublicKey | None = None,
        basic_auth: tuple[str, str] | None = None,
        notify_url: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        max_retries: int = 2,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        on_call: Callable[[CallRecord], None] | None = None,
        throttle: Callable[[], None] | None = None,
    ):
        missing = [
            name
            for name, value in (("base_url", base_url), ("app_id", app_id), ("merchant_no", merchant_no))
            if not value
        ]
        if missing:
            raise GatewayConfigurationError(f"CodePay client needs {', '.join(missing)}.")
        if sign_type not in ("RSA2", "NONE"):
            raise GatewayConfigurationError(f"sign_type must be RSA2 or NONE, not '{sign_type}'.")
        if sign_type == "RSA2" and (private_key is None or gateway_public_key is None):
            raise GatewayConfigurationError("sign_type RSA2 needs the app private key and the gateway public key.")
        if sign_type == "NONE" and not (basic_auth and all(basic_auth)):
            raise GatewayConfigurationError("sign_type NONE needs the Basic Auth user and password.")
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.merchant_no = merchant_no
        self.sign_type = sign_type
        self.notify_url = notify_url
        self._private_key = private_key
        self._gateway_public_key = gateway_public_key
        self._basic_auth = basic_auth
        self._timeouts = (connect_timeout, read_timeout)
        self._max_retries = max_retries
        self._session = session or requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._on_call = on_call
        self._throttle = throttle

    def with_throttle(self, throttle: Callable[[], None]) -> CodePayClient:
        """The same client, waiting on ``throttle`` before each request (a shared rate limit)."""
        clone = copy.copy(self)
        clone._throttle = throttle
        return clone

    # --- Cloud mode: CodePay Register terminals ----------------------------------------------------------

    def create_cloud_order(
        self,
        *,
        merchant_order_no: str,
        terminal_sn: str,
        trans_type: str,
        amount: Decimal,
        currency: str,
        description: str,
        expires: int,
        store_no: str = "",
        tip_amount: Decimal | None = None,
        cashback_amount: Decimal | None = None,
        orig_merchant_order_no: str = "",
        pay_scenario: str = "",
        pay_method_id: str = "",
        card_type: str = "",
        attach: str = "",
        on_screen_tip: bool | None = None,
        on_screen_signature: bool | None = None,
        confirm_on_terminal: bool | None = None,
        reject_when_terminal_offline: bool | None = None,
        required_terminal_authentication: bool | None = None,
        receipt_print_mode: int | None = None,
    ) -> CloudOrderCreated:
        """``wisehub.cloud.pay.order``: push an order of any trans_type to a terminal."""
        data = self._call(
            Method.CLOUD_PAY_ORDER,
            {
                "store_no": store_no,
                "terminal_sn": terminal_sn,
                "message_receiving_application": MESSAGE_RECEIVING_APPLICATION,
                "pay_scenario": pay_scenario,
                "pay_method_id": pay_method_id,
                "card_type": card_type,
                "price_currency": currency,
                "order_amount": format_amount(amount, currency),
                "tip_amount": format_amount(tip_amount, currency) if tip_amount else None,
                "cashback_amount": format_amount(cashback_amount, currency) if cashback_amount else None,
                "on_screen_tip": on_screen_tip,
                "trans_type": trans_type,
                "merchant_order_no": merchant_order_no,
                "orig_merchant_order_no": orig_merchant_order_no,
                "description": description,
                "attach": attach,
                "notify_url": self.notify_url,
                "expires": expires,
                "reject_trade_when_terminal_offline": reject_when_terminal_offline,
                "required_terminal_authentication": required_terminal_authentication,
                "on_screen_signature": on_screen_signature,
                "receipt_print_mode": receipt_print_mode,
                "confirm_on_terminal": confirm_on_terminal,
                "api_version": CLOUD_API_VERSION,
            },
        )
        return CloudOrderCreated.from_data(*data)

    def close_cloud_order(
        self, *, merchant_order_no: str, terminal_sn: str, store_no: str = "", description: str = ""
    ) -> Acknowledged:
        """``wisehub.cloud.pay.close``: withdraw an order still waiting on the terminal (status 9)."""
        data = self._call(
            Method.CLOUD_PAY_CLOSE,
            {
                "store_no": store_no,
                "terminal_sn": terminal_sn,
                "merchant_order_no": merchant_order_no,
                "description": description,
                "message_receiving_application": MESSAGE_RECEIVING_APPLICATION,
            },
        )
        return Acknowledged.from_data(*data)

    # --- Online checkout ------------------------------------------------------------------------------------

    def create_checkout(
        self,
        *,
        merchant_order_no: str,
        amount: Decimal,
        currency: str,
        description: str,
        expires: int,
        store_no: str = "",
        return_url: str = "",
        attach: str = "",
        order_detail: dict[str, Any] | None = None,
        term_ip: str = "",
    ) -> CheckoutCreated:
        """``pay.checkout``: a CodePay-hosted payment page; answers its ``pay_url``."""
        data = self._call(
            Method.CHECKOUT,
            {
                "store_no": store_no,
                "merchant_order_no": merchant_order_no,
                "price_currency": currency,
                "order_amount": format_amount(amount, currency),
                "expires": expires,
                "description": description,
                "term_ip": term_ip,
                "return_url": return_url,
                "notify_url": self.notify_url,
                "attach": attach,
                "order_detail": order_detail or None,
            },
        )
        return CheckoutCreated.from_data(*data)

    def create_card_checkout(
        self,
        *,
        merchant_order_no: str,
        card: CardDetails,
        billing_address: dict[str, Any],
        amount: Decimal,
        currency: str,
        description: str,
        expires: int,
        store_no: str = "",
        return_url: str = "",
        attach: str = "",
        term_ip: str = "",
    ) -> CardCheckoutResult:
        """``pay.merchant.checkout``: charge a card collected by the merchant; the card is encrypted here."""
        if not billing_address:
            raise ValueError('pay.merchant.checkout requires billing_address (docs/protocol.md, "Card checkout").')
        if self._gateway_public_key is None:
            raise GatewayConfigurationError(
                "Card checkout encrypts the card with the gateway public key; set CODEPAY_GATEWAY_PUBLIC_KEY."
            )
        data = self._call(
            Method.MERCHANT_CHECKOUT,
            {
                "store_no": store_no,
                "card": signing.encrypt_card(card.to_json(), self._gateway_public_key),
                "billing_address": billing_address,
                "merchant_order_no": merchant_order_no,
                "price_currency": currency,
                "order_amount": format_amount(amount, currency),
                "expires": expires,
                "description": description,
                "term_ip": term_ip,
                "return_url": return_url,
                "notify_url": self.notify_url,
                "attach": attach,
            },
        )
        return CardCheckoutResult.from_data(*data)

    # --- Authorizations and adjustments -----------------------------------------------------------------
    # Which trans_no each of these takes is FOLLOW_UPS in methods.py (docs/protocol.md, "Follow-ups"): the
    # authorization's before a capture, the capture's after it. The client sends what it is given; the
    # services pick the number from that table and the sandbox refuses any other.

    def capture(self, *, merchant_order_no: str, trans_no: str, amount: Decimal, currency: str) -> TransactionResult:
        """Capture (part of) an authorization; ``merchant_order_no`` is the capture's own new number."""
        data = self._call(
            Method.CAPTURE,
            {
                "merchant_order_no": merchant_order_no,
                "trans_no": trans_no,
                "trans_amount": format_amount(amount, currency),
            },
        )
        return TransactionResult.from_data(*data)

    def increment_authorization(self, *, trans_no: str, amount: Decimal, currency: str) -> TransactionResult:
        """Raise an authorization by ``amount``."""
        data = self._call(
            Method.INCREMENTAL_AUTH, {"trans_no": trans_no, "trans_amount": format_amount(amount, currency)}
        )
        return TransactionResult.from_data(*data)

    def cancel_payment(self, *, merchant_order_no: str, trans_no: str) -> TransactionResult:
        """Void an authorization not yet captured (its trans_no: trans_type 5) or a capture (the capture's
        trans_no: trans_type 7); ``merchant_order_no`` is the void's own new number."""
        data = self._call(Method.CANCEL_PAYMENT, {"merchant_order_no": merchant_order_no, "trans_no": trans_no})
        return TransactionResult.from_data(*data)

    def refund_payment(
        self,
        *,
        merchant_order_no: str,
        trans_no: str,
        amount: Decimal,
        currency: str,
        tip_amount: Decimal | None = None,
    ) -> TransactionResult:
        """Refund a sale, or a captured authorization by its capture's trans_no (trans_type 8);
        ``merchant_order_no`` is the refund's own number."""
        data = self._call(
            Method.REFUND_PAYMENT,
            {
                "merchant_order_no": merchant_order_no,
                "trans_no": trans_no,
                "order_amount": format_amount(amount, currency),
                "tip_amount": format_amount(tip_amount, currency) if tip_amount else None,
            },
        )
        return TransactionResult.from_data(*data)

    def adjust_tip_by_trans_no(self, *, trans_no: str, tip_amount: Decimal, currency: str) -> TransactionResult:
        """Set the tip of a sale or a capture by its trans_no; ``tip_amount`` is the new total tip."""
        data = self._call(
            Method.TIP_ADJUST_BY_TRANS_NO, {"trans_no": trans_no, "tip_amount": format_amount(tip_amount, currency)}
        )
        return TransactionResult.from_data(*data)

    def adjust_tip(self, *, merchant_order_no: str, tip_amount: Decimal, currency: str) -> Acknowledged:
        """``tip.adjustment``: set the tip of a sale or a capture by its merchant_order_no, as the new total."""
        data = self._call(
            Method.TIP_ADJUSTMENT,
            {"merchant_order_no": merchant_order_no, "tip_adjustment_amount": format_amount(tip_amount, currency)},
        )
        return Acknowledged.from_data(*data)

    def recall(self, *, trans_no: str = "", merchant_order_no: str = "") -> OrderInfo:
        """Retrieve a transaction by trans_no or merchant_order_no."""
        data = self._call(Method.RECALL, self._order_reference(trans_no, merchant_order_no))
        return OrderInfo.from_data(*data)

    # --- Batches -----------------------------------------------------------------------------------------

    def close_batch(self, *, terminal_sn: str) -> Acknowledged:
        """``batch.close`` (published): close one terminal's open batch; the answer carries no count."""
        data = self._call(Method.BATCH_CLOSE, {"terminal_sn": terminal_sn})
        return Acknowledged.from_data(*data)

    def close_batch_for_terminals(
        self, *, store_no: str = "", terminal_sn_list: list[str] | None = None
    ) -> BatchSummary:
        """Close the open batch of the listed terminals (all of the store's when the list is empty); inferred
        method name, used only where the terminals are not known (docs/protocol.md, "Batch close")."""
        data = self._call(
            Method.BATCH_CLOSE_TERMINALS, {"store_no": store_no, "terminal_sn_list": terminal_sn_list or None}
        )
        return BatchSummary.from_data(*data)

    def get_open_batch(self, *, store_no: str = "", terminal_sn_list: list[str] | None = None) -> BatchSummary:
        """Count and total of the open (not yet closed) batch."""
        data = self._call(Method.OPEN_BATCH, {"store_no": store_no, "terminal_sn_list": terminal_sn_list or None})
        return BatchSummary.from_data(*data)

    # --- Orders and refunds by query, revoke and refund ------------------------------------------------

    def query_order(self, *, trans_no: str = "", merchant_order_no: str = "") -> OrderInfo:
        """``order.query``; an unknown order raises GatewayDeclined (or, unsigned, GatewayUnsignedRefusal) with
        code ORDER_NOT_FOUND_CODE: see ``is_order_not_found``."""
        data = self._call(Method.ORDER_QUERY, self._order_reference(trans_no, merchant_order_no))
        return OrderInfo.from_data(*data)

    def query_refund(self, *, trans_no: str = "", merchant_order_no: str = "") -> RefundInfo:
        """``order.refund.query`` by the refund's own number or trans_no."""
        data = self._call(Method.REFUND_QUERY, self._order_reference(trans_no, merchant_order_no))
        return RefundInfo.from_data(*data)

    def revoke_order(self, *, merchant_order_no: str) -> Acknowledged:
        """``order.revoker``: close an unpaid QR/online order, or refund a paid one."""
        data = self._call(Method.ORDER_REVOKE, {"merchant_order_no": merchant_order_no})
        return Acknowledged.from_data(*data)

    def submit_refund(
        self,
        *,
        merchant_order_no: str,
        amount: Decimal,
        currency: str,
        description: str,
        orig_merchant_order_no: str = "",
        orig_trans_no: str = "",
    ) -> RefundSubmitted:
        """``order.refund.submit``: refund (part of) a paid order under the refund's own merchant_order_no."""
        if not (orig_merchant_order_no or orig_trans_no):
            raise ValueError("A refund needs orig_merchant_order_no or orig_trans_no.")
        data = self._call(
            Method.REFUND_SUBMIT,
            {
                "orig_merchant_order_no": orig_merchant_order_no,
                "orig_trans_no": orig_trans_no,
                "merchant_order_no": merchant_order_no,
                "price_currency": currency,
                "order_amount": format_amount(amount, currency),
                "description": description,
                "notify_url": self.notify_url,
            },
        )
        return RefundSubmitted.from_data(*data)

    # --- Protocol -------------------------------------------------------------------------------------------

    @staticmethod
    def _order_reference(trans_no: str, merchant_order_no: str) -> dict[str, str]:
        if not (trans_no or merchant_order_no):
            raise ValueError("Give trans_no or merchant_order_no.")
        return {"trans_no": trans_no, "merchant_order_no": merchant_order_no}

    def build_request(self, method: Method, business_fields: Mapping[str, Any]) -> dict[str, str]:
        """The exact body sent: common fields, business fields as text, empty ones dropped, signed."""
        fields: dict[str, Any] = {
            "app_id": self.app_id,
            "format": "JSON",
            "charset": "UTF-8",
            "sign_type": self.sign_type,
            "version": "1.0",
            "timestamp": str(int(self._clock() * 1000)),
            "method": method.value,
            "merchant_no": self.merchant_no,
            **business_fields,
        }
        body = {key: _wire_value(value) for key, value in fields.items() if value is not None and value != ""}
        if self.sign_type == "RSA2" and self._private_key is not None:  # the constructor requires the key
            body["sign"] = signing.sign(body, self._private_key)
        return body

    def _call(self, method: Method, business_fields: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """Send with the retry rule of the method; answer (data, psn) or raise a GatewayError."""
        # A resend of a money-moving call is only safe when the first attempt never left this machine.
        read_only = method not in MONEY_MOVING_METHODS
        attempt = 0
        while True:
            try:
                return self._send_once(method, business_fields)
            except (GatewayRequestNotSent, GatewayOutcomeUnknown) as exc:
                # An unsigned error answer is an answer: asking again brings the same one.
                retryable = isinstance(exc, GatewayRequestNotSent) or (
                    read_only and not isinstance(exc, GatewayUnsignedRefusal)
                )
                if not retryable or attempt >= self._max_retries:
                    raise
                attempt += 1
                delay = min(0.5 * 2 ** (attempt - 1), 4.0)
                logger.warning(
                    "codepay call retried",
                    extra={"codepay_method": method.value, "attempt": attempt, "reason": exc.kind, "delay": delay},
                )
            self._sleep(delay)

    def _send_once(self, method: Method, business_fields: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        if self._throttle is not None:
            self._throttle()
        body = self.build_request(method, business_fields)
        started_at = datetime.now(tz=UTC)
        started = time.monotonic()
        http_status: int | None = None
        envelope: dict[str, Any] | None = None
        error: GatewayError | None = None
        try:
            http_status, text = self._post(method, body)
            envelope, data = self._read_envelope(method, http_status, text)
            return data, str(envelope.get("psn") or "")
        except GatewayError as exc:
            error = exc
            raise
        finally:
            self._record(
                CallRecord(
                    method=method.value,
                    merchant_order_no=body.get("merchant_order_no", ""),
                    started_at=started_at,
                    duration_ms=int((time.monotonic() - started) * 1000),
                    outcome=error.kind if error else "ok",
                    http_status=http_status,
                    gateway_code=str((envelope or {}).get("code", getattr(error, "code", "")) or ""),
                    gateway_message=str((envelope or {}).get("msg", "") or (error.message if error else "")),
                    psn=str((envelope or {}).get("psn", "") or ""),
                    request=redact(body),
                    response=redact(envelope) if envelope is not None else None,
                )
            )

    def _post(self, method: Method, body: dict[str, str]) -> tuple[int, str]:
        headers = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}
        auth = None
        if self.sign_type == "NONE" and self._basic_auth is not None:  # the constructor requires it
            user, password = self._basic_auth
            auth = requests.auth.HTTPBasicAuth(user, password)
        try:
            response = self._session.post(
                f"{self.base_url}/api/entry",
                data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                headers=headers,
                auth=auth,
                timeout=self._timeouts,
            )
        except requests.exceptions.ConnectionError as exc:
            if _failed_before_sending(exc):
                raise GatewayRequestNotSent(
                    f"could not connect to {self.base_url} ({type(exc).__name__}); nothing was sent",
                    method=method.value,
                ) from None
            raise GatewayOutcomeUnknown(
                f"the connection to {self.base_url} broke after the request was sent", method=method.value
            ) from None
        except requests.exceptions.Timeout:
            raise GatewayOutcomeUnknown(
                f"no answer within {self._timeouts[1]:g}s after the request was sent", method=method.value
            ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise GatewayConfigurationError(
                f"{self.base_url} is not a usable URL; check CODEPAY_BASE_URL", method=method.value
            ) from None
        except requests.exceptions.RequestException as exc:
            # Anything else (a broken or undecodable answer) happened after the request may have arrived.
            raise GatewayOutcomeUnknown(
                f"the answer could not be read ({type(exc).__name__})", method=method.value
            ) from None
        return response.status_code, response.content.decode("utf-8", errors="replace")

    def _read_envelope(self, method: Method, http_status: int, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if http_status in (401, 403):
            raise GatewayConfigurationError(
                f"the gateway refused our credentials (HTTP {http_status}); check the app id and Basic Auth pair",
                method=method.value,
            )
        if http_status == 404:
            raise GatewayConfigurationError(
                f"{self.base_url}/api/entry does not exist (HTTP 404); check CODEPAY_BASE_URL", method=method.value
            )
        if http_status >= 500 or http_status != 200:
            raise GatewayOutcomeUnknown(f"the gateway answered HTTP {http_status}", method=method.value)
        try:
            envelope = json.loads(text, parse_float=Decimal)
            if not isinstance(envelope, dict):
                raise ValueError("not an object")
            raw = signing.raw_top_level_values(text)
        except ValueError:
            raise GatewayOutcomeUnknown(
                "the gateway answered a body that is not a JSON object", method=method.value
            ) from None
        # The signature covers `data` as the text that was sent (a JSON string, or an object's raw text).
        signed_fields = {
            key: (value if isinstance(value, str) else raw[key])
            for key, value in envelope.items()
            if key != "sign" and value is not None
        }
        code = str(envelope.get("code", ""))
        verified = self.sign_type == "NONE" or (
            self._gateway_public_key is not None  # the constructor requires it for RSA2
            and signing.verify(signed_fields, envelope.get("sign"), self._gateway_public_key)
        )
        psn = str(envelope.get("psn") or "")
        if code != SUCCESS_CODE:
            message = str(envelope.get("msg") or "no message")
            if not verified:
                # An unsigned "no" may not come from the gateway (docs/protocol.md, "Responses"): acting on it
                # at once, e.g. on "order not found", could fail an order that was paid. Its outcome stays
                # unknown; only a query's "not found" repeated past the grace period is believed.
                raise GatewayUnsignedRefusal(code=code, message=message, method=method.value, psn=psn)
            raise GatewayDeclined(
                code=code, message=message, method=method.value, psn=psn, data=self._decode_data(envelope)
            )
        if not verified:
            raise GatewayOutcomeUnknown(
                "the success answer's signature does not verify with the configured gateway public key "
                "(check CODEPAY_GATEWAY_PUBLIC_KEY); the outcome is treated as unknown",
                method=method.value,
                psn=psn,
            )
        return envelope, self._decode_data(envelope)

    @staticmethod
    def _decode_data(envelope: Mapping[str, Any]) -> dict[str, Any]:
        data = envelope.get("data")
        if isinstance(data, str) and data:
            try:
                data = json.loads(data, parse_float=Decimal)
            except ValueError:
                return {}
        return data if isinstance(data, dict) else {}

    def _record(self, record: CallRecord) -> None:
        logger.info(
            "codepay call",
            extra={
                "codepay_method": record.method,
                "merchant_order_no": record.merchant_order_no,
                "duration_ms": record.duration_ms,
                "outcome": record.outcome,
                "gateway_code": record.gateway_code,
                "psn": record.psn,
            },
        )
        if self._on_call is not None:
            self._on_call(record)


def _failed_before_sending(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never established, so no request byte reached the gateway."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError, NameResolutionError, ConnectionRefusedError))


__all__ = ["CallRecord", "CardDetails", "CodePayClient", "GatewayResult", "redact"]
