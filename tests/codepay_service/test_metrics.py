"""/metrics over real HTTP: who may scrape it, and what it says after real traffic through the sandbox."""

from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from payments.gateway.results import OrderInfo
from payments.models import BatchClose, Order, OrderStatus
from payments.services.batches import batch_close
from payments.services.orders import ApplyResult, order_apply_gateway_state
from tests.factories import OrderFactory, RefundFactory
from webhooks.models import NotificationDelivery

TOKEN = "scrape-token-for-tests"
TERMINAL_ORDER = {
    "channel": "terminal",
    "amount": "12.34",
    "currency": "USD",
    "description": "Coffee",
    "terminal_sn": "WPYB002248000865",
}


def scrape(live_server, token=TOKEN) -> dict[tuple[str, tuple], float]:
    response = requests.get(f"{live_server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


@pytest.mark.django_db
def test_metrics_without_a_configured_guard_are_closed_outside_debug(live_server, settings):
    """With neither METRICS_TOKEN nor METRICS_ALLOWED_NETWORKS set, a production server answers 403."""
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS, settings.DEBUG = "", [], False
    response = requests.get(f"{live_server.url}/metrics", timeout=10)
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.text


@pytest.mark.django_db
def test_metrics_without_a_configured_guard_are_open_on_a_debug_server(live_server, settings):
    """`make run` (DEBUG, nothing configured) lets a developer look at /metrics."""
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS, settings.DEBUG = "", [], True
    assert requests.get(f"{live_server.url}/metrics", timeout=10).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_metrics_refuse_a_missing_or_wrong_bearer_token(live_server, metrics_token, header):
    """A configured token must be sent exactly, as a bearer token."""
    headers = {"Authorization": header} if header else {}
    assert requests.get(f"{live_server.url}/metrics", headers=headers, timeout=10).status_code == 403


@pytest.mark.django_db
def test_metrics_from_an_allowed_network_need_no_token(live_server, settings):
    """With only networks configured, a scrape from inside them passes and one from outside is refused."""
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert requests.get(f"{live_server.url}/metrics", timeout=10).status_code == 200
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "192.168.0.0/16"]
    assert requests.get(f"{live_server.url}/metrics", timeout=10).status_code == 403


@pytest.mark.django_db
def test_metrics_with_token_and_networks_need_both(live_server, settings):
    """When both guards are set, the right token from a foreign network is still refused."""
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{live_server.url}/metrics", headers=headers, timeout=10).status_code == 403
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    assert requests.get(f"{live_server.url}/metrics", headers=headers, timeout=10).status_code == 200


def test_metrics_count_an_order_driven_through_the_sandbox(live_server, api, sandbox_control, metrics_token):
    """
    Creating, paying and syncing a terminal order shows up as: two more requests on the orders routes
    with their status codes, one more successful pay.order and query call to the gateway, and the order
    counted as succeeded.
    """
    before = scrape(live_server)
    created = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "METRICS-1"})
    assert created.status_code == 201, created.text
    sandbox_control.pay("METRICS-1")
    synced = api.post("/api/v1/orders/METRICS-1/sync/")
    assert synced.json()["status"] == "succeeded"
    after = scrape(live_server)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    request = "codepay_http_request_seconds_count"
    assert delta(request, route="/api/v1/orders/", method="POST", status="201") == 1
    assert delta(request, route="/api/v1/orders/<str:merchant_order_no>/sync/", method="POST", status="200") == 1
    gateway = "codepay_gateway_call_seconds_count"
    assert delta(gateway, method="wisehub.cloud.pay.order", outcome="ok") == 1
    assert delta(gateway, method="order.query", outcome="ok") == 1
    assert value(after, "codepay_orders_by_status", status="succeeded") == 1
    assert value(after, "codepay_orders_by_status", status="pending") == 0
    assert value(after, "codepay_unknown_count", kind="order") == 0
    assert value(after, "codepay_unknown_oldest_age_seconds", kind="order") == 0


def test_metrics_show_the_unknown_queue_and_the_reconcile_backlog(live_server, account, metrics_token):
    """Two unknown orders (the oldest created an hour ago) and one overdue refund check are counted by kind."""
    now = timezone.now()
    oldest = OrderFactory(account=account, status=OrderStatus.UNKNOWN, next_check_at=now - timedelta(minutes=5))
    Order.objects.filter(pk=oldest.pk).update(created_at=now - timedelta(hours=1))
    OrderFactory(account=account, status=OrderStatus.UNKNOWN, next_check_at=now + timedelta(minutes=5))
    RefundFactory(order__account=account, account=account, status="pending", next_check_at=now - timedelta(seconds=1))

    samples = scrape(live_server)

    assert value(samples, "codepay_unknown_count", kind="order") == 2
    assert 3600 <= value(samples, "codepay_unknown_oldest_age_seconds", kind="order") < 3700
    assert value(samples, "codepay_unknown_count", kind="refund") == 0
    assert value(samples, "codepay_reconcile_backlog", kind="order") == 1
    assert value(samples, "codepay_reconcile_backlog", kind="refund") == 1
    assert value(samples, "codepay_orders_by_status", status="unknown") == 2
    assert value(samples, "codepay_orders_by_status", status="succeeded") == 1


def test_metrics_count_a_gateway_amount_conflict(live_server, account, metrics_token):
    """A gateway answer whose amount differs from the order's is a conflict, counted under its source."""
    order = OrderFactory(account=account, status=OrderStatus.PENDING)
    before = value(scrape(live_server), "codepay_conflicts_total", source="notification")
    info = OrderInfo.from_data({"trans_status": "2", "price_currency": "USD", "order_amount": "1.00"})
    assert order_apply_gateway_state(order_id=order.pk, info=info, source="notification") is ApplyResult.CONFLICT
    assert value(scrape(live_server), "codepay_conflicts_total", source="notification") == before + 1


def test_metrics_count_a_failed_batch_close(live_server, account, sandbox_control, metrics_token):
    """A batch close the gateway answers with HTTP 500 is counted as a failure under its stored status."""
    before = scrape(live_server)
    sandbox_control.fault(fault="http_500", method="batch.close.terminals", times=1)
    batch = batch_close(account=account, trigger=BatchClose.Trigger.COMMAND, store_no="", terminal_sn_list=[])
    assert batch.status != "succeeded"
    after = scrape(live_server)
    name = "codepay_batch_close_failures_total"
    assert value(after, name, status=batch.status) - value(before, name, status=batch.status) == 1


def test_metrics_show_notification_lag_waiting_and_applied(live_server, account, metrics_token):
    """
    The oldest verified delivery still waiting (received 10 minutes ago) and the slowest applied in the last
    five minutes (applied 90 s after it arrived) are reported; an old parked one and a rejected one are not.
    """
    now = timezone.now()

    def delivery(*, received_ago, status, processed_ago=None, verification="valid", next_attempt_at=None):
        return NotificationDelivery.objects.create(
            account=account,
            account_code="default",
            received_at=now - received_ago,
            body_size=10,
            verification=verification,
            status=status,
            next_attempt_at=next_attempt_at,
            processed_at=None if processed_ago is None else now - processed_ago,
        )

    delivery(received_ago=timedelta(minutes=10), status="retrying", next_attempt_at=now)
    delivery(received_ago=timedelta(minutes=2), status="received")
    delivery(received_ago=timedelta(hours=3), status="unmatched")  # parked: nothing more scheduled
    delivery(received_ago=timedelta(hours=4), status="rejected", verification="invalid_signature")
    delivery(received_ago=timedelta(seconds=120), processed_ago=timedelta(seconds=30), status="applied")
    delivery(received_ago=timedelta(seconds=50), processed_ago=timedelta(seconds=40), status="applied")
    delivery(received_ago=timedelta(minutes=30), processed_ago=timedelta(minutes=20), status="applied")  # not recent

    samples = scrape(live_server)

    assert 600 <= value(samples, "codepay_notification_lag_seconds", delivery="oldest_waiting") < 660
    assert value(samples, "codepay_notification_lag_seconds", delivery="slowest_applied_5m") == 90
