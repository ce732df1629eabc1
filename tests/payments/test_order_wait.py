"""GET /api/v1/orders/{no}/?wait=N: answers when the order settles, or after N seconds, without polling."""

from __future__ import annotations

import threading
import time

import pytest
import redis
import requests
from django.conf import settings

from payments.models import Order
from payments.services.waits import order_channel
from tests.asgi_server import asgi_server

TERMINAL_ORDER = {
    "channel": "terminal",
    "amount": "7.50",
    "currency": "USD",
    "description": "Lunch",
    "terminal_sn": "WPYB002248000865",
}


@pytest.fixture
def waits_url(transactional_db):
    with asgi_server() as url:
        yield url


def subscribers(order_id: int) -> int:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return dict(client.pubsub_numsub(order_channel(order_id)))[order_channel(order_id).encode()]
    finally:
        client.close()


def wait_for_subscribers(order_id: int, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while subscribers(order_id) < count:
        assert time.monotonic() < deadline, f"{subscribers(order_id)} of {count} waiters subscribed"
        time.sleep(0.05)


def get(url: str, key: str, **params) -> requests.Response:
    return requests.get(url, params=params, headers={"Authorization": f"Api-Key {key}"}, timeout=90)


def test_a_waiting_client_is_answered_as_soon_as_the_order_is_paid(api, api_key, waits_url, sandbox_control):
    """A wait of 30 s on a pending order returns succeeded right after the payment, long before the 30 s."""
    number = api.post("/api/v1/orders/", json=TERMINAL_ORDER).json()["merchant_order_no"]
    order_id = Order.objects.get(merchant_order_no=number).pk
    answer: dict = {}

    def wait():
        started = time.monotonic()
        answer["response"] = get(f"{waits_url}/api/v1/orders/{number}/", api_key[1], wait=30)
        answer["seconds"] = time.monotonic() - started

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_for_subscribers(order_id, 1)
    sandbox_control.pay(number)
    assert api.post(f"/api/v1/orders/{number}/sync/").json()["status"] == "succeeded"
    waiter.join(40)

    assert answer["response"].status_code == 200, answer["response"].text
    assert answer["response"].json()["status"] == "succeeded"
    assert answer["response"].json()["merchant_order_no"] == number
    assert answer["seconds"] < 30  # woken by the change, not by the end of the wait
    assert subscribers(order_id) == 0


def test_a_wait_that_runs_out_answers_the_current_state(api, api_key, waits_url):
    """Nothing happens within wait=1: the answer is the pending order, after about a second."""
    number = api.post("/api/v1/orders/", json=TERMINAL_ORDER).json()["merchant_order_no"]
    started = time.monotonic()
    response = get(f"{waits_url}/api/v1/orders/{number}/", api_key[1], wait=1)
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert time.monotonic() - started >= 1.0


def test_a_settled_order_is_answered_at_once_without_subscribing(api, api_key, waits_url, sandbox_control):
    """An order that is already settled is answered immediately, however long the wait asked for."""
    number = api.post("/api/v1/orders/", json=TERMINAL_ORDER).json()["merchant_order_no"]
    sandbox_control.pay(number)
    api.post(f"/api/v1/orders/{number}/sync/")
    started = time.monotonic()
    response = get(f"{waits_url}/api/v1/orders/{number}/", api_key[1], wait=60)
    assert (response.status_code, response.json()["status"]) == (200, "succeeded")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("value", ["61", "-1", "abc", "1.5", ""])
def test_a_wait_outside_0_to_60_whole_seconds_is_refused_naming_the_field(api, value):
    """wait must be a whole number of seconds from 0 to 60."""
    number = api.post("/api/v1/orders/", json=TERMINAL_ORDER).json()["merchant_order_no"]
    response = api.get(f"/api/v1/orders/{number}/", params={"wait": value})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"wait": ["A whole number of seconds from 0 to 60, e.g. wait=30."]}


def test_waiting_on_an_unknown_order_or_without_a_key_is_refused_at_once(api_key, waits_url):
    """The wait is behind the same authentication and scoping as the plain read."""
    assert get(f"{waits_url}/api/v1/orders/NOPE/", api_key[1], wait=30).status_code == 404
    assert requests.get(f"{waits_url}/api/v1/orders/NOPE/?wait=30", timeout=10).status_code == 401


def test_under_wsgi_waits_beyond_the_per_process_share_answer_at_once(api, live_server, api_key):
    """Served by the threaded WSGI server, more than WSGI_MAX_WAITERS concurrent waits do not hold threads: the
    rest answer at once."""
    from payments.services.waits import WSGI_MAX_WAITERS

    number = api.post("/api/v1/orders/", json=TERMINAL_ORDER).json()["merchant_order_no"]
    results: list[requests.Response] = []
    lock = threading.Lock()

    def wait():
        response = get(f"{live_server.url}/api/v1/orders/{number}/", api_key[1], wait=3)
        with lock:
            results.append(response)

    threads = [threading.Thread(target=wait) for _ in range(WSGI_MAX_WAITERS + 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    skipped = [r for r in results if r.headers.get("Wait-Skipped") == "busy"]
    assert [r.status_code for r in results] == [200] * (WSGI_MAX_WAITERS + 2)
    assert len(skipped) == 2
    assert {r.json()["status"] for r in results} == {"pending"}


def test_without_redis_the_wait_looks_at_the_database_each_second(api, live_server, api_key, sandbox_control, settings):
    """With no Redis (make run's filesystem broker) a wait still answers once the order is paid, by looking every
    second."""
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.ORDER_WAIT_REDIS_URL = ""
    number = api.post("/api/v1/orders/", json=TERMINAL_ORDER).json()["merchant_order_no"]
    answer: dict = {}
    waiter = threading.Thread(
        target=lambda: answer.update(response=get(f"{live_server.url}/api/v1/orders/{number}/", api_key[1], wait=20))
    )
    waiter.start()
    time.sleep(1.5)
    sandbox_control.pay(number)
    api.post(f"/api/v1/orders/{number}/sync/")
    paid_at = time.monotonic()
    waiter.join(30)
    assert answer["response"].json()["status"] == "succeeded"
    assert time.monotonic() - paid_at < 10
