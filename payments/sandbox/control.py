"""
The control API under ``/sandbox/``: plays the terminal and the customer, injects faults, shows what happened.

It is a test tool, so it takes no signature. JSON in and out; refusals are ``{"error": {"code", "message"}}``
with 400 (bad input), 404 (unknown order or route) or 409 (the order's status does not allow it), the
code being the sandbox error code where there is one. Orders are named by merchant_order_no alone;
``?merchant_no=`` picks one when two merchants use the same number.

Two HTML pages stand in for CodePay's hosted checkout and the 3-D Secure challenge, for demos: their
buttons call this same API.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from decimal import Decimal
from urllib.parse import parse_qs, quote, unquote

from payments.gateway.methods import TransStatus
from payments.gateway.money import AmountError, parse_amount

from . import errors
from .errors import SandboxError
from .faults import FaultPlan
from .responses import Response, error_response, json_response, text_response
from .state import SandboxState

_ORDER = r"/sandbox/orders/(?P<merchant_order_no>[^/]+)"
PAY_AMOUNTS = ("tip_amount", "discount_bpc", "discount_bmopc", "trans_fee_c")
CLOSE_REASONS = {"decline": "declined", "abandon": "abandoned", "expire": "expired"}


class Control:
    def __init__(self, *, state: SandboxState, faults: FaultPlan, reset: Callable[[], None]):
        self._state = state
        self._faults = faults
        self._reset = reset
        self._routes = (
            ("GET", r"/sandbox/orders", self._orders),
            ("GET", _ORDER, self._order),
            ("POST", _ORDER + "/pay", self._pay),
            ("POST", _ORDER + "/(?P<action>decline|abandon|expire)", self._close_unpaid),
            ("POST", _ORDER + "/3ds/(?P<outcome>complete|fail)", self._finish_3ds),
            ("POST", r"/sandbox/refunds/(?P<merchant_order_no>[^/]+)/(?P<outcome>complete|fail)", self._finish_refund),
            ("POST", r"/sandbox/faults", self._add_call_fault),
            ("DELETE", r"/sandbox/faults", self._clear_faults),
            ("GET", r"/sandbox/faults/fired", self._fired_faults),
            ("POST", r"/sandbox/notification-faults", self._add_notification_fault),
            ("POST", r"/sandbox/reset", self._reset_all),
            ("GET", r"/sandbox/calls", self._calls),
            ("GET", r"/sandbox/checkout/(?P<merchant_order_no>[^/]+)", self._checkout_page),
            ("GET", r"/sandbox/3ds/(?P<merchant_order_no>[^/]+)", self._three_ds_page),
        )

    def handle(self, verb: str, path: str, query: str, body: bytes) -> Response:
        for route_verb, pattern, handler in self._routes:
            match = re.fullmatch(pattern, path)
            if match and route_verb == verb:
                params = {name: unquote(value) for name, value in match.groupdict().items()}
                merchant_no = parse_qs(query).get("merchant_no", [""])[0]
                try:
                    return handler(_json_body(body), merchant_no=merchant_no, **params)
                except SandboxError as exc:
                    status = 404 if exc.error is errors.ORDER_NOT_FOUND else 409
                    return error_response(status, exc.code, exc.msg)
                except ValueError as exc:
                    return error_response(400, "invalid_request", str(exc))
        return error_response(404, "not_found", f"No sandbox route for {verb} {path}.")

    # --- the terminal and the customer -------------------------------------------------------------

    def _orders(self, body: dict, *, merchant_no: str) -> Response:
        """Every transaction (orders and their follow-ups), as ``GET /sandbox/orders/<no>`` shows each."""
        return json_response(200, {"orders": self._state.control_views(merchant_no)})

    def _order(self, body: dict, *, merchant_no: str, merchant_order_no: str) -> Response:
        return json_response(200, self._state.control_view(merchant_order_no, merchant_no))

    def _pay(self, body: dict, *, merchant_no: str, merchant_order_no: str) -> Response:
        """The customer pays, or the card is authorized for a pre-auth; optional pay_method_id, tip_amount, and
        the discounts and fee order.query then reports (discount_bpc, discount_bmopc, trans_fee_c)."""
        currency = self._state.control_view(merchant_order_no, merchant_no)["price_currency"]
        amounts = {name: _amount(body[name], currency, name) for name in PAY_AMOUNTS if body.get(name) is not None}
        view = self._state.pay(
            merchant_order_no,
            merchant_no=merchant_no,
            pay_method_id=str(body.get("pay_method_id") or ""),
            **amounts,
        )
        return json_response(200, view)

    def _close_unpaid(self, body: dict, *, merchant_no: str, merchant_order_no: str, action: str) -> Response:
        view = self._state.close_unpaid(merchant_order_no, reason=CLOSE_REASONS[action], merchant_no=merchant_no)
        return json_response(200, view)

    def _finish_3ds(self, body: dict, *, merchant_no: str, merchant_order_no: str, outcome: str) -> Response:
        view = self._state.finish_3ds(merchant_order_no, authenticated=outcome == "complete", merchant_no=merchant_no)
        return json_response(200, view)

    def _finish_refund(self, body: dict, *, merchant_no: str, merchant_order_no: str, outcome: str) -> Response:
        view = self._state.finish_refund(merchant_order_no, succeeded=outcome == "complete", merchant_no=merchant_no)
        return json_response(200, view)

    # --- faults and housekeeping -------------------------------------------------------------------

    def _add_call_fault(self, body: dict, *, merchant_no: str) -> Response:
        return json_response(201, {"fault": self._faults.add_call_fault(body)})

    def _add_notification_fault(self, body: dict, *, merchant_no: str) -> Response:
        return json_response(201, {"fault": self._faults.add_notification_fault(body)})

    def _fired_faults(self, body: dict, *, merchant_no: str) -> Response:
        return json_response(200, {"fired": self._faults.fired()})

    def _clear_faults(self, body: dict, *, merchant_no: str) -> Response:
        self._faults.clear()
        return json_response(200, {"faults": []})

    def _reset_all(self, body: dict, *, merchant_no: str) -> Response:
        self._reset()
        return json_response(200, {"reset": True})

    def _calls(self, body: dict, *, merchant_no: str) -> Response:
        return json_response(200, {"calls": self._state.calls()})

    # --- demo pages --------------------------------------------------------------------------------

    def _checkout_page(self, body: dict, *, merchant_no: str, merchant_order_no: str) -> Response:
        view = self._state.control_view(merchant_order_no, merchant_no)
        return _page("CodePay sandbox checkout", view, (("Pay", "pay"), ("Decline", "decline")))

    def _three_ds_page(self, body: dict, *, merchant_no: str, merchant_order_no: str) -> Response:
        view = self._state.control_view(merchant_order_no, merchant_no)
        return _page("CodePay sandbox 3-D Secure", view, (("Authenticate", "3ds/complete"), ("Fail", "3ds/fail")))


def _json_body(body: bytes) -> dict:
    """The request's JSON object; an empty body (a bare POST from a page button) is an empty object."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise ValueError("The body must be JSON.") from None
    if not isinstance(value, dict):
        raise ValueError("The body must be a JSON object.")
    return value


def _amount(value: object, currency: str, name: str) -> Decimal:
    try:
        return parse_amount(value, currency)
    except AmountError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _page(title: str, view: dict, actions: tuple[tuple[str, str], ...]) -> Response:
    """A bare page showing the order and, while it is open, one button per action."""
    action_base = f"/sandbox/orders/{quote(view['merchant_order_no'], safe='')}/"
    is_open = view["trans_status"] in (TransStatus.CREATED.value, TransStatus.IN_PROGRESS.value)
    buttons = "".join(
        f'<button onclick="act({html.escape(json.dumps(action))})">{html.escape(label)}</button> '
        for label, action in actions
    )
    # json.dumps makes safe JavaScript literals; "</" is escaped so a value cannot close the script.
    script_values = json.dumps({"base": action_base, "returnUrl": view["return_url"]}).replace("</", "<\\/")
    amount = f"{view['trans_amount']} {view['price_currency']}"
    document = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(view["description"])}</p>
<p>Order {html.escape(view["merchant_order_no"])}: {html.escape(amount)}</p>
<p>Status: {html.escape(view["trans_status"])}</p>
{buttons if is_open else ""}
<script>
const page = {script_values};
async function act(action) {{
  const response = await fetch(page.base + action, {{method: "POST"}});
  if (response.ok && page.returnUrl) {{ window.location.href = page.returnUrl; }} else {{ window.location.reload(); }}
}}
</script>
</body></html>
"""
    return text_response(200, document, "text/html; charset=utf-8")
