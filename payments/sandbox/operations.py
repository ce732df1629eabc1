"""
The gateway methods: each reads its business fields, applies them to the state and shapes ``data``.

- Every request value arrives as a string (docs/protocol.md, "Request signing": scalars as strings, nested
  objects as compact JSON strings). ``Fields`` turns them into typed values and names the field in every
  refusal; it is strict (only "true"/"false", amounts with the currency's digits) so that a client bug
  shows up here rather than against the real gateway.
- Method names come from ``payments.gateway.methods.Method``, the table the client uses too; eight of
  them are inferred there.
- ``data`` values are strings, as in the reference's query answers (``"trans_amount": "200"``); a client
  should accept numbers as well, since some of the reference's samples show them.
- The card checkout decides its outcome by PAN, like most gateways' test cards: ``DECLINED_PAN`` is
  declined, ``THREE_DS_PAN`` needs 3-D Secure, any other valid card is approved. Only the last four digits
  and the brand outlive the request; no refusal echoes card data.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric import rsa

from payments.gateway import signing
from payments.gateway.methods import Method, TransStatus, TransType
from payments.gateway.money import AmountError, CurrencyError, parse_amount, validate_currency
from payments.gateway.vocabulary import (
    MERCHANT_ORDER_NO_PATTERN,
    PAY_SCENARIO_CARD,
    PAY_SCENARIOS,
    RECEIPT_PRINT_MODES,
    TERMINAL_CARD_TYPES,
)

from . import errors
from .errors import SandboxError, require
from .faults import FaultPlan
from .state import SandboxState
from .transactions import Channel, gateway_time

CHECKOUT_MAX_EXPIRES_SECONDS = 7 * 24 * 3600
REGISTER_APPLICATION = "CodePay Register"
OFFLINE_TERMINAL_PREFIX = "OFFLINE"
# Every trans_type a terminal order may carry; the rest (5, 7, 8) only arise from other calls.
CLOUD_TRANS_TYPES = tuple(
    trans_type.value
    for trans_type in TransType
    if trans_type not in {TransType.PRE_AUTH_CANCEL, TransType.COMPLETION_CANCEL, TransType.COMPLETION_REFUND}
)
# A terminal void, refund or completion acts on an earlier order (reference, wisehub.cloud.pay.order).
CLOUD_FOLLOW_UP_TYPES = frozenset({TransType.VOID, TransType.REFUND, TransType.PRE_AUTH_COMPLETION})

DECLINED_PAN = "4000000000000002"
THREE_DS_PAN = "4000000000003220"
# Brand by PAN prefix range (first and last prefix of the range), longest prefixes first.
CARD_BRANDS = (
    ("2221", "2720", "MasterCard"),
    ("6011", "6011", "Discover"),
    ("51", "55", "MasterCard"),
    ("34", "34", "Amex"),
    ("37", "37", "Amex"),
    ("35", "35", "JCB"),
    ("36", "36", "DinnersClub"),
    ("38", "38", "DinnersClub"),
    ("62", "62", "UnionPay"),
    ("65", "65", "Discover"),
    ("4", "4", "Visa"),
)

# The fields of the query answers (reference, "Query Order" and "Query Refund", and docs/protocol.md).
ORDER_QUERY_KEYS = (
    "trans_no merchant_order_no trans_type trans_status price_currency order_amount tip_amount cashback_amount "
    "trans_amount paid_amount attach pay_method_id pay_scenario terminal_sn store_no trans_end_time "
    "trans_error_code trans_error_msg discount_bpc discount_bmopc trans_fee_c"
).split()
REFUND_QUERY_KEYS = (
    "trans_no merchant_order_no orig_merchant_order_no trans_type trans_status price_currency order_amount "
    "trans_end_time"
).split()
APPROVAL = {"resp_code": "000", "resp_msg": "[000]APPROVAL"}

# Business fields each method requires, checked in this order after the common ones.
REQUIRED_FIELDS: dict[Method, tuple[str, ...]] = {
    Method.CLOUD_PAY_ORDER: (
        "terminal_sn",
        "message_receiving_application",
        "price_currency",
        "order_amount",
        "trans_type",
        "merchant_order_no",
        "description",
        "expires",
        "api_version",
    ),
    Method.CLOUD_PAY_CLOSE: ("terminal_sn", "merchant_order_no", "message_receiving_application"),
    Method.CHECKOUT: ("merchant_order_no", "price_currency", "order_amount", "expires", "description"),
    Method.MERCHANT_CHECKOUT: (
        "card",
        "billing_address",
        "merchant_order_no",
        "price_currency",
        "order_amount",
        "expires",
        "description",
    ),
    Method.CAPTURE: ("merchant_order_no", "trans_no", "trans_amount"),
    Method.INCREMENTAL_AUTH: ("trans_no", "trans_amount"),
    Method.CANCEL_PAYMENT: ("merchant_order_no", "trans_no"),
    Method.REFUND_PAYMENT: ("merchant_order_no", "trans_no", "order_amount"),
    Method.TIP_ADJUST_BY_TRANS_NO: ("trans_no", "tip_amount"),
    Method.TIP_ADJUSTMENT: ("merchant_order_no", "tip_adjustment_amount"),
    Method.RECALL: (),
    Method.BATCH_CLOSE: ("terminal_sn",),
    Method.BATCH_CLOSE_TERMINALS: (),
    Method.OPEN_BATCH: (),
    Method.ORDER_QUERY: (),
    Method.REFUND_QUERY: (),
    Method.ORDER_REVOKE: ("merchant_order_no",),
    Method.REFUND_SUBMIT: ("merchant_order_no", "price_currency", "order_amount", "description"),
}


class Fields:
    """Typed reads of a request's string fields; every refusal names the field."""

    def __init__(self, values: Mapping[str, str]):
        self._values = values

    def text(self, name: str) -> str:
        return self._values.get(name, "")

    def require(self, *names: str) -> None:
        for name in names:
            require(bool(self.text(name)), errors.MISSING_PARAMETER, name)

    def require_one_of(self, *names: str) -> None:
        require(any(self.text(name) for name in names), errors.MISSING_PARAMETER, " or ".join(names))

    def choice(self, name: str, allowed: tuple[str, ...], default: str = "") -> str:
        value = self.text(name) or default
        require(
            value in allowed or value == default,
            errors.INVALID_PARAMETER,
            f"{name} must be one of {', '.join(allowed)}",
        )
        return value

    def flag(self, name: str) -> bool:
        return self.choice(name, ("true", "false"), default="false") == "true"

    def currency(self, name: str = "price_currency") -> str:
        try:
            return validate_currency(self.text(name))
        except CurrencyError:
            raise SandboxError(errors.INVALID_CURRENCY, name) from None

    def amount(self, name: str, currency: str, *, positive: bool = True) -> Decimal:
        """An amount in ``currency``; an absent optional (not ``positive``) amount is zero."""
        raw = self.text(name)
        if not raw and not positive:
            return Decimal(0)
        try:
            amount = parse_amount(raw, currency)
        except AmountError:
            raise SandboxError(errors.INVALID_AMOUNT, name) from None
        require(amount > 0 if positive else amount >= 0, errors.INVALID_AMOUNT, name)
        return amount

    def seconds(self, name: str, maximum: int | None = None) -> int:
        raw = self.text(name)
        require(
            raw.isdigit() and int(raw) > 0, errors.INVALID_PARAMETER, f"{name} must be a positive number of seconds"
        )
        require(maximum is None or int(raw) <= maximum, errors.INVALID_PARAMETER, f"{name} is at most {maximum}")
        return int(raw)

    def json(self, name: str, kind: type) -> dict | list | None:
        """A nested object or array sent as a JSON string (docs/protocol.md, "Arrays and objects"); None when absent."""
        raw = self.text(name)
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        shape = "object" if kind is dict else "array"
        require(isinstance(value, kind), errors.INVALID_PARAMETER, f"{name} must be a JSON {shape} sent as a string")
        return value

    def new_merchant_order_no(self, name: str = "merchant_order_no") -> str:
        value = self.text(name)
        require(MERCHANT_ORDER_NO_PATTERN.fullmatch(value) is not None, errors.INVALID_MERCHANT_ORDER_NO)
        return value


class Operations:
    def __init__(
        self,
        *,
        state: SandboxState,
        faults: FaultPlan,
        gateway_private_key: rsa.RSAPrivateKey,
        base_url: Callable[[], str],
    ):
        self._state = state
        self._faults = faults
        self._gateway_private_key = gateway_private_key
        self._base_url = base_url
        self._handlers: dict[Method, Callable[[Fields, str, str], dict]] = {
            Method.CLOUD_PAY_ORDER: self._cloud_pay_order,
            Method.CLOUD_PAY_CLOSE: self._cloud_pay_close,
            Method.CHECKOUT: self._checkout,
            Method.MERCHANT_CHECKOUT: self._merchant_checkout,
            Method.CAPTURE: self._capture,
            Method.INCREMENTAL_AUTH: self._incremental_auth,
            Method.CANCEL_PAYMENT: self._cancel_payment,
            Method.REFUND_PAYMENT: self._refund_payment,
            Method.TIP_ADJUST_BY_TRANS_NO: self._tip_adjust_by_trans_no,
            Method.TIP_ADJUSTMENT: self._tip_adjustment,
            Method.RECALL: self._order_query,
            Method.BATCH_CLOSE: self._batch_close,
            Method.BATCH_CLOSE_TERMINALS: self._batch_close_terminals,
            Method.OPEN_BATCH: self._open_batch,
            Method.ORDER_QUERY: self._order_query,
            Method.REFUND_QUERY: self._refund_query,
            Method.ORDER_REVOKE: self._order_revoke,
            Method.REFUND_SUBMIT: self._refund_submit,
        }

    def run(self, method: Method, fields: Fields, *, app_id: str, merchant_no: str) -> dict:
        fields.require(*REQUIRED_FIELDS[method])
        return self._handlers[method](fields, app_id, merchant_no)

    # --- orders ------------------------------------------------------------------------------------

    def _cloud_pay_order(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        f.choice("message_receiving_application", (REGISTER_APPLICATION,))
        f.choice("api_version", ("2.0",))
        trans_type = TransType(f.choice("trans_type", CLOUD_TRANS_TYPES))
        if trans_type in CLOUD_FOLLOW_UP_TYPES:
            f.require("orig_merchant_order_no")
        # Checked although the sandbox has no screen or printer, so a malformed value fails here too.
        for name in ("on_screen_tip", "required_terminal_authentication", "on_screen_signature", "confirm_on_terminal"):
            f.flag(name)
        reject_when_offline = f.flag("reject_trade_when_terminal_offline")
        f.choice("receipt_print_mode", tuple(str(mode) for mode in RECEIPT_PRINT_MODES))
        f.choice("card_type", tuple(str(card_type) for card_type in TERMINAL_CARD_TYPES))
        terminal_online = not f.text("terminal_sn").startswith(OFFLINE_TERMINAL_PREFIX)
        require(terminal_online or not reject_when_offline, errors.TERMINAL_OFFLINE)
        currency = f.currency()
        order = self._state.add(
            app_id=app_id,
            merchant_no=merchant_no,
            merchant_order_no=f.new_merchant_order_no(),
            orig_merchant_order_no=f.text("orig_merchant_order_no"),
            trans_type=trans_type,
            channel=Channel.TERMINAL,
            price_currency=currency,
            order_amount=f.amount("order_amount", currency),
            tip_amount=f.amount("tip_amount", currency, positive=False),
            cashback_amount=f.amount("cashback_amount", currency, positive=False),
            expires=f.seconds("expires"),
            pay_scenario=f.choice("pay_scenario", PAY_SCENARIOS, default=PAY_SCENARIO_CARD),
            **self._order_details(f, "store_no", "terminal_sn", "pay_method_id", "attach", "description", "notify_url"),
        )
        return {
            "message_id": self._message_id(),
            "trans_no": order["trans_no"],
            "terminal_online_status": "online" if terminal_online else "offline",
        }

    def _cloud_pay_close(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        f.choice("message_receiving_application", (REGISTER_APPLICATION,))
        order = self._state.close_by_merchant(merchant_no, f.text("merchant_order_no"))
        return {"message_id": self._message_id(), "trans_no": order["trans_no"]}

    def _checkout(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        f.json("order_detail", dict)
        currency = f.currency()
        merchant_order_no = f.new_merchant_order_no()
        order = self._state.add(
            app_id=app_id,
            merchant_no=merchant_no,
            merchant_order_no=merchant_order_no,
            trans_type=TransType.SALE,
            channel=Channel.HOSTED_CHECKOUT,
            price_currency=currency,
            order_amount=f.amount("order_amount", currency),
            expires=f.seconds("expires", maximum=CHECKOUT_MAX_EXPIRES_SECONDS),
            **self._order_details(f, "store_no", "attach", "description", "notify_url", "return_url"),
        )
        return {"pay_url": self._page_url("checkout", merchant_order_no), "trans_no": order["trans_no"]}

    def _merchant_checkout(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        # Required by the reference; an empty object "{}" is no address either.
        require(bool(f.json("billing_address", dict)), errors.MISSING_PARAMETER, "billing_address")
        currency = f.currency()
        merchant_order_no = f.new_merchant_order_no()
        order_amount = f.amount("order_amount", currency)
        expires = f.seconds("expires")
        status, last4, brand = self._authorize_card(f.text("card"))
        order = self._state.add(
            app_id=app_id,
            merchant_no=merchant_no,
            merchant_order_no=merchant_order_no,
            trans_type=TransType.SALE,
            channel=Channel.MERCHANT_CHECKOUT,
            price_currency=currency,
            order_amount=order_amount,
            expires=expires,
            status=status,
            close_reason="card_declined" if status is TransStatus.CLOSED else "",
            card_last4=last4,
            pay_method_id=brand,
            **self._order_details(f, "store_no", "attach", "description", "notify_url", "return_url"),
        )
        data = {key: order[key] for key in ("trans_no", "trans_status", "pay_method_id", "trans_end_time")}
        if order["trans_error_code"]:
            data.update(trans_error_code=order["trans_error_code"], trans_error_msg=order["trans_error_msg"])
        if status is TransStatus.IN_PROGRESS:
            data["redirect_url_3dsecure"] = self._page_url("3ds", merchant_order_no)
        return data

    def _authorize_card(self, ciphertext: str) -> tuple[TransStatus, str, str]:
        """Decrypt and check the card; its outcome, last four digits and brand. The card goes no further."""
        try:
            card = json.loads(signing.decrypt_card(ciphertext, self._gateway_private_key))
        except (ValueError, TypeError):
            raise SandboxError(errors.CARD_INVALID, "card cannot be decrypted") from None
        require(isinstance(card, dict), errors.CARD_INVALID, "card must be a JSON object")
        pan, expiry, cvv = (str(card.get(name, "")) for name in ("pan", "expiry", "cvv"))
        require(12 <= len(pan) <= 19 and pan.isdigit() and _luhn_valid(pan), errors.CARD_INVALID, "pan")
        require(re.fullmatch(r"\d{3,4}", cvv) is not None, errors.CARD_INVALID, "cvv")
        require(_expiry_valid(expiry), errors.CARD_INVALID, "expiry")
        brand = next((name for low, high, name in CARD_BRANDS if low <= pan[: len(low)] <= high), "")
        require(bool(brand), errors.CARD_INVALID, "unsupported card brand")
        if pan == DECLINED_PAN:
            return TransStatus.CLOSED, pan[-4:], brand
        if pan == THREE_DS_PAN:
            return TransStatus.IN_PROGRESS, pan[-4:], brand
        return TransStatus.SUCCESS, pan[-4:], brand

    def _order_revoke(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        order = self._state.revoke(merchant_no, f.text("merchant_order_no"))
        return {"message_id": self._message_id(), "trans_no": order["trans_no"]}

    def _order_query(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        f.require_one_of("trans_no", "merchant_order_no")
        order = self._state.get(merchant_no, trans_no=f.text("trans_no"), merchant_order_no=f.text("merchant_order_no"))
        return {key: order[key] for key in ORDER_QUERY_KEYS}

    def _refund_query(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        f.require_one_of("trans_no", "merchant_order_no")
        refund = self._state.get(
            merchant_no, trans_no=f.text("trans_no"), merchant_order_no=f.text("merchant_order_no"), refund=True
        )
        return {key: refund[key] for key in REFUND_QUERY_KEYS}

    # --- authorizations, refunds and tips on an existing transaction --------------------------------

    def _capture(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        trans_no = f.text("trans_no")
        capture = self._state.capture(
            merchant_no,
            trans_no=trans_no,
            merchant_order_no=f.new_merchant_order_no(),
            amount=f.amount("trans_amount", self._currency_of(merchant_no, trans_no)),
        )
        return self._approval(capture)

    def _incremental_auth(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        trans_no = f.text("trans_no")
        authorization = self._state.increment_authorization(
            merchant_no, trans_no=trans_no, amount=f.amount("trans_amount", self._currency_of(merchant_no, trans_no))
        )
        return {
            "trans_status": authorization["trans_status"],
            "auth_no": _auth_no(trans_no),
            **APPROVAL,
            "trans_time": gateway_time(time.time()),
        }

    def _cancel_payment(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        cancel = self._state.cancel_payment(
            merchant_no, trans_no=f.text("trans_no"), merchant_order_no=f.new_merchant_order_no()
        )
        return self._approval(cancel)

    def _refund_payment(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        trans_no = f.text("trans_no")
        currency = self._currency_of(merchant_no, trans_no)
        refund = self._state.refund(
            merchant_no,
            orig_trans_no=trans_no,
            merchant_order_no=f.new_merchant_order_no(),
            order_amount=f.amount("order_amount", currency),
            tip_amount=f.amount("tip_amount", currency, positive=False),
            completes_later=self._refund_completes_later(Method.REFUND_PAYMENT),
        )
        return self._approval(refund)

    def _refund_submit(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        f.require_one_of("orig_merchant_order_no", "orig_trans_no")
        currency = f.currency()
        refund = self._state.refund(
            merchant_no,
            orig_trans_no=f.text("orig_trans_no"),
            orig_merchant_order_no=f.text("orig_merchant_order_no"),
            merchant_order_no=f.new_merchant_order_no(),
            order_amount=f.amount("order_amount", currency),
            price_currency=currency,
            description=f.text("description"),
            notify_url=f.text("notify_url"),
            completes_later=self._refund_completes_later(Method.REFUND_SUBMIT),
        )
        return {key: refund[key] for key in ("trans_no", "trans_amount", "trans_status")}

    def _tip_adjust_by_trans_no(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        trans_no = f.text("trans_no")
        sale = self._state.adjust_tip(
            merchant_no,
            trans_no=trans_no,
            tip_amount=f.amount("tip_amount", self._currency_of(merchant_no, trans_no), positive=False),
        )
        return {"trans_time": sale["trans_end_time"], "trans_status": sale["trans_status"]}

    def _tip_adjustment(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        """tip.adjustment sets the tip to ``tip_adjustment_amount``: the new total (TIP_ADJUSTMENT_MEANING)."""
        merchant_order_no = f.text("merchant_order_no")
        currency = self._state.get(merchant_no, merchant_order_no=merchant_order_no)["price_currency"]
        self._state.adjust_tip(
            merchant_no,
            merchant_order_no=merchant_order_no,
            tip_amount=f.amount("tip_adjustment_amount", currency, positive=False),
        )
        return {}

    # --- batches -----------------------------------------------------------------------------------

    def _batch_close(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        self._state.batch(merchant_no, terminal_sns=[f.text("terminal_sn")], close=True)
        return {}

    def _batch_close_terminals(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        return self._state.batch(merchant_no, store_no=f.text("store_no"), terminal_sns=_terminal_sns(f), close=True)

    def _open_batch(self, f: Fields, app_id: str, merchant_no: str) -> dict:
        return self._state.batch(merchant_no, store_no=f.text("store_no"), terminal_sns=_terminal_sns(f), close=False)

    # --- helpers -----------------------------------------------------------------------------------

    def _currency_of(self, merchant_no: str, trans_no: str) -> str:
        """Calls on an existing transaction carry no currency; their amounts are in the original's."""
        return self._state.get(merchant_no, trans_no=trans_no)["price_currency"]

    def _refund_completes_later(self, method: Method) -> bool:
        return self._faults.take_call_fault(method.value, frozenset({"refund_async"})) is not None

    def _approval(self, txn: dict) -> dict:
        """The card-style answer of capture, cancel and refund (reference, "Capture Payment")."""
        return {
            "trans_no": txn["trans_no"],
            "trans_status": txn["trans_status"],
            "auth_no": _auth_no(txn["trans_no"]),
            **APPROVAL,
            # An asynchronous refund has no end time yet; the call itself happened now.
            "trans_time": txn["trans_end_time"] or gateway_time(time.time()),
        }

    def _message_id(self) -> str:
        return f"M{self._state.next_serial():021d}"

    def _page_url(self, page: str, merchant_order_no: str) -> str:
        return f"{self._base_url()}/sandbox/{page}/{quote(merchant_order_no, safe='')}"

    @staticmethod
    def _order_details(f: Fields, *names: str) -> dict[str, Any]:
        return {name: f.text(name) for name in names}


def _terminal_sns(f: Fields) -> list[str]:
    """terminal_sn_list arrives as a JSON array string; empty or absent selects every terminal."""
    terminal_sns = f.json("terminal_sn_list", list) or []
    require(all(isinstance(sn, str) for sn in terminal_sns), errors.INVALID_PARAMETER, "terminal_sn_list holds strings")
    return list(terminal_sns)


def _auth_no(trans_no: str) -> str:
    """A six-digit approval code; derived from the trans_no so it is stable without being stored."""
    return trans_no[-6:]


def _luhn_valid(pan: str) -> bool:
    total = 0
    for position, digit in enumerate(int(d) for d in reversed(pan)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _expiry_valid(expiry: str) -> bool:
    """MMYY, a real month, not before the current month."""
    if re.fullmatch(r"\d{4}", expiry) is None or not 1 <= int(expiry[:2]) <= 12:
        return False
    today = datetime.now(UTC)
    return (2000 + int(expiry[2:]), int(expiry[:2])) >= (today.year, today.month)
