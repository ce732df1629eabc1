"""
Helpers for the sandbox tests: signed calls over real HTTP, the control API, a merchant's notify_url.

Requests are built with ``payments.gateway.signing`` directly, not with the CodePay client, so these
tests pin the protocol itself.
"""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from payments.gateway import signing
from payments.gateway.methods import Method
from tests.conftest import SANDBOX_APP_ID, SANDBOX_BASIC_AUTH, SANDBOX_MERCHANT_NO, TEST_VECTORS

APP_PRIVATE_KEY = signing.load_private_key(TEST_VECTORS["app_private_key_pem"])
GATEWAY_PUBLIC_KEY = signing.load_public_key(TEST_VECTORS["gateway_public_key_b64der"])


@dataclass
class Answer:
    code: str
    msg: str
    data: dict | None
    envelope: dict


class CodePay:
    """A merchant talking to the sandbox: signed entry calls and control calls."""

    app_id = SANDBOX_APP_ID
    merchant_no = SANDBOX_MERCHANT_NO
    basic_auth = SANDBOX_BASIC_AUTH
    gateway_public_key = GATEWAY_PUBLIC_KEY

    def __init__(self, base_url: str):
        self.base_url = base_url

    def fields(self, method: Method, sign_type: str = "RSA2", **business: str) -> dict:
        """The unsigned request body: the common fields and ``business``."""
        return {
            "app_id": self.app_id,
            "format": "JSON",
            "charset": "UTF-8",
            "sign_type": sign_type,
            "version": "1.0",
            "timestamp": str(int(time.time() * 1000)),
            "method": method.value,
            "merchant_no": self.merchant_no,
            **business,
        }

    def send(self, fields: dict, *, headers: dict | None = None, timeout: float = 5) -> requests.Response:
        return requests.post(f"{self.base_url}/api/entry", json=fields, headers=headers, timeout=timeout)

    @staticmethod
    def signed(fields: dict) -> dict:
        return {**fields, "sign": signing.sign(fields, APP_PRIVATE_KEY)}

    def send_signed(self, method: Method, *, timeout: float = 5, **business: str) -> requests.Response:
        """A signed RSA2 call, its HTTP response as it came (for fault tests)."""
        return self.send(self.signed(self.fields(method, **business)), timeout=timeout)

    def call(self, method: Method, **business: str) -> Answer:
        """A signed RSA2 call; every answer, refusals included, must carry a valid gateway signature."""
        return self.answer(self.send_signed(method, **business))

    @staticmethod
    def answer(response: requests.Response) -> Answer:
        assert response.status_code == 200
        envelope = response.json()
        assert signing.verify(envelope, envelope["sign"], GATEWAY_PUBLIC_KEY) is True
        data = json.loads(envelope["data"]) if "data" in envelope else None
        return Answer(code=envelope["code"], msg=envelope["msg"], data=data, envelope=envelope)

    def control(self, verb: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(verb, f"{self.base_url}/sandbox/{path}", json=body, timeout=5)

    def order_view(self, merchant_order_no: str) -> dict:
        response = self.control("GET", f"orders/{merchant_order_no}")
        assert response.status_code == 200, response.text
        return response.json()

    def notification_attempts(self, merchant_order_no: str, count: int, timeout: float = 5) -> list[dict]:
        """The order's recorded notification attempts, once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            attempts = self.order_view(merchant_order_no)["notification_attempts"]
            if len(attempts) >= count:
                return attempts
            assert time.monotonic() < deadline, attempts
            time.sleep(0.01)

    def pay(self, merchant_order_no: str, **body) -> dict:
        response = self.control("POST", f"orders/{merchant_order_no}/pay", body)
        assert response.status_code == 200, response.text
        return response.json()

    @staticmethod
    def terminal_order_fields(merchant_order_no: str, order_amount: str = "10.00", **extra: str) -> dict:
        """wisehub.cloud.pay.order fields for a sale (unless ``trans_type`` says otherwise) on one terminal."""
        return {
            "terminal_sn": "WPYB002248000865",
            "message_receiving_application": "CodePay Register",
            "price_currency": "USD",
            "order_amount": order_amount,
            "trans_type": "1",
            "merchant_order_no": merchant_order_no,
            "description": "Sandbox test order",
            "expires": "300",
            "api_version": "2.0",
            **extra,
        }

    def terminal_order(self, merchant_order_no: str, order_amount: str = "10.00", **extra: str) -> Answer:
        return self.call(Method.CLOUD_PAY_ORDER, **self.terminal_order_fields(merchant_order_no, order_amount, **extra))

    def paid_sale(self, merchant_order_no: str, order_amount: str = "10.00", **extra: str) -> dict:
        assert self.terminal_order(merchant_order_no, order_amount, **extra).code == "0"
        return self.pay(merchant_order_no)

    def query(self, merchant_order_no: str) -> dict:
        answer = self.call(Method.ORDER_QUERY, merchant_order_no=merchant_order_no)
        assert answer.code == "0", answer.msg
        return answer.data

    def refund(self, orig_merchant_order_no: str, merchant_order_no: str, order_amount: str, **extra) -> Answer:
        return self.call(
            Method.REFUND_SUBMIT,
            orig_merchant_order_no=orig_merchant_order_no,
            merchant_order_no=merchant_order_no,
            price_currency="USD",
            order_amount=order_amount,
            description="Sandbox test refund",
            **extra,
        )


class NotificationReceiver:
    """A merchant's notify_url: keeps every body, answers from ``answers`` in turn, then 200 "success"."""

    def __init__(self, answers: tuple[tuple[int, str], ...] = ()):
        self.bodies: list[dict] = []
        self.received_at: list[float] = []
        self._answers = list(answers)
        self._condition = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._condition:
                    receiver.bodies.append(body)
                    receiver.received_at.append(time.monotonic())
                    status, text = receiver._answers.pop(0) if receiver._answers else (200, "success")
                    receiver._condition.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, format, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/codepay"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 5) -> list[dict]:
        with self._condition:
            assert self._condition.wait_for(lambda: len(self.bodies) >= count, timeout), self.bodies
            return list(self.bodies)

    def close(self):
        self._server.shutdown()
        self._server.server_close()
