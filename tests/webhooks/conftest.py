"""Fixtures for the notification receiver: a gateway that signs with the test key, posting over real HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from urllib.parse import urlencode

import pytest
import requests
from django.db import connections

from payments.gateway import signing
from payments.models import Channel, Order, TransType
from payments.services.orders import order_create
from tests.conftest import APP_ID, MERCHANT_NO, VECTORS
from tests.factories import MerchantAccountFactory
from webhooks.models import NotificationDelivery

GATEWAY_KEY = signing.load_private_key(VECTORS["gateway_private_key_pem"])
CLOSED_PORT_URL = "http://127.0.0.1:1"
CLOSED_BROKER_URL = "redis://127.0.0.1:1/0"


def notification_fields(
    merchant_order_no: str, *, trans_status: str = "2", amount: str = "10.00", **extra: str
) -> dict[str, str]:
    """A notification body as the sandbox sends one (docs/protocol.md, "Notifications"), unsigned."""
    fields = {
        "app_id": APP_ID,
        "merchant_no": MERCHANT_NO,
        "sign_type": "RSA2",
        "trans_no": f"T{merchant_order_no}"[:32],
        "merchant_order_no": merchant_order_no,
        "trans_type": "1",
        "trans_status": trans_status,
        "price_currency": "USD",
        "order_amount": amount,
        "tip_amount": "0.00",
        "trans_amount": amount,
        "paid_amount": amount if trans_status == "2" else "0.00",
        "attach": "",
        "pay_method_id": "Visa",
        "trans_end_time": "2024-02-28 08:51:51" if trans_status in ("1", "2", "3") else "",
    }
    fields.update(extra)
    return fields


def signed(fields: dict[str, str], key=GATEWAY_KEY) -> dict[str, str]:
    return {**fields, "sign": signing.sign(fields, key)}


class Gateway:
    """Plays CodePay posting notifications to the live server."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def url(self, account_code: str | None = None) -> str:
        suffix = f"{account_code}/" if account_code else ""
        return f"{self.base_url}/webhooks/codepay/{suffix}"

    def post(
        self,
        body: bytes | str,
        *,
        content_type: str = "application/json; charset=utf-8",
        account_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        data = body.encode("utf-8") if isinstance(body, str) else body
        return requests.post(
            self.url(account_code), data=data, headers={"Content-Type": content_type, **(headers or {})}, timeout=30
        )

    def notify(self, fields: dict[str, str], *, key=GATEWAY_KEY, form: bool = False, **kwargs) -> requests.Response:
        """POST ``fields`` signed with ``key`` (the test gateway key), as JSON or form-encoded."""
        body = signed(fields, key)
        if form:
            return self.post(urlencode(body), content_type="application/x-www-form-urlencoded", **kwargs)
        return self.post(json.dumps(body), **kwargs)


@pytest.fixture
def gateway(live_server) -> Gateway:
    return Gateway(live_server.url)


@pytest.fixture
def receiver_settings(settings):
    """Short retry schedules; confirmation off unless a test turns it on (pure-database setups)."""
    settings.CODEPAY_CONFIRM_NOTIFICATIONS = False
    settings.CODEPAY_NOTIFICATION_UNMATCHED_RETRY_DELAYS = (0, 0)
    settings.CODEPAY_NOTIFICATION_RETRY_DELAYS = (0, 0)
    settings.CODEPAY_NOTIFICATION_ALLOWED_NETWORKS = []
    # The sweep takes deliveries as soon as they are stored (no grace for their queued task).
    settings.CODEPAY_NOTIFICATION_SWEEP_GRACE_SECONDS = 0
    return settings


@pytest.fixture
def notify_account(transactional_db, receiver_settings):
    """The default merchant account with the test gateway public key, without the sandbox."""
    return MerchantAccountFactory(
        code="default",
        app_id=APP_ID,
        merchant_no=MERCHANT_NO,
        gateway_public_key=VECTORS["gateway_public_key_b64der"],
    )


@pytest.fixture
def sandbox_account(live_server, account, sandbox_reset, receiver_settings):
    """
    The default account wired to a fresh sandbox, whose orders notify the live server; notifications are
    confirmed by query against the sandbox.
    """
    from payments.services.accounts import gateway_clients_reset

    receiver_settings.CODEPAY_CONFIRM_NOTIFICATIONS = True
    receiver_settings.CODEPAY_NOTIFY_URL = f"{live_server.url}/webhooks/codepay/"
    gateway_clients_reset()
    yield account
    gateway_clients_reset()


TERMINAL_SN = "WPYB002248000865"


def terminal_order(
    account, merchant_order_no: str, *, amount: str = "10.00", trans_type: str = TransType.SALE
) -> Order:
    """An order pushed to the sandbox's terminal (trans_status 9 there), waiting for the customer."""
    result = order_create(
        account=account,
        api_key=None,
        channel=Channel.TERMINAL,
        amount=Decimal(amount),
        currency="USD",
        description="notification test",
        merchant_order_no=merchant_order_no,
        terminal_sn=TERMINAL_SN,
        trans_type=trans_type,
    )
    assert result.outcome_unknown is False
    return result.obj


def deliveries_for(merchant_order_no: str, count: int) -> list[NotificationDelivery]:
    """The deliveries about ``merchant_order_no`` in arrival order, once at least ``count`` have arrived."""

    def arrived():
        found = list(NotificationDelivery.objects.filter(merchant_order_no=merchant_order_no).order_by("id"))
        return found if len(found) >= count else None

    return wait_for(arrived)


def wait_for(condition: Callable[[], object], *, timeout: float = 15.0, interval: float = 0.05):
    """Poll ``condition`` until it answers something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)


def _celery_app():
    from codepay_service.celery import app

    return app


def _reset_broker_pools(app) -> None:
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(autouse=True)
def empty_task_queue():
    """Leave no queued apply task behind for a later test's worker."""
    yield
    # The broker is a convenience here; a test that needs it fails on its own.
    with contextlib.suppress(Exception):
        _celery_app().control.purge()


@pytest.fixture
def broker_down(settings, monkeypatch):
    """The Celery broker at a closed port, as in a Redis outage; restored afterwards."""
    app = _celery_app()
    original = app.conf.broker_url
    settings.CELERY_BROKER_URL = CLOSED_BROKER_URL
    # Celery reads the CELERY_BROKER_URL environment variable (set by `make test`) before its own setting.
    monkeypatch.setenv("CELERY_BROKER_URL", CLOSED_BROKER_URL)
    app.conf.broker_url = CLOSED_BROKER_URL
    _reset_broker_pools(app)
    assert (app.connection_for_write().hostname, app.connection_for_write().port) == ("127.0.0.1", 1)
    yield
    monkeypatch.undo()
    app.conf.broker_url = original
    _reset_broker_pools(app)


@pytest.fixture
def broker_hanging(settings, monkeypatch):
    """A broker that accepts TCP connections and never answers (a hung Redis); restored afterwards."""
    app = _celery_app()
    original = app.conf.broker_url
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    settings.CELERY_BROKER_URL = url
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    app.conf.broker_url = url
    _reset_broker_pools(app)
    yield
    monkeypatch.undo()
    app.conf.broker_url = original
    _reset_broker_pools(app)
    listener.close()


def run_in_threads(count: int, target: Callable[[int], object]) -> list:
    """Run ``target(i)`` for i in range(count) on as many threads started together; answers their results."""
    results: list = [None] * count
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            start.wait()
            results[index] = target(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    return results
