"""The Python client (clients/python) against the live service, the sandbox and the waits process."""

from __future__ import annotations

import json
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codepay_merchant_client import (
    AuthenticationError,
    ConnectionFailed,
    InvalidRequestError,
    MerchantClient,
    NotFoundError,
    RateLimitError,
    SignatureVerificationError,
    UnavailableError,
    construct_event,
    verify_signature,
)
from payments.events.signing import signature_header
from payments.models import IdempotencyRecord, Order
from payments.services.accounts import gateway_clients_reset
from payments.throttling import ApiKeyRateThrottle
from tests.asgi_server import asgi_server
from tests.payments.test_order_wait import wait_for_subscribers

TERMINAL = {"channel": "terminal", "amount": Decimal("9.99"), "currency": "USD", "description": "Soup"}
TERMINAL_SN = "WPYB002248000865"


class Recorder:
    """Every request the client really sent, seen at the transport (a requests response hook)."""

    def __init__(self, client: MerchantClient):
        self.requests: list = []
        client.session.hooks["response"].append(lambda response, **kwargs: self.requests.append(response.request))

    def keys(self) -> list[str | None]:
        return [request.headers.get("Idempotency-Key") for request in self.requests]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(live_server, api_key, sleeps) -> MerchantClient:
    return MerchantClient(base_url=live_server.url, api_key=api_key[1], sleep=sleeps.append)


def test_an_order_is_created_with_a_fresh_idempotency_key_and_read_back_typed(client):
    """create_order answers a typed Order (Decimal amounts); its POST carried a uuid4 key the service stored."""
    recorder = Recorder(client)
    order = client.create_order(**TERMINAL, terminal_sn=TERMINAL_SN)
    assert (order.status, order.amount, order.currency, order.settled) == ("pending", Decimal("9.99"), "USD", False)
    [key] = recorder.keys()
    assert uuid.UUID(key).version == 4
    assert IdempotencyRecord.objects.filter(key=key).count() == 1
    assert client.get_order(order.merchant_order_no) == order

    second = client.create_order(**TERMINAL, terminal_sn=TERMINAL_SN)
    assert recorder.keys()[-1] != key and second.merchant_order_no != order.merchant_order_no


def test_a_paid_order_is_refunded(client, sandbox_control):
    """Pay in the sandbox, sync, refund part of it: the refund comes back typed and succeeded."""
    order = client.create_order(**TERMINAL, terminal_sn=TERMINAL_SN)
    sandbox_control.pay(order.merchant_order_no)
    assert client.sync_order(order.merchant_order_no).status == "succeeded"
    refund = client.refund(order.merchant_order_no, amount=Decimal("2.50"), reason="cold soup")
    assert (refund.status, refund.amount, refund.orig_merchant_order_no) == (
        "succeeded",
        Decimal("2.50"),
        order.merchant_order_no,
    )
    assert [r.amount for r in client.get_order(order.merchant_order_no).refunds] == [Decimal("2.50")]


def test_wait_returns_as_soon_as_the_order_is_paid(client, api_key, sandbox_control):
    """get_order(wait=30) against the waits process answers succeeded right after the payment."""
    order = client.create_order(**TERMINAL, terminal_sn=TERMINAL_SN)
    order_id = Order.objects.get(merchant_order_no=order.merchant_order_no).pk
    with asgi_server() as waits_url:
        waiter = MerchantClient(base_url=waits_url, api_key=api_key[1])
        answer: dict = {}
        thread = threading.Thread(
            target=lambda: answer.update(order=waiter.get_order(order.merchant_order_no, wait=30), at=time.monotonic())
        )
        thread.start()
        wait_for_subscribers(order_id, 1)
        sandbox_control.pay(order.merchant_order_no)
        client.sync_order(order.merchant_order_no)
        synced_at = time.monotonic()
        thread.join(40)
    assert (answer["order"].status, answer["order"].settled) == ("succeeded", True)
    assert answer["at"] - synced_at < 25


def test_errors_are_raised_by_kind_with_the_services_details(client, live_server):
    """404, 400 (with the field named) and 401 become NotFoundError, InvalidRequestError, AuthenticationError."""
    with pytest.raises(NotFoundError) as not_found:
        client.get_order("NO-SUCH-ORDER")
    assert (not_found.value.http_status, not_found.value.code) == (404, "not_found")
    with pytest.raises(InvalidRequestError) as invalid:
        client.create_order(**{**TERMINAL, "amount": "abc"}, terminal_sn=TERMINAL_SN)
    assert list(invalid.value.details) == ["amount"]
    with pytest.raises(AuthenticationError):
        MerchantClient(base_url=live_server.url, api_key="nope.nope").get_order("X")


def test_nothing_sent_503_is_retried_with_the_same_key_then_raised(client, settings, sleeps):
    """With CodePay unreachable the service answers 503 gateway_unavailable; the client retries twice, same key."""
    settings.CODEPAY_BASE_URL = "http://127.0.0.1:1"
    gateway_clients_reset()
    recorder = Recorder(client)
    with pytest.raises(UnavailableError) as unavailable:
        client.create_order(**TERMINAL, terminal_sn=TERMINAL_SN)
    assert (unavailable.value.http_status, unavailable.value.code) == (503, "gateway_unavailable")
    keys = recorder.keys()
    assert len(keys) == 3 and len(set(keys)) == 1
    assert sleeps == [1.0, 1.0]


def test_429_is_retried_after_retry_after_then_raised(client, monkeypatch, sleeps):
    """Over the rate limit the client sleeps Retry-After (at most 30 s) before each retry."""
    monkeypatch.setattr(ApiKeyRateThrottle, "rate", "1/minute", raising=False)
    with pytest.raises(NotFoundError):
        client.get_order("FIRST-CALL-USES-THE-ALLOWANCE")
    with pytest.raises(RateLimitError) as limited:
        client.get_order("X")
    assert limited.value.http_status == 429
    assert len(sleeps) == 2 and all(25 <= s <= 30 for s in sleeps)


def test_a_refused_connection_is_retried_and_reported_as_not_sent(sleeps):
    """Nothing listens: every call may be retried; the error says nothing was sent."""
    client = MerchantClient(base_url="http://127.0.0.1:1", api_key="k", sleep=sleeps.append)
    with pytest.raises(ConnectionFailed) as failed:
        client.create_order(**TERMINAL, terminal_sn=TERMINAL_SN)
    assert failed.value.may_have_been_sent is False
    assert sleeps == [0.5, 1.0]


@pytest.fixture
def slow_first_answer():
    """A server whose first answer comes after 2 s (a lost answer for a 0.5 s read timeout), then answers at once."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append({"key": self.headers.get("Idempotency-Key")})
            if len(seen) == 1:
                time.sleep(2)
            body = json.dumps(
                {"merchant_order_no": "SLOW-1", "status": "pending", "amount": "1.00", "currency": "USD"}
            ).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_a_lost_answer_is_asked_again_only_with_the_same_idempotency_key(slow_first_answer, sleeps):
    """A read timeout on a POST is retried carrying the same Idempotency-Key, so the service runs it once."""
    url, seen = slow_first_answer
    client = MerchantClient(base_url=url, api_key="k", read_timeout=0.5, sleep=sleeps.append)
    order = client.create_order(**TERMINAL, terminal_sn=TERMINAL_SN)
    assert order.merchant_order_no == "SLOW-1"
    assert len(seen) == 2 and seen[0]["key"] == seen[1]["key"] and seen[0]["key"] is not None
    assert sleeps == [0.5]


def test_event_verification_refuses_old_malformed_and_foreign_signatures():
    """construct_event accepts the service's header for the right secret and recent time only."""
    body = b'{"id":"evt_1","type":"order.succeeded"}'
    now = int(time.time())
    header = signature_header(secrets=["whsec_new", "whsec_old"], timestamp=now, body=body)
    assert construct_event(body, header, "whsec_old")["id"] == "evt_1"
    assert construct_event(body, header, ["whsec_other", "whsec_new"])["type"] == "order.succeeded"
    for payload, head, secret, now_at in [
        (body, header, "whsec_other", now),
        (body + b" ", header, "whsec_new", now),
        (body, header, "whsec_new", now + 301),
        (body, "v1=abc", "whsec_new", now),
        (body, None, "whsec_new", now),
    ]:
        with pytest.raises(SignatureVerificationError):
            verify_signature(payload, head, secret, now=now_at)
