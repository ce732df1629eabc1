"""The notification receiver keeps answering while many store systems wait on orders (?wait=) under uvicorn."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import requests

from payments.models import OrderStatus
from payments.services.accounts import api_key_create
from tests.asgi_server import asgi_server
from tests.factories import OrderFactory
from tests.payments.test_order_wait import wait_for_subscribers
from tests.webhooks.conftest import notification_fields
from webhooks.services import notifications_apply_due

WAITERS = 100


def test_many_waiting_clients_do_not_hold_up_the_receiver_and_all_wake_on_the_payment(gateway, notify_account):
    """
    With 100 clients waiting (wait=30) on one pending order, the receiver answers a notification while every
    one of them is still waiting; applying it wakes them all with the paid order, long before their wait ends.
    """
    order = OrderFactory(account=notify_account, merchant_order_no="WAIT-1", amount=Decimal("10.00"))
    _, key = api_key_create(name="pos", account=notify_account)
    answers: list[tuple[float, requests.Response]] = []
    lock = threading.Lock()

    with asgi_server() as waits_url:

        def wait() -> None:
            with requests.Session() as session:
                response = session.get(
                    f"{waits_url}/api/v1/orders/WAIT-1/",
                    params={"wait": 30},
                    headers={"Authorization": f"Api-Key {key}"},
                    timeout=60,
                )
            with lock:
                answers.append((time.monotonic(), response))

        threads = [threading.Thread(target=wait) for _ in range(WAITERS)]
        for thread in threads:
            thread.start()
        wait_for_subscribers(order.pk, WAITERS)

        receiver_answer = gateway.notify(notification_fields("WAIT-1", trans_status="2", amount="10.00"))
        answered_at = time.monotonic()
        assert (receiver_answer.status_code, receiver_answer.text) == (200, "success")
        assert answers == []  # every client was still waiting when the receiver answered

        outcomes = notifications_apply_due()
        applied_at = time.monotonic()
        for thread in threads:
            thread.join(40)

    assert [outcome.status for outcome in outcomes] == ["applied"]
    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED
    assert len(answers) == WAITERS
    assert {(response.status_code, response.json()["status"]) for _, response in answers} == {(200, "succeeded")}
    assert all(at >= applied_at > answered_at for at, _ in answers)
    assert max(at for at, _ in answers) - applied_at < 25  # woken by the change, not by the end of their wait
