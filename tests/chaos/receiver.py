"""
The store system's side of outbound events in a chaos run: a threaded HTTP endpoint on loopback that
records every delivery (headers and raw body) and checks its signature as a store system would, with
the Python client's verifier.

It is a fault too: the first attempt at an event fails now and then, half the time with HTTP 500 and
half the time by dropping the connection without an answer, so the service's retries and its ordering
per order (a later event must wait for an earlier one that failed) are exercised. Each kind fires once
for certain on the first events, then at ``fail_rate``.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from codepay_merchant_client.errors import SignatureVerificationError
from codepay_merchant_client.events import SIGNATURE_HEADER, verify_signature

ANSWERED_500 = "event endpoint answered 500 (first attempt)"
DROPPED = "event endpoint dropped the connection (first attempt)"


@dataclass(frozen=True)
class Received:
    """One delivery the receiver accepted (answered 2xx), in arrival order."""

    event_id: str
    body: bytes
    headers: dict[str, str]


class EventReceiver:
    def __init__(self, *, fail_rate: float, seed: int):
        self.fail_rate = fail_rate
        self.secret = ""  # set once the endpoint is registered (the API shows it once)
        self.accepted: list[Received] = []
        self.signature_failures: list[str] = []
        self.faults: Counter[str] = Counter()
        self._seen: set[str] = set()
        self._pending_once = [ANSWERED_500, DROPPED]
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/events/"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="chaos-event-receiver", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decide(self, event_id: str, body: bytes, header: str | None) -> str:
        """What to do with one attempt: 'accept', 'bad signature', or a fault name; recorded under the lock."""
        try:
            verify_signature(body, header, self.secret)
        except SignatureVerificationError as exc:
            with self._lock:
                self.signature_failures.append(f"{event_id}: {exc}")
            return "bad signature"
        with self._lock:
            first = event_id not in self._seen
            self._seen.add(event_id)
            fault = None
            if first and self._pending_once:
                fault = self._pending_once.pop(0)
            elif first and self._rng.random() < self.fail_rate:
                fault = self._rng.choice((ANSWERED_500, DROPPED))
            if fault:
                self.faults[fault] += 1
                return fault
            return "accept"

    def _accept(self, received: Received) -> None:
        with self._lock:
            self.accepted.append(received)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event_id = str(json.loads(body)["id"])
                except (ValueError, KeyError, TypeError):
                    event_id = "?"
                decision = receiver._decide(event_id, body, self.headers.get(SIGNATURE_HEADER))
                if decision == DROPPED:
                    # No status line at all: the sender sees the connection closed, as when a store system dies.
                    self.close_connection = True
                    return
                status = {"accept": 200, "bad signature": 400}.get(decision, 500)
                if status == 200:
                    receiver._accept(Received(event_id=event_id, body=body, headers=dict(self.headers.items())))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args) -> None:
                pass

        return Handler
