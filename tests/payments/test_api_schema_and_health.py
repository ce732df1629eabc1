"""The OpenAPI schema, the docs page, health checks and the API key command."""

import io
import re

import pytest
import requests
import yaml
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from openapi_spec_validator import validate

API_PATHS = {
    "/api/v1/orders/": {"get", "post"},
    "/api/v1/orders/{merchant_order_no}/": {"get"},
    "/api/v1/orders/{merchant_order_no}/refunds/": {"post"},
    "/api/v1/orders/{merchant_order_no}/cancel/": {"post"},
    "/api/v1/orders/{merchant_order_no}/capture/": {"post"},
    "/api/v1/orders/{merchant_order_no}/increment/": {"post"},
    "/api/v1/orders/{merchant_order_no}/tip/": {"post"},
    "/api/v1/orders/{merchant_order_no}/sync/": {"post"},
    "/api/v1/refunds/{merchant_order_no}/": {"get"},
    "/api/v1/batches/": {"get"},
    "/api/v1/batches/open/": {"get"},
    "/api/v1/batches/close/": {"post"},
    "/api/v1/event-endpoints/": {"get", "post"},
    "/api/v1/event-endpoints/{endpoint_id}/": {"get", "delete"},
    "/api/v1/event-endpoints/{endpoint_id}/rotate-secret/": {"post"},
    "/api/v1/event-endpoints/{endpoint_id}/enable/": {"post"},
}


def test_schema_is_valid_openapi_and_documents_every_endpoint_and_error(live_server):
    """The generated schema validates and lists every endpoint with its error answers."""
    response = requests.get(live_server.url + "/api/schema/", timeout=30)
    assert response.status_code == 200
    schema = yaml.safe_load(response.text)
    validate(schema)
    assert {
        path: set(ops) - {"parameters"} for path, ops in schema["paths"].items() if path.startswith("/api/v1/")
    } == API_PATHS
    create = schema["paths"]["/api/v1/orders/"]["post"]
    assert set(create["responses"]) == {"201", "202", "400", "401", "409", "422", "429", "500", "502", "503"}
    assert {"/healthz", "/readyz"} <= set(schema["paths"])
    batches = schema["paths"]["/api/v1/batches/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert batches == {"$ref": "#/components/schemas/PaginatedBatchCloseList"}
    assert "Idempotency-Key" in [p["name"] for p in create["parameters"]]
    assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "Authorization"
    order_fields = set(schema["components"]["schemas"]["Order"]["properties"])
    assert {
        "merchant_order_no",
        "trans_no",
        "status",
        "amount",
        "refunded_amount",
        "pay_url",
        "refunds",
    } <= order_fields


OPERATIONS = {
    ("get", "/api/v1/orders/"): ("orders_list", "orders"),
    ("post", "/api/v1/orders/"): ("orders_create", "orders"),
    ("get", "/api/v1/orders/{merchant_order_no}/"): ("orders_retrieve", "orders"),
    ("post", "/api/v1/orders/{merchant_order_no}/refunds/"): ("refunds_create", "refunds"),
    ("get", "/api/v1/refunds/{merchant_order_no}/"): ("refunds_retrieve", "refunds"),
    ("post", "/api/v1/orders/{merchant_order_no}/cancel/"): ("orders_cancel", "operations"),
    ("post", "/api/v1/orders/{merchant_order_no}/capture/"): ("orders_capture", "operations"),
    ("post", "/api/v1/orders/{merchant_order_no}/increment/"): ("orders_increment", "operations"),
    ("post", "/api/v1/orders/{merchant_order_no}/tip/"): ("orders_tip_adjust", "operations"),
    ("post", "/api/v1/orders/{merchant_order_no}/sync/"): ("orders_sync", "operations"),
    ("get", "/api/v1/batches/"): ("batches_list", "batches"),
    ("get", "/api/v1/batches/open/"): ("batches_open_retrieve", "batches"),
    ("post", "/api/v1/batches/close/"): ("batches_close", "batches"),
    ("get", "/api/v1/event-endpoints/"): ("event_endpoints_list", "events"),
    ("post", "/api/v1/event-endpoints/"): ("event_endpoints_create", "events"),
    ("get", "/api/v1/event-endpoints/{endpoint_id}/"): ("event_endpoints_retrieve", "events"),
    ("delete", "/api/v1/event-endpoints/{endpoint_id}/"): ("event_endpoints_destroy", "events"),
    ("post", "/api/v1/event-endpoints/{endpoint_id}/enable/"): ("event_endpoints_enable", "events"),
    ("post", "/api/v1/event-endpoints/{endpoint_id}/rotate-secret/"): ("event_endpoints_rotate_secret", "events"),
    ("get", "/healthz"): ("health_liveness", "health"),
    ("get", "/readyz"): ("health_readiness", "health"),
}


@pytest.fixture
def schema(live_server):
    response = requests.get(live_server.url + "/api/schema/", timeout=30)
    assert response.status_code == 200
    return yaml.safe_load(response.text)


def test_every_operation_has_its_resource_tag_a_consistent_id_and_a_summary_for_store_developers(schema):
    """One tag per resource, ids `<resource>_<action>`, and a summary and description that are not docstrings."""
    found = {
        (method, path): (operation["operationId"], operation["tags"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method != "parameters"
    }
    assert found == {key: (operation_id, [tag]) for key, (operation_id, tag) in OPERATIONS.items()}
    assert [tag["name"] for tag in schema["tags"]] == ["orders", "refunds", "operations", "batches", "events", "health"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"] and operation["description"], (method, path)
            assert "Subclasses" not in operation["description"] and "handle_post" not in operation["description"]
    assert "Idempotency-Key" in schema["info"]["description"]


def test_every_header_is_documented(schema):
    """
    X-Request-ID is a request and a response header of every operation; every POST under /api/v1/ takes
    Idempotency-Key and may answer Idempotent-Replayed; Authorization is the security scheme.
    """
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            request_headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            posted = method == "post" and path.startswith("/api/v1/")
            assert request_headers == ({"X-Request-ID", "Idempotency-Key"} if posted else {"X-Request-ID"}), path
            for code, response in operation["responses"].items():
                expected = {"X-Request-ID", "Idempotent-Replayed"} if posted else {"X-Request-ID"}
                assert set(response["headers"]) == expected, (path, code)
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Api-Key <key>`; create a key with `python manage.py create_api_key`.",
    }


def test_operations_carry_request_and_response_examples(schema):
    """Creating an order shows a request example per channel and an answer; errors show their body."""
    create = schema["paths"]["/api/v1/orders/"]["post"]
    request_examples = create["requestBody"]["content"]["application/json"]["examples"]
    assert {example["value"]["channel"] for example in request_examples.values()} == {"terminal", "checkout", "card"}
    answer = create["responses"]["201"]["content"]["application/json"]["examples"]
    assert [example["value"]["status"] for example in answer.values()] == ["pending"]
    invalid = create["responses"]["400"]["content"]["application/json"]["examples"]
    assert [example["value"]["error"]["code"] for example in invalid.values()] == ["invalid_request"]
    capture = schema["paths"]["/api/v1/orders/{merchant_order_no}/capture/"]["post"]
    assert [e["value"] for e in capture["requestBody"]["content"]["application/json"]["examples"].values()] == [
        {"amount": "120.00"}
    ]


def test_docs_page_loads_swagger_ui_from_this_server_not_a_cdn(live_server):
    """/api/docs/ refers only to static files served here (drf-spectacular-sidecar), so it renders offline."""
    response = requests.get(live_server.url + "/api/docs/", timeout=30)
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    [bundle] = [source for source in sources if source.endswith("swagger-ui-dist/swagger-ui-bundle.js")]
    assert requests.get(live_server.url + bundle, timeout=30).status_code == 200
    assert [source for source in sources if source.startswith(("http:", "https:", "//"))] == []
    assert "cdn" not in response.text.lower()


def test_liveness_and_readiness(live_server, settings):
    """healthz always answers; readyz checks the database and the broker (the real Redis)."""
    assert requests.get(live_server.url + "/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(live_server.url + "/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readiness_fails_when_the_broker_is_down(live_server, settings):
    """With the broker unreachable, readyz answers 503 and says which dependency failed."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    ready = requests.get(live_server.url + "/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["broker"].startswith("unavailable")


def test_create_api_key_prints_only_the_key_on_the_last_line(account, live_server):
    """The command stores a hash and prints a key that authenticates, alone on the last line."""
    out = io.StringIO()
    call_command("create_api_key", "--name", "till-3", "--store", "4021000008", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    from payments.models import ApiKey

    stored = ApiKey.objects.get(name="till-3")
    assert stored.store_no == "4021000008"
    assert key not in stored.hashed_key
    response = requests.get(
        live_server.url + "/api/v1/orders/", headers={"Authorization": f"Api-Key {key}"}, timeout=10
    )
    assert response.status_code == 200


def test_unknown_api_paths_answer_in_the_error_shape(live_server):
    """A path that does not exist is a JSON 404 like every other error, not an HTML page."""
    response = requests.get(live_server.url + "/api/v1/nope/", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such path: /api/v1/nope/", "details": {}}}


@pytest.mark.django_db(transaction=True)
def test_readiness_fails_while_migrations_are_pending(live_server, monkeypatch):
    """A database one migration behind the code is not ready: readyz says how many are missing."""
    from codepay_service import health

    monkeypatch.setattr(health, "_migrated", False)
    # One behind the latest webhooks migration, whatever its name.
    graph = MigrationLoader(None).graph
    [latest] = graph.leaf_nodes("webhooks")
    [previous] = [parent.key[1] for parent in graph.node_map[latest].parents if parent.key[0] == "webhooks"]
    call_command("migrate", "webhooks", previous, verbosity=0)
    try:
        behind = requests.get(live_server.url + "/readyz", timeout=30)
    finally:
        call_command("migrate", "webhooks", verbosity=0)
    assert behind.status_code == 503
    assert behind.json()["checks"]["database"] == "unavailable: 1 migrations not applied"
    assert requests.get(live_server.url + "/readyz", timeout=30).status_code == 200
