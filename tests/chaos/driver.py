"""
The store systems and customers of a chaos run: concurrent clients driving orders through the REST API,
and the customer's side (paying, declining, 3-D Secure) played on the sandbox's control API.

Every POST carries an Idempotency-Key. A request that got no usable answer (connection refused while the
web process restarts, a 500 while the database connections drop, a 503 when nothing reached the gateway,
a 409 while the same key is in flight) is sent again with the same key, and about one POST in ten is sent
twice on purpose, so replays are exercised even when nothing fails. Scenarios cover every channel and
trans type; each order's number, kind and the time of its last action are kept for the checks.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import requests

from tests.chaos.stack import STORE_NO

TERMINAL_SN = "WPYB002248000865"
VISA_OK = {"pan": "4111111111111111", "holder": "Chaos Tester", "cvv": "123", "expiry": "1230"}
THREE_DS_PAN = "4000000000003220"
DECLINED_PAN = "4000000000000002"
BILLING_ADDRESS = {"name": "Chaos Tester", "country": "US", "zip": "10001"}
RETRY_STATUSES = frozenset({500, 503})
REQUEST_PATIENCE_SECONDS = 120
STATUS_WAIT_SECONDS = 45
EXPIRES_IN_SECONDS = 30


@dataclass
class DrivenOrder:
    merchant_order_no: str
    scenario: str
    created_status: int = 0
    last_action_at: float = 0.0
    # Seconds after the last action when the gateway's truth still changes by itself (an order expiring).
    settles_after: float = 0.0
    refunds: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)


@dataclass
class Tally:
    """What the clients did, counted under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)

    def add(self, name: str, count: int = 1) -> None:
        with self.lock:
            self.requests[name] += count

    def answer(self, status: int) -> None:
        with self.lock:
            self.answers[status] += 1


class StoreSystem:
    """One REST client (a store system's backend), retrying with the same Idempotency-Key."""

    def __init__(self, *, base_url: str, api_key: str, sandbox_url: str, tally: Tally, rng: random.Random):
        self.base_url = base_url
        self.sandbox_url = sandbox_url
        self.tally = tally
        self.rng = rng
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Api-Key {api_key}"

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        key = str(uuid.uuid4())
        status, answer = self._post_until_answered(path, body, key)
        if self.rng.random() < 0.1:
            # A client that never saw the first answer would send this again: the replay must match it.
            replay_status, replay = self._post_until_answered(path, body, key)
            self.tally.add("deliberate replays")
            if (replay_status, replay) != (status, answer) and replay_status not in RETRY_STATUSES:
                self.tally.add("replays answered differently")
        return status, answer

    def _post_until_answered(self, path: str, body: dict, key: str) -> tuple[int, dict]:
        deadline = time.monotonic() + REQUEST_PATIENCE_SECONDS
        first = True
        while True:
            self.tally.add("POST requests")
            if not first:
                self.tally.add("POST retries (same key)")
            first = False
            try:
                response = self.session.post(
                    f"{self.base_url}/api/v1/{path}", json=body, headers={"Idempotency-Key": key}, timeout=30
                )
            except requests.RequestException:
                status, answer = 0, {}
            else:
                status = response.status_code
                answer = _json(response)
            self.tally.answer(status)
            in_flight = status == 409 and answer.get("error", {}).get("code") == "request_in_flight"
            if status and status not in RETRY_STATUSES and not in_flight:
                return status, answer
            if time.monotonic() > deadline:
                return status, answer
            time.sleep(0.5 + self.rng.random())

    def order(self, merchant_order_no: str) -> dict:
        deadline = time.monotonic() + REQUEST_PATIENCE_SECONDS
        while True:
            try:
                response = self.session.get(f"{self.base_url}/api/v1/orders/{merchant_order_no}/", timeout=30)
                if response.status_code == 200:
                    return response.json()
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                return {}
            time.sleep(0.5)

    def wait_for_status(self, merchant_order_no: str, wanted: set[str]) -> str:
        """Our status once it is one of ``wanted`` (or whatever it is when the wait runs out)."""
        deadline = time.monotonic() + STATUS_WAIT_SECONDS
        while True:
            status = self.order(merchant_order_no).get("status", "")
            if status in wanted or time.monotonic() > deadline:
                return status
            time.sleep(0.5)

    def customer(self, action: str, merchant_order_no: str, body: dict | None = None) -> int:
        """The customer (or terminal) acts on the sandbox; retried while the sandbox restarts."""
        deadline = time.monotonic() + REQUEST_PATIENCE_SECONDS
        while True:
            try:
                response = requests.post(
                    f"{self.sandbox_url}/sandbox/{action.format(no=merchant_order_no)}", json=body or {}, timeout=30
                )
                self.tally.add("customer actions")
                return response.status_code
            except requests.RequestException:
                if time.monotonic() > deadline:
                    return 0
                time.sleep(0.5)


def _json(response: requests.Response) -> dict:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- scenarios: one order each, every channel and trans type ------------------------------------------


def _amount(rng: random.Random, low: int = 100, high: int = 20000) -> Decimal:
    return Decimal(rng.randint(low, high)) / 100


def _create(client: StoreSystem, order: DrivenOrder, body: dict) -> int:
    status, _ = client.post(
        "orders/",
        {
            "merchant_order_no": order.merchant_order_no,
            "currency": "USD",
            "description": f"chaos {order.scenario}",
            **body,
        },
    )
    client.tally.add(f"orders created ({body['channel']}, {body.get('trans_type', 'sale')})")
    order.created_status = status
    return status


def _terminal(client, order, rng, amount: Decimal, **extra) -> int:
    return _create(
        client,
        order,
        {"channel": "terminal", "amount": str(amount), "terminal_sn": TERMINAL_SN, "store_no": STORE_NO, **extra},
    )


def _refund(client, order, amount: Decimal, suffix: str) -> int:
    refund_no = f"{order.merchant_order_no}R{suffix}"
    order.refunds.append(refund_no)
    client.tally.add("refunds requested")
    status, _ = client.post(
        f"orders/{order.merchant_order_no}/refunds/",
        {"amount": str(amount), "reason": "chaos", "merchant_order_no": refund_no},
    )
    return status


def _operation(client, order, kind: str, body: dict | None = None) -> int:
    order.operations.append(kind)
    client.tally.add(f"operations: {kind}")
    status, _ = client.post(f"orders/{order.merchant_order_no}/{kind}/", body or {})
    return status


def terminal_sale_tip_and_racing_refunds(client, order, rng):
    """Paid with a tip on screen, tip adjusted, then two refunds of 60 % each race: one may pass, never both."""
    amount = _amount(rng)
    if _terminal(client, order, rng, amount) not in (201, 202):
        return
    client.customer("orders/{no}/pay", order.merchant_order_no, {"tip_amount": "1.00"})
    if client.wait_for_status(order.merchant_order_no, {"succeeded"}) != "succeeded":
        return
    _operation(client, order, "tip", {"tip_amount": "2.50"})
    share = (amount * Decimal("0.6")).quantize(Decimal("0.01"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda suffix: _refund(client, order, share, suffix), ("1", "2")))


def terminal_auth_increment_capture(client, order, rng):
    amount = _amount(rng)
    if _terminal(client, order, rng, amount, trans_type="auth") not in (201, 202):
        return
    client.customer("orders/{no}/pay", order.merchant_order_no)
    if client.wait_for_status(order.merchant_order_no, {"authorized"}) != "authorized":
        return
    _operation(client, order, "increment", {"amount": "5.00"})
    _operation(client, order, "capture", {"amount": str((amount * Decimal("0.7")).quantize(Decimal("0.01")))})


def terminal_auth_void(client, order, rng):
    if _terminal(client, order, rng, _amount(rng), trans_type="auth") not in (201, 202):
        return
    client.customer("orders/{no}/pay", order.merchant_order_no)
    if client.wait_for_status(order.merchant_order_no, {"authorized"}) == "authorized":
        _operation(client, order, "cancel")


def terminal_cashback_refund(client, order, rng):
    amount = _amount(rng)
    if _terminal(client, order, rng, amount, trans_type="cashback", cashback_amount="20.00") not in (201, 202):
        return
    client.customer("orders/{no}/pay", order.merchant_order_no)
    if client.wait_for_status(order.merchant_order_no, {"succeeded"}) == "succeeded":
        _refund(client, order, (amount / 3).quantize(Decimal("0.01")), "1")


def terminal_sale_declined(client, order, rng):
    if _terminal(client, order, rng, _amount(rng)) in (201, 202):
        client.customer("orders/{no}/decline", order.merchant_order_no)


def terminal_sale_cancelled_while_waiting(client, order, rng):
    # A cancel that does not act (its answer refused or lost before the gateway saw it) leaves the order
    # waiting; a short expiry still ends it within the run, as the customer's absence would.
    order.settles_after = EXPIRES_IN_SECONDS
    if (
        _terminal(client, order, rng, _amount(rng), expires_in=EXPIRES_IN_SECONDS) in (201, 202)
        and client.wait_for_status(order.merchant_order_no, {"pending"}) == "pending"
    ):
        _operation(client, order, "cancel")


def terminal_sale_expires(client, order, rng):
    order.settles_after = EXPIRES_IN_SECONDS
    _terminal(client, order, rng, _amount(rng), expires_in=EXPIRES_IN_SECONDS)


def checkout_paid_then_refunded_whole(client, order, rng):
    amount = _amount(rng)
    if _create(client, order, {"channel": "checkout", "amount": str(amount)}) not in (201, 202):
        return
    client.customer("orders/{no}/pay", order.merchant_order_no)
    if client.wait_for_status(order.merchant_order_no, {"succeeded"}) == "succeeded":
        _refund(client, order, amount, "1")


def checkout_abandoned_expires(client, order, rng):
    order.settles_after = EXPIRES_IN_SECONDS
    _create(client, order, {"channel": "checkout", "amount": str(_amount(rng)), "expires_in": EXPIRES_IN_SECONDS})


def checkout_revoked_while_waiting(client, order, rng):
    order.settles_after = EXPIRES_IN_SECONDS  # as above: expires if the revoke does not act
    body = {"channel": "checkout", "amount": str(_amount(rng)), "expires_in": EXPIRES_IN_SECONDS}
    if (
        _create(client, order, body) in (201, 202)
        and client.wait_for_status(order.merchant_order_no, {"pending"}) == "pending"
    ):
        _operation(client, order, "cancel")


def card_approved_partial_refund(client, order, rng):
    amount = _amount(rng)
    body = {"channel": "card", "amount": str(amount), "card": VISA_OK, "billing_address": BILLING_ADDRESS}
    if (
        _create(client, order, body) in (201, 202)
        and client.wait_for_status(order.merchant_order_no, {"succeeded"}) == "succeeded"
    ):
        _refund(client, order, (amount / 4).quantize(Decimal("0.01")), "1")


def card_three_ds(outcome: str) -> Callable:
    def scenario(client, order, rng):
        card = {**VISA_OK, "pan": THREE_DS_PAN}
        body = {"channel": "card", "amount": str(_amount(rng)), "card": card, "billing_address": BILLING_ADDRESS}
        if _create(client, order, body) in (201, 202):
            client.customer(f"orders/{{no}}/3ds/{outcome}", order.merchant_order_no)

    scenario.__name__ = f"card_three_ds_{outcome}"
    return scenario


def card_declined(client, order, rng):
    card = {**VISA_OK, "pan": DECLINED_PAN}
    _create(
        client,
        order,
        {"channel": "card", "amount": str(_amount(rng)), "card": card, "billing_address": BILLING_ADDRESS},
    )


SCENARIOS: tuple[Callable, ...] = (
    terminal_sale_tip_and_racing_refunds,
    terminal_auth_increment_capture,
    terminal_auth_void,
    terminal_cashback_refund,
    terminal_sale_declined,
    terminal_sale_cancelled_while_waiting,
    terminal_sale_expires,
    checkout_paid_then_refunded_whole,
    checkout_abandoned_expires,
    checkout_revoked_while_waiting,
    card_approved_partial_refund,
    card_three_ds("complete"),
    card_three_ds("fail"),
    card_declined,
)


class Driver:
    """Runs ``count`` orders on ``clients`` threads; ``on_progress(done)`` after each order."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        sandbox_url: str,
        count: int,
        clients: int,
        seed: int,
        run_id: str,
        on_progress: Callable[[int], None],
    ):
        self.tally = Tally()
        self.orders: list[DrivenOrder] = []
        self._count = count
        self._clients = clients
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._done = 0
        self._clients_made = [
            StoreSystem(
                base_url=base_url,
                api_key=api_key,
                sandbox_url=sandbox_url,
                tally=self.tally,
                rng=random.Random(seed * 1000 + number),
            )
            for number in range(clients)
        ]
        self._run_id = run_id

    def run(self) -> None:
        with ThreadPoolExecutor(max_workers=self._clients) as pool:
            for number in range(self._count):
                pool.submit(self._one, number)

    def _one(self, number: int) -> None:
        client = self._clients_made[number % self._clients]
        scenario = SCENARIOS[number % len(SCENARIOS)]
        order = DrivenOrder(merchant_order_no=f"C{self._run_id}{number:05d}", scenario=scenario.__name__)
        with self._lock:
            self.orders.append(order)
        try:
            scenario(client, order, random.Random(number))
        except Exception as exc:  # a harness bug must not hide the rest of the run
            self.tally.add(f"scenario errors ({type(exc).__name__})")
        order.last_action_at = time.monotonic() + order.settles_after
        with self._lock:
            self._done += 1
            done = self._done
        self._on_progress(done)
