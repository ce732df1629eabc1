"""Configuration problems each give one readable message naming what to fix."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from payments.models import Order, OrderStatus
from payments.services.accounts import gateway_clients_reset

ROOT = Path(__file__).resolve().parents[2]
TERMINAL_ORDER = {"channel": "terminal", "amount": "1.00", "currency": "USD", "description": "x", "terminal_sn": "T1"}


def manage(*args, **env):
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CODEPAY_"))}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_the_service_refuses_to_start_without_a_secret_key():
    """No DJANGO_SECRET_KEY: the process stops with a message saying how to make one."""
    result = manage("check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_settings_pass_the_deployment_checklist():
    """With a strong secret key and DEBUG off, `check --deploy` reports nothing."""
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="x" * 20 + "a-strong-random-secret-key-for-the-check-" + "y" * 20,
        DJANGO_ALLOWED_HOSTS="pay.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


GENERIC = "The service's CodePay configuration is incomplete or wrong; the operator finds the details in its log."


def test_unreadable_private_key_file_is_named_for_the_operator(api, settings, caplog):
    """A key file that cannot be read: the log and the failed order name the setting and path; the client does not
    see them."""
    settings.CODEPAY_PRIVATE_KEY = ""
    settings.CODEPAY_PRIVATE_KEY_FILE = "/nonexistent/app.pem"
    gateway_clients_reset()
    response = api.post("/api/v1/orders/", json={**TERMINAL_ORDER, "merchant_order_no": "CFG-1"})
    assert response.status_code == 500
    assert response.json()["error"] == {"code": "gateway_misconfigured", "message": GENERIC, "details": {}}
    detail = (
        "CODEPAY_PRIVATE_KEY_FILE points at /nonexistent/app.pem, which cannot be read (No such file or directory)."
    )
    order = Order.objects.get(merchant_order_no="CFG-1")
    assert (order.status, order.gateway_message) == (OrderStatus.FAILED, detail)
    assert f"CodePay misconfigured: {detail}" in caplog.messages


def test_garbage_private_key_is_named_without_echoing_it(api, settings, caplog):
    """A private key that is not PEM: the operator's message says so and never repeats the key."""
    settings.CODEPAY_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----"
    gateway_clients_reset()
    response = api.post("/api/v1/orders/", json=TERMINAL_ORDER)
    assert response.status_code == 500
    assert response.json()["error"]["message"] == GENERIC
    assert (
        "CodePay misconfigured: Merchant account 'default': The app private key is not a readable unencrypted "
        "PEM RSA key "
        "(PKCS#8 or PKCS#1)." in caplog.messages
    )
    assert "c2VjcmV0" not in response.text + " ".join(caplog.messages)


@pytest.mark.django_db
def test_missing_account_settings_are_named(settings):
    """Without CODEPAY_APP_ID and CODEPAY_MERCHANT_NO the default account cannot be described."""
    settings.CODEPAY_APP_ID = ""
    settings.CODEPAY_MERCHANT_NO = ""
    with pytest.raises(CommandError, match="Set CODEPAY_APP_ID and CODEPAY_MERCHANT_NO"):
        call_command("create_api_key", "--name", "x")


def test_a_refund_blocked_by_our_configuration_is_failed_not_left_unknown(api, account, settings):
    """Misconfiguration means nothing was sent: the refund is failed (its amount freed), the client gets a 500."""
    from decimal import Decimal

    from payments.models import Refund, RefundStatus
    from tests.factories import OrderFactory

    OrderFactory(
        account=account, merchant_order_no="CFG-PAID", status=OrderStatus.SUCCEEDED, paid_amount=Decimal("10.00")
    )
    settings.CODEPAY_PRIVATE_KEY, settings.CODEPAY_PRIVATE_KEY_FILE = "", "/nonexistent/app.pem"
    gateway_clients_reset()
    response = api.post("/api/v1/orders/CFG-PAID/refunds/", json={"amount": "5.00", "reason": "x"})
    assert response.status_code == 500
    assert response.json()["error"]["message"] == GENERIC
    refund = Refund.objects.get(order__merchant_order_no="CFG-PAID")
    assert (refund.status, refund.next_check_at) == (RefundStatus.FAILED, None)
    assert refund.gateway_message.startswith("CODEPAY_PRIVATE_KEY_FILE points at /nonexistent/app.pem")
