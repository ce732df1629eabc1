"""
Every case of the hostile-input review replayed against the running service (real HTTP, the sandbox
gateway): amounts past what the columns hold, expired keys, admin password guessing, deep nesting, answers
outside the error shape, silently accepted mistakes, a retry after a 503, card data in error reports, and
rejected notification deliveries that store without bound.
"""

import json
import logging
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.utils import timezone
from django.views.debug import ExceptionReporter

from payments.gateway.money import amount_maximum
from payments.models import GatewayCall, IdempotencyRecord, MerchantOrderNumber, Order, OrderStatus
from tests.conftest import run_on_fresh_sqlite
from webhooks.models import NotificationDelivery, ProcessingStatus, Verification
from webhooks.services import HEADERS_MAX_BYTES, REJECTED_BODY_MAX_BYTES, REJECTED_FULL_PER_SOURCE_PER_MINUTE

TERMINAL_ORDER = {
    "channel": "terminal",
    "amount": "20.00",
    "currency": "USD",
    "description": "Dinner",
    "terminal_sn": "WPYB002248000865",
}
PAN, CVV = "4111111111111111", "737"
CARD_ORDER = {
    "channel": "card",
    "amount": "12.00",
    "currency": "USD",
    "description": "Card",
    "card": {"pan": PAN, "holder": "A Customer", "cvv": CVV, "expiry": "1230"},
    "billing_address": {"name": "A Customer", "country": "US", "zip": "10001"},
}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def error_of(response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# --- 1. Amounts and sums within what is stored exactly ----------------------------------------------------


def test_a_tip_past_the_maximum_is_refused_before_anything_is_stored_or_sent(api):
    """amount 1.00 with tip 999999999999999: 400 naming tip_amount and the maximum; no order, no gateway call."""
    response = api.post(
        "/api/v1/orders/",
        json={**TERMINAL_ORDER, "amount": "1.00", "tip_amount": "999999999999999", "merchant_order_no": "HUGE-TIP"},
    )
    assert response.status_code == 400
    assert error_of(response)["details"] == {
        "tip_amount": ["The amount may be at most 9999999999.99 USD; got 999999999999999.00."]
    }
    assert not Order.objects.filter(merchant_order_no="HUGE-TIP").exists()
    assert not GatewayCall.objects.filter(merchant_order_no="HUGE-TIP").exists()


def test_amount_tip_and_cashback_that_each_fit_but_sum_past_the_maximum_are_refused(api):
    """Each part within the maximum, paid = amount + tip + cashback above it: 400 on amount, nothing sent."""
    body = {
        **TERMINAL_ORDER,
        "amount": "9999999999.00",
        "tip_amount": "0.99",
        "cashback_amount": "0.01",
        "trans_type": "cashback",
        "merchant_order_no": "SUM-OVER",
    }
    response = api.post("/api/v1/orders/", json=body)
    assert response.status_code == 400
    assert error_of(response)["details"] == {
        "amount": ["amount + tip_amount + cashback_amount may be at most 9999999999.99 USD; got 10000000000.00."]
    }
    assert not GatewayCall.objects.filter(merchant_order_no="SUM-OVER").exists()
    at_max = api.post(
        "/api/v1/orders/",
        json={**body, "cashback_amount": "0.00", "trans_type": "sale", "merchant_order_no": "SUM-MAX"},
    )
    assert at_max.status_code == 201, at_max.text
    assert Order.objects.get(merchant_order_no="SUM-MAX").tip_amount == Decimal("0.99")


@pytest.mark.parametrize("amount", ["999999999999999.99", "12345678901234.56", "10000000000.00"])
def test_amounts_past_the_maximum_never_reach_the_gateway(api, amount):
    """Amounts that SQLite would round or the columns could not hold are a 400 naming the maximum."""
    response = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "amount": amount, "merchant_order_no": "BIG-1"})
    assert response.status_code == 400
    assert "at most 9999999999.99 USD" in error_of(response)["details"]["amount"][0]
    assert not GatewayCall.objects.filter(merchant_order_no="BIG-1").exists()


def test_an_increment_that_would_raise_the_authorization_past_the_maximum_is_refused(api, sandbox_control):
    """authorized + increment above the maximum: 400 on amount, the authorization unchanged, no increment sent."""
    created = api.post(
        "/api/v1/orders/",
        json={**TERMINAL_ORDER, "trans_type": "auth", "amount": "9999999999.00", "merchant_order_no": "AUTH-MAX"},
    )
    assert created.status_code == 201, created.text
    sandbox_control.pay("AUTH-MAX")
    assert api.post("/api/v1/orders/AUTH-MAX/sync/").json()["status"] == "authorized"
    response = api.post("/api/v1/orders/AUTH-MAX/increment/", json={"amount": "1.00"})
    assert response.status_code == 400
    assert error_of(response)["details"] == {
        "amount": ["The authorized amount with this increment may be at most 9999999999.99 USD; got 10000000000.00."]
    }
    assert Order.objects.get(merchant_order_no="AUTH-MAX").authorized_amount == Decimal("9999999999.00")
    assert not GatewayCall.objects.filter(method__contains="incremental").exists()


def test_every_amount_and_sum_at_the_maximum_is_stored_exactly_on_postgresql(db, account):
    """Each money column holds the maximum of a 0-, 2- and 3-digit currency to the last digit."""
    for currency in ("USD", "JPY", "BHD"):
        maximum = amount_maximum(currency)
        order = Order.objects.create(
            account=account,
            merchant_order_no=f"PG-{currency}",
            channel="terminal",
            currency=currency,
            amount=maximum,
            tip_amount=maximum,
            authorized_amount=maximum,
            captured_amount=maximum,
            paid_amount=maximum,
            refunded_amount=maximum,
            description="max",
            expires_at=timezone.now(),
        )
        order.refresh_from_db()
        assert {order.amount, order.tip_amount, order.paid_amount, order.refunded_amount} == {maximum}


def test_every_amount_and_sum_at_the_maximum_is_stored_exactly_on_sqlite(tmp_path):
    """
    On SQLite (make run), maxima of USD, JPY, BHD and KWD read back digit for digit, and the order list
    answers 200; a poisoned row is logged and skipped by the list and by reconciliation.
    """
    report, stderr = run_on_fresh_sqlite("tests.security.sqlite_money_roundtrip", tmp_path)
    assert report["read"] == report["stored"]
    assert report["stored"]["USD"]["paid_amount"] == "9999999999.99"
    assert report["stored"]["BHD"]["paid_amount"] == "999999999.999"
    assert report["stored"]["JPY"]["paid_amount"] == "999999999999"
    assert report["list_status"] == 200
    assert report["listed"] == {
        "USD": "9999999999.97",
        "JPY": "999999999997",
        "BHD": "999999999.997",
        "KWD": "999999999.997",
    }
    assert report["paid_exact"] is True
    # A row written around the service that SQLite cannot give back is skipped, never a 500 for the others.
    assert report["poisoned_list_status"] == 200
    assert report["poisoned_list"] == ["MAX-BHD", "MAX-JPY", "MAX-KWD", "MAX-USD"]
    assert report["other_detail_status"] == 200
    assert report["reconcile_orders_checked"] == 4
    assert "unreadable row skipped" in stderr
    # Checked, not only counted: every readable row's check ran to its end on SQLite.
    assert "reconcile: unexpected error" not in stderr


# --- 2. Expired API keys ---------------------------------------------------------------------------------


def test_an_expired_api_key_is_refused_like_a_revoked_one(api, api_key):
    """
    expiry_date in the past (set as the admin sets it, through the model): 401 authentication_failed; the
    same key before expiry: 200. (A change made in another process is seen once the key cache lapses.)
    """
    assert api.get("/api/v1/orders/").status_code == 200
    key = api_key[0].__class__.objects.get(pk=api_key[0].pk)
    key.expiry_date = timezone.now() - timedelta(seconds=1)
    key.save()
    response = api.get("/api/v1/orders/")
    assert response.status_code == 401
    assert error_of(response) == {
        "code": "authentication_failed",
        "message": "Unknown, revoked or expired API key.",
        "details": {},
    }


# --- 3. Admin login throttled and locked out --------------------------------------------------------------


def test_the_admin_login_locks_out_after_repeated_wrong_passwords(client, django_user_model, settings):
    """Five wrong passwords for one user from one address: the right password no longer logs in (429)."""
    django_user_model.objects.create_superuser("ops", "ops@example.com", "right-horse-battery")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        wrong = client.post("/admin/login/", {"username": "ops", "password": "wrong", "next": "/admin/"})
        assert wrong.status_code in (200, 429)
    locked = client.post("/admin/login/", {"username": "ops", "password": "right-horse-battery", "next": "/admin/"})
    assert locked.status_code == 429
    assert client.get("/admin/").status_code == 302  # still not logged in


def test_the_admin_login_works_with_the_right_password_before_any_lockout(client, django_user_model):
    """A couple of typos, then the right password: logged in (the lockout is not a hair trigger)."""
    django_user_model.objects.create_superuser("ops", "ops@example.com", "right-horse-battery")
    client.post("/admin/login/", {"username": "ops", "password": "typo", "next": "/admin/"})
    ok = client.post("/admin/login/", {"username": "ops", "password": "right-horse-battery", "next": "/admin/"})
    assert ok.status_code == 302
    assert client.get("/admin/").status_code == 200


# --- 4. Deep nesting --------------------------------------------------------------------------------------


def test_a_notification_nested_3000_deep_is_stored_as_malformed_and_answered_400(
    live_server, transactional_db, settings
):
    """The 6 KB body nested 3,000 deep: 400, and a delivery row marked malformed keeping at most 4 KiB of it."""
    from tests.factories import MerchantAccountFactory

    MerchantAccountFactory(code="default")
    settings.CODEPAY_NOTIFICATION_ALLOWED_NETWORKS = []
    body = '{"merchant_order_no": ' + nested(3000) + "}"
    response = requests.post(
        f"{live_server.url}/webhooks/codepay/", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert (response.status_code, response.text) == (400, "rejected: malformed")
    delivery = NotificationDelivery.objects.get()
    assert (delivery.verification, delivery.status) == (Verification.MALFORMED, ProcessingStatus.REJECTED)
    assert delivery.verification_detail == "JSON nested too deeply"
    assert len(bytes(delivery.raw_body)) == REJECTED_BODY_MAX_BYTES and delivery.body_truncated is True


def test_an_api_body_nested_3000_deep_is_a_400_in_the_error_shape(api):
    """The same nesting on the API: 400 malformed_request naming the depth limit, never a 500."""
    response = api.post(
        "/api/v1/orders/", data='{"channel": ' + nested(3000) + "}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "malformed_request",
        "message": "The body nests objects or arrays deeper than 16 levels.",
        "details": {},
    }


# --- 5. Every /api/ answer in the error shape ----------------------------------------------------------------


def test_an_oversized_body_is_413_in_the_error_shape(api):
    """A body over 64 KiB: 413 request_too_large, read no further."""
    response = api.post(
        "/api/v1/orders/",
        data=b'{"description": "' + b"x" * 70_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_a_host_header_the_service_does_not_serve_is_a_json_400(api):
    """DisallowedHost on /api/: 400 bad_host in the error shape, not Django's HTML page."""
    response = api.get("/api/v1/orders/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_host"


@pytest.mark.parametrize("debug", [False, True])
def test_a_post_without_the_trailing_slash_is_a_json_404_naming_the_right_path(api, settings, debug):
    """POST /api/v1/orders (no slash): 404 naming /api/v1/orders/, with DEBUG on too (Django would 500)."""
    settings.DEBUG = debug
    response = api.post("/api/v1/orders", json=TERMINAL_ORDER)
    assert response.status_code == 404
    assert error_of(response) == {
        "code": "not_found",
        "message": "No such path: /api/v1/orders. The API's paths end with a slash: /api/v1/orders/",
        "details": {"path": "/api/v1/orders/"},
    }


@pytest.mark.parametrize("debug", [False, True])
def test_a_mistyped_api_path_is_a_json_404(api, settings, debug):
    """GET /api/v1/ordres/: 404 in the error shape, whether DEBUG is on or off."""
    settings.DEBUG = debug
    response = api.get("/api/v1/ordres/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_method_the_path_does_not_take_is_a_json_405(api):
    """DELETE /api/v1/orders/: 405 method_not_allowed in the error shape."""
    response = api.session.delete(api.base_url + "/api/v1/orders/", timeout=10)
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


# --- 6. Mistakes refused, not silently accepted ---------------------------------------------------------------


def test_a_duplicate_key_in_a_body_is_refused(api):
    """{"amount": "1.00", "amount": "100.00"}: 400 naming the key; nothing created."""
    body = (
        '{"channel": "terminal", "amount": "1.00", "amount": "100.00", "currency": "USD", "description": "x", '
        '"terminal_sn": "T1"}'
    )
    response = api.post("/api/v1/orders/", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["message"] == "The key 'amount' appears twice in one object; send each key once."
    assert not Order.objects.exists()


def test_an_unknown_body_field_is_refused_with_the_closest_known_name(api):
    """tip_ammount: 400 naming it and suggesting tip_amount; nothing created."""
    response = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "tip_ammount": "5.00"})
    assert response.status_code == 400
    assert error_of(response)["details"] == {"tip_ammount": ["Unknown field; did you mean 'tip_amount'?"]}
    assert not Order.objects.exists()


def test_unknown_fields_in_a_card_or_an_action_body_are_refused(api):
    """A nested card with an extra field, and a body on an action that takes none: 400 naming the field."""
    card = api.post(
        "/api/v1/orders/", json={**CARD_ORDER, "card": {**CARD_ORDER["card"], "pin": "1234", "zip": "10001"}}
    )
    assert card.status_code == 400
    assert error_of(card)["details"] == {
        "card": {
            "pin": ["Unknown field; did you mean 'pan'?"],
            "zip": ["Unknown field; this request takes: pan, holder, cvv, expiry, card_type."],
        }
    }
    created = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "ACT-1"})
    assert created.status_code == 201
    cancel = api.post("/api/v1/orders/ACT-1/cancel/", json={"reason": "x"})
    assert cancel.status_code == 400
    assert error_of(cancel)["details"] == {"reason": ["Unknown field; this request takes: no fields."]}


@pytest.mark.parametrize(
    ("query", "details"),
    [
        (
            "merchant_order_no=X",
            {
                "merchant_order_no": [
                    "Unknown query parameter; this list takes: status, channel, store_no, terminal_sn, "
                    "created_after, created_before, cursor, page_size."
                ]
            },
        ),
        ("page_size=null", {"page_size": ["A whole number from 1 to 200."]}),
        ("page_size=0", {"page_size": ["A whole number from 1 to 200."]}),
        ("status=pending&status=failed", {"status": ["Given more than once; give it once."]}),
        ("cursor=bm9wZQ", {"cursor": ["Not a cursor this API issued; use the `next` or `previous` link of a page."]}),
        ("created_after=yesterday", {"created_after": ["Enter a valid date/time."]}),
        ("store_no=a%00b", {"store_no": ["At most 256 printable characters."]}),
        (
            "created_after=0001-01-01T00:00:00%2B10:00",
            {"created_after": ["Out of range; send a time such as 2026-01-31T09:00:00Z."]},
        ),
    ],
)
def test_list_queries_with_unknown_or_malformed_parameters_are_400(api, query, details):
    """An unknown filter, a malformed page_size, a repeated parameter or a bad cursor never returns every order."""
    response = api.get(f"/api/v1/orders/?{query}")
    assert response.status_code == 400
    assert error_of(response)["details"] == details


def test_a_time_filter_with_an_offset_postgresql_does_not_take_is_answered(api):
    """created_after with a +21:54 offset (valid ISO 8601, past PostgreSQL's range): converted to UTC, 200."""
    response = api.get("/api/v1/orders/?created_after=0079-03-13T15:29:07%2B21:54")
    assert response.status_code == 200, response.text


def test_a_nul_in_a_path_number_is_a_404(api):
    """/api/v1/orders/A%00B/: no order can have that number; 404, not a database error."""
    assert error_of(api.get("/api/v1/orders/A%00B/"))["code"] == "not_found"
    assert error_of(api.get("/api/v1/refunds/A%00B/"))["code"] == "not_found"


def test_the_batch_list_refuses_unknown_parameters_and_bad_cursors(api):
    """The batches list follows the same rules: unknown parameter or bad cursor, 400."""
    assert error_of(api.get("/api/v1/batches/?store=1"))["details"] == {
        "store": ["Unknown query parameter; this list takes: cursor, page_size."]
    }
    assert api.get("/api/v1/batches/?cursor=zz").status_code == 400


# --- 7. A retry after a 503 -------------------------------------------------------------------------------------


def test_after_a_503_the_same_key_body_and_merchant_order_no_create_the_order(api, settings, sandbox):
    """Gateway unreachable (nothing sent): 503; with it back, the identical request creates the order (201)."""
    from payments.services.accounts import gateway_clients_reset

    body = {**TERMINAL_ORDER, "merchant_order_no": "RETRY-503"}
    settings.CODEPAY_BASE_URL = "http://127.0.0.1:1"
    gateway_clients_reset()
    down = api.post("/api/v1/orders/", json=body, idempotency_key="retry-503")
    assert down.status_code == 503
    assert not MerchantOrderNumber.objects.filter(merchant_order_no="RETRY-503").exists()
    settings.CODEPAY_BASE_URL = sandbox.base_url
    gateway_clients_reset()
    up = api.post("/api/v1/orders/", json=body, idempotency_key="retry-503")
    assert up.status_code == 201, up.text
    assert Order.objects.get(merchant_order_no="RETRY-503").status == OrderStatus.PENDING
    assert IdempotencyRecord.objects.get(key="retry-503").response_status == 201


def test_after_a_503_a_refund_can_be_retried_with_its_merchant_order_no(api, settings, sandbox, sandbox_control):
    """A refund that never left: 503; the identical refund then succeeds (201)."""
    from payments.services.accounts import gateway_clients_reset

    assert api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "PAID-503"}).status_code == 201
    sandbox_control.pay("PAID-503")
    assert api.post("/api/v1/orders/PAID-503/sync/").json()["status"] == "succeeded"
    refund = {"amount": "5.00", "reason": "r", "merchant_order_no": "REF-503"}
    settings.CODEPAY_BASE_URL = "http://127.0.0.1:1"
    gateway_clients_reset()
    assert api.post("/api/v1/orders/PAID-503/refunds/", json=refund, idempotency_key="ref-503").status_code == 503
    settings.CODEPAY_BASE_URL = sandbox.base_url
    gateway_clients_reset()
    again = api.post("/api/v1/orders/PAID-503/refunds/", json=refund, idempotency_key="ref-503")
    assert again.status_code == 201, again.text


# --- 8. No PAN or CVV in error reports ----------------------------------------------------------------------------


def test_a_crashing_card_request_shows_no_pan_or_cvv_in_the_error_report(
    client, api_key, settings, monkeypatch, caplog
):
    """
    With DEBUG on, a card order that crashes while the card is being encrypted: the error report (the
    technical page and the mail to admins) shows frames and variables, but never the PAN or the CVV.
    """
    from payments.gateway import signing

    settings.DEBUG = True
    real_encrypt = signing.encrypt_card

    def encrypt_then_fail(plaintext, public_key):
        real_encrypt(plaintext, public_key)
        raise RuntimeError("encryption backend failed")

    monkeypatch.setattr(signing, "encrypt_card", encrypt_then_fail)
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.post(
            "/api/v1/orders/",
            data=json.dumps(CARD_ORDER),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Api-Key {api_key[1]}",
        )
    assert response.status_code == 500
    assert error_of_django(response)["code"] == "server_error"
    record = next(r for r in caplog.records if r.exc_info)
    reporter = ExceptionReporter(record.request, *record.exc_info)
    for report in (reporter.get_traceback_html(), reporter.get_traceback_text()):
        assert "encrypt_then_fail" in report and "********************" in report
        assert PAN not in report and "411111" not in report
        assert f'"cvv":"{CVV}"' not in report and f"'cvv': '{CVV}'" not in report


def error_of_django(response) -> dict:
    return json.loads(response.content)["error"]


# --- 9. Rejected deliveries are bounded ---------------------------------------------------------------------------


def test_a_rejected_delivery_keeps_a_bounded_part_of_its_headers(live_server, transactional_db, settings):
    """An unsigned POST with 90 KB of headers: stored within HEADERS_MAX_BYTES, what was left out counted."""
    from tests.factories import MerchantAccountFactory

    MerchantAccountFactory(code="default")
    settings.CODEPAY_NOTIFICATION_ALLOWED_NETWORKS = []
    headers = {f"X-Filler-{i}": "v" * 1000 for i in range(90)}
    response = requests.post(
        f"{live_server.url}/webhooks/codepay/", data="merchant_order_no=X", headers=headers, timeout=10
    )
    assert response.status_code == 400
    stored = NotificationDelivery.objects.get().headers
    assert sum(len(k) + len(v) for k, v in stored.items() if k != "(truncated)") <= HEADERS_MAX_BYTES
    assert stored["(truncated)"].endswith(f"more headers over {HEADERS_MAX_BYTES} bytes not kept")
    assert len(json.dumps(stored)) < 2 * HEADERS_MAX_BYTES


def test_rejected_deliveries_past_the_per_minute_limit_are_counted_without_body_or_headers(
    live_server, transactional_db, settings
):
    """From one source: the first REJECTED_FULL_PER_SOURCE_PER_MINUTE are kept whole, later ones only counted."""
    from tests.factories import MerchantAccountFactory

    MerchantAccountFactory(code="default")
    settings.CODEPAY_NOTIFICATION_ALLOWED_NETWORKS = []
    total = REJECTED_FULL_PER_SOURCE_PER_MINUTE + 5
    with requests.Session() as session:
        for i in range(total):
            response = session.post(
                f"{live_server.url}/webhooks/codepay/",
                data=f"merchant_order_no=FLOOD-{i}",
                headers={"X-Junk": "j" * 500},
                timeout=10,
            )
            assert response.status_code == 400
    deliveries = list(NotificationDelivery.objects.order_by("id"))
    assert len(deliveries) == total
    full, counted = deliveries[:REJECTED_FULL_PER_SOURCE_PER_MINUTE], deliveries[REJECTED_FULL_PER_SOURCE_PER_MINUTE:]
    assert all(bytes(d.raw_body) and d.headers["X-Junk"] for d in full)
    assert all(bytes(d.raw_body) == b"" and d.headers == {} and d.body_truncated for d in counted)
    assert all(d.merchant_order_no.startswith("FLOOD-") for d in counted)
    assert counted[0].status_message.endswith("body and headers not kept")
