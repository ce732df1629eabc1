"""The event endpoint API over real HTTP, the events in the OpenAPI document, and delivery by a real worker."""

from __future__ import annotations

import requests
import yaml

from codepay_merchant_client import construct_event
from payments.events.models import EventEndpoint
from payments.services.accounts import api_key_create
from tests.payments.test_celery import celery_worker, wait_until  # noqa: F401 (fixture)

EVENT_TYPES = [
    "order.succeeded",
    "order.failed",
    "order.cancelled",
    "order.expired",
    "order.authorized",
    "order.captured",
    "order.conflict",
    "refund.succeeded",
    "refund.failed",
    "endpoint.disabled",
]


def test_an_endpoint_is_registered_with_a_secret_shown_once(api):
    """POST answers the endpoint with its secret; GET lists it without the secret; DELETE removes it."""
    created = api.post(
        "/api/v1/event-endpoints/", json={"url": "https://pos.example.com/hooks", "event_types": ["order.succeeded"]}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert (body["url"], body["store_no"], body["event_types"], body["is_active"]) == (
        "https://pos.example.com/hooks",
        "",
        ["order.succeeded"],
        True,
    )

    listed = api.get("/api/v1/event-endpoints/").json()
    assert [endpoint["id"] for endpoint in listed] == [body["id"]]
    assert "secret" not in listed[0]

    rotated = api.post(f"/api/v1/event-endpoints/{body['id']}/rotate-secret/", json={"overlap_seconds": 600})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in ("", body["secret"])
    assert EventEndpoint.objects.get(pk=body["id"]).previous_secret == body["secret"]

    assert api.session.delete(f"{api.base_url}/api/v1/event-endpoints/{body['id']}/", timeout=10).status_code == 204
    assert api.get(f"/api/v1/event-endpoints/{body['id']}/").status_code == 404


def test_invalid_endpoint_input_names_the_field(api):
    """An unknown event type, a bad URL and an overlap beyond a week are refused with the field named."""
    response = api.post("/api/v1/event-endpoints/", json={"url": "not a url", "event_types": ["order.paid"]})
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"url", "event_types"}
    created = api.post("/api/v1/event-endpoints/", json={"url": "https://pos.example.com/hooks"}).json()
    too_long = api.post(f"/api/v1/event-endpoints/{created['id']}/rotate-secret/", json={"overlap_seconds": 604801})
    assert too_long.status_code == 400
    assert list(too_long.json()["error"]["details"]) == ["overlap_seconds"]


def test_a_store_bound_key_manages_only_its_own_stores_endpoints(account, make_api_client):
    """A key bound to a store registers for that store only and does not see the account's other endpoints."""
    EventEndpoint.objects.create(account=account, url="https://hq.example.com/hooks", secret="whsec_x")
    _, key = api_key_create(name="store-7", account=account, store_no="4021000007")
    client = make_api_client(key)

    other = client.post(
        "/api/v1/event-endpoints/", json={"url": "https://pos.example.com/hooks", "store_no": "4021000008"}
    )
    assert other.status_code == 400
    assert list(other.json()["error"]["details"]) == ["store_no"]
    own = client.post("/api/v1/event-endpoints/", json={"url": "https://pos.example.com/hooks"})
    assert own.status_code == 201
    assert own.json()["store_no"] == "4021000007"
    assert [endpoint["store_no"] for endpoint in client.get("/api/v1/event-endpoints/").json()] == ["4021000007"]


def test_the_openapi_document_lists_every_event_with_its_payload(live_server):
    """The schema's webhooks section has one entry per event type, each with its body schema."""
    schema = yaml.safe_load(requests.get(live_server.url + "/api/schema/", timeout=30).text)
    assert schema["openapi"].startswith("3.1")
    assert list(schema["webhooks"]) == EVENT_TYPES
    body = schema["webhooks"]["refund.succeeded"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RefundSucceededEvent"}
    data = schema["components"]["schemas"]["RefundSucceededEventData"]["properties"]["object"]
    assert data == {"$ref": "#/components/schemas/Refund"}
    assert "CodePay-Signature" in schema["webhooks"]["order.succeeded"]["post"]["description"]


def test_a_real_worker_delivers_the_event_queued_on_commit(celery_worker, api, receiver, sandbox_control):  # noqa: F811
    """Paying an order through the API queues the send on commit; a Celery worker on Redis delivers it."""
    secret = api.post("/api/v1/event-endpoints/", json={"url": receiver.url}).json()["secret"]
    created = api.post(
        "/api/v1/orders/",
        json={
            "channel": "terminal",
            "amount": "5.00",
            "currency": "USD",
            "description": "Tea",
            "terminal_sn": "WPYB002248000865",
        },
    )
    number = created.json()["merchant_order_no"]
    sandbox_control.pay(number)
    assert api.post(f"/api/v1/orders/{number}/sync/").json()["status"] == "succeeded"

    wait_until(lambda: len(receiver.received) == 1)
    event = construct_event(receiver.received[0].body, receiver.received[0].headers["CodePay-Signature"], secret)
    assert (event["type"], event["data"]["object"]["merchant_order_no"]) == ("order.succeeded", number)
