"""
The sandbox gateway: a stand-alone fake CodePay that speaks the real protocol over HTTP.

    gateway = SandboxGateway(
        gateway_private_key=key,
        apps=[SandboxApp(app_id="wz...", merchant_no="3023...", public_key=app_public_key, basic_auth=None)],
        host="127.0.0.1",
        port=0,  # any free port
        notification_schedule_scale=0.001,  # retries 1000 times faster, for tests
        state_dir=None,  # or a folder: transactions and calls kept on disk across restarts (store.py)
    ).start()
    gateway.base_url  # "http://127.0.0.1:54321": POST /api/entry, and the control API under /sandbox/
    gateway.stop()

It is plain Python on the standard library's ``ThreadingHTTPServer`` and imports nothing from Django, so
tests, the dev launcher and ``manage.py codepay_sandbox`` all run the same code without settings.
One thread per request (as the real gateway serves requests concurrently, races are real here too);
all shared state sits behind the lock in ``state.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from .control import Control
from .entry import Entry, SandboxApp
from .faults import FaultPlan
from .notifier import Notifier
from .operations import Operations
from .responses import Response, error_response
from .state import SandboxState
from .store import SandboxStore

__all__ = ["DEFAULT_PORT", "SandboxApp", "SandboxGateway"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8010
MAX_BODY_BYTES = 1_048_576
# Hosts that mean "every interface": fine to listen on, useless in a URL handed to a browser.
WILDCARD_HOSTS = ("", "0.0.0.0")


class SandboxGateway:
    def __init__(
        self,
        *,
        gateway_private_key: rsa.RSAPrivateKey,
        apps: Iterable[SandboxApp],
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        notification_schedule_scale: float = 1.0,
        state_dir: str | None = None,
    ):
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()
        # What a client needs to verify the sandbox's answers and notifications.
        self.gateway_public_key = gateway_private_key.public_key()
        self.faults = FaultPlan()
        self.notifier = Notifier(
            gateway_private_key=gateway_private_key,
            faults=self.faults,
            record_attempt=lambda trans_no, attempt: self.state.record_notification_attempt(trans_no, attempt),
            schedule_scale=notification_schedule_scale,
        )
        self._store = SandboxStore(state_dir) if state_dir else None
        self.state = SandboxState(notify=self.notifier.notify, store=self._store)
        self.entry = Entry(
            apps={app.app_id: app for app in apps},
            gateway_private_key=gateway_private_key,
            state=self.state,
            faults=self.faults,
            operations=Operations(
                state=self.state,
                faults=self.faults,
                gateway_private_key=gateway_private_key,
                base_url=lambda: self.base_url,
            ),
            clock=time.time,
            wait=self._stopping.wait,
        )
        self.control = Control(state=self.state, faults=self.faults, reset=self.reset)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("The sandbox gateway is not started; call start() first.")
        host = "127.0.0.1" if self._host in WILDCARD_HOSTS else self._host
        return f"http://{host}:{self._server.server_address[1]}"

    def start(self) -> SandboxGateway:
        """Listen and serve in background threads; with port 0 the system picks a free port."""
        if self._server is not None:
            raise RuntimeError("The sandbox gateway is already started.")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), _Handler)
        self._server.gateway = self
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-gateway", daemon=True
        ).start()
        logger.info("CodePay sandbox listening", extra={"base_url": self.base_url})
        resumed = self.state.resume_notifications()
        if resumed:
            logger.info("Resumed undelivered notifications", extra={"count": resumed})
        return self

    def reset(self) -> None:
        """Forget every order, call and fault, and end every notification still being delivered."""
        self.notifier.cancel_all()
        self.faults.reset()
        self.state.reset()

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self.notifier.cancel_all()
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> SandboxGateway:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    # A handler sleeping in a simulated timeout must not hold up stop().
    block_on_close = False
    gateway: SandboxGateway


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "CodePaySandbox/1.0"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, verb: str) -> None:
        gateway = self.server.gateway
        url = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                response = error_response(413, "body_too_large", f"Bodies are limited to {MAX_BODY_BYTES} bytes.")
            else:
                body = self.rfile.read(length)
                if verb == "POST" and url.path == "/api/entry":
                    response = gateway.entry.handle(
                        body,
                        content_type=self.headers.get("Content-Type", ""),
                        authorization=self.headers.get("Authorization", ""),
                    )
                else:
                    response = gateway.control.handle(verb, url.path, url.query, body)
        except Exception:
            # A sandbox bug: answer like a broken gateway would, and say where in the log (never the body).
            logger.exception("CodePay sandbox failed on a request", extra={"path": url.path})
            response = error_response(500, "sandbox_error", "The sandbox failed; see its log.")
        self._send(response)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The caller gave up first (a simulated timeout, usually): nothing left to answer.
            pass

    def log_message(self, format: str, *args) -> None:
        # Request lines only, at debug level: they hold paths, never bodies.
        logger.debug("%s " + format, self.address_string(), *args)
