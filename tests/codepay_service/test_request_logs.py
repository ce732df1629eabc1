"""JSON request logs over real HTTP: one line per request, its id echoed, context fields, no card data."""

import io
import json
import logging
import logging.config
import os
import subprocess
import sys

import pytest
import requests

from codepay_service.log_format import RequestContextFilter
from payments.services.accounts import api_key_create

VISA_OK = {"pan": "4111111111111111", "holder": "TEST HOLDER", "cvv": "987", "expiry": "1230"}


@pytest.fixture
def log_lines(settings):
    """What the configured console handler (JSON, as in production) writes, as a list of parsed lines."""
    # An in-process Celery worker in an earlier test may have replaced the root handlers with its own.
    logging.config.dictConfig(settings.LOGGING)
    handler = next(
        h for h in logging.getLogger().handlers if any(isinstance(f, RequestContextFilter) for f in h.filters)
    )
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    lines = []

    def read():
        lines[:] = [json.loads(line) for line in buffer.getvalue().splitlines()]
        return lines

    yield read
    handler.setStream(previous)


def test_a_request_writes_one_json_line_with_the_request_id_it_echoes(api, log_lines):
    """The caller's X-Request-ID is answered back and is on the request's single access line."""
    response = api.get("/api/v1/orders/", headers={"X-Request-ID": "store-7f3a.42"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "store-7f3a.42"
    access = [line for line in log_lines() if line["logger"] == "codepay_service.request"]
    assert len(access) == 1
    line = access[0]
    assert (line["request_id"], line["method"], line["route"], line["status"], line["level"]) == (
        "store-7f3a.42",
        "GET",
        "/api/v1/orders/",
        200,
        "INFO",
    )
    assert line["account"] == "default"
    assert line["time"].endswith("+00:00")


@pytest.mark.parametrize("given", [None, "", "has spaces", 'quote"d', "x" * 129, "line\u2028break"])
def test_an_implausible_request_id_is_replaced_by_a_generated_one(api, log_lines, given):
    """A missing, empty, too long or oddly written id is not trusted: a fresh 32-hex id is used and echoed."""
    headers = {} if given is None else {"X-Request-ID": given.encode("utf-8")}
    response = api.get("/api/v1/orders/", headers=headers)
    generated = response.headers["X-Request-ID"]
    assert generated != given and len(generated) == 32 and int(generated, 16) >= 0
    assert [line["request_id"] for line in log_lines() if line["logger"] == "codepay_service.request"] == [generated]


def test_every_line_of_a_request_carries_its_id_and_order(api, sandbox_control, log_lines):
    """A service's gateway call line logged inside the request has the request's id; the access line names the order."""
    response = api.post(
        "/api/v1/orders/",
        json={
            "channel": "terminal",
            "amount": "5.00",
            "currency": "USD",
            "description": "Tea",
            "terminal_sn": "WPYB002248000865",
            "merchant_order_no": "LOG-1",
        },
        headers={"X-Request-ID": "req-log-1"},
    )
    assert response.status_code == 201, response.text
    lines = [line for line in log_lines() if line.get("request_id") == "req-log-1"]
    assert [line["message"] for line in lines] == ["codepay call", "request"]
    call, access = lines
    assert call["merchant_order_no"] == access["merchant_order_no"] == "LOG-1"
    assert call["psn"] != ""
    assert "store_no" not in access  # this key may use every store


def test_the_access_line_names_the_account_and_store_of_a_store_key(account, make_api_client, log_lines):
    """A key limited to one store puts that store and its account on the request's line."""
    _, key = api_key_create(name="pos-west", account=account, store_no="4021000008")
    response = make_api_client(key).get("/api/v1/orders/", headers={"X-Request-ID": "req-store"})
    assert response.status_code == 200
    [access] = [line for line in log_lines() if line.get("request_id") == "req-store"]
    assert (access["account"], access["store_no"]) == ("default", "4021000008")


def test_card_data_never_reaches_the_logs(api, log_lines):
    """A card payment logs its lines without the PAN, the CVV or the holder's name."""
    response = api.post(
        "/api/v1/orders/",
        json={
            "channel": "card",
            "amount": "34.50",
            "currency": "USD",
            "description": "Shoes",
            "card": VISA_OK,
            "billing_address": {"name": "Test", "country": "US", "zip": "10001"},
        },
    )
    assert response.status_code == 201, response.text
    lines = log_lines()
    assert {line["message"] for line in lines} >= {"codepay call", "request"}
    written = json.dumps(lines)
    for secret in ("4111111111111111", "411111", "987", "TEST HOLDER", '"cvv"', '"pan"'):
        assert secret not in written


def test_probes_and_scrapes_stay_out_of_the_info_log(live_server, log_lines, db):
    """/healthz is answered (with its request id) but logged at DEBUG, below the production INFO level."""
    response = requests.get(f"{live_server.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert len(response.headers["X-Request-ID"]) == 32
    assert [line for line in log_lines() if line["logger"] == "codepay_service.request"] == []


def _settings_in_a_fresh_process(**env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in ("DJANGO_DEBUG", "LOG_FORMAT")}
    environment.update(DJANGO_SETTINGS_MODULE="codepay_service.settings", **env)
    code = "import django; django.setup(); from django.conf import settings; print(settings.LOG_FORMAT)"
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "json"),
        ({"DJANGO_DEBUG": "1"}, "text"),
        ({"DJANGO_DEBUG": "1", "LOG_FORMAT": "json"}, "json"),
        ({"LOG_FORMAT": "text"}, "text"),
    ],
)
def test_log_format_is_json_outside_debug_and_text_for_make_run(env, expected):
    """LOG_FORMAT defaults to json, to text on a DEBUG server (make run); either can be chosen explicitly."""
    result = _settings_in_a_fresh_process(**env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_an_unknown_log_format_stops_the_service_with_the_fix():
    """A typo in LOG_FORMAT is refused at start-up with the two accepted values."""
    result = _settings_in_a_fresh_process(LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT is 'xml'; set it to 'json' or 'text'." in result.stderr
