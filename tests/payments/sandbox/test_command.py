"""`manage.py codepay_sandbox`: the sandbox built from settings, and readable errors when they are missing."""

import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from payments.gateway.methods import Method
from payments.management.commands.codepay_sandbox import sandbox_from_settings
from tests.conftest import TEST_VECTORS
from tests.payments.sandbox.helpers import CodePay


@pytest.fixture
def configured(settings, tmp_path):
    """Settings for the test app, the app key in a file, the gateway key file named in the settings."""
    app_key_file = tmp_path / "app.pem"
    app_key_file.write_text(TEST_VECTORS["app_private_key_pem"])
    gateway_key_file = tmp_path / "gateway.pem"
    gateway_key_file.write_text(TEST_VECTORS["gateway_private_key_pem"])
    settings.CODEPAY_APP_ID = CodePay.app_id
    settings.CODEPAY_MERCHANT_NO = CodePay.merchant_no
    settings.CODEPAY_PRIVATE_KEY = ""
    settings.CODEPAY_PRIVATE_KEY_FILE = str(app_key_file)
    settings.CODEPAY_BASIC_AUTH_USER, settings.CODEPAY_BASIC_AUTH_PASSWORD = CodePay.basic_auth
    settings.CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE = str(gateway_key_file)
    return settings


def test_sandbox_from_settings_accepts_the_configured_app(configured):
    """The app's public key is derived from CODEPAY_PRIVATE_KEY_FILE: a request signed with it is accepted."""
    with sandbox_from_settings(host="127.0.0.1", port=0) as gateway:
        answer = CodePay(gateway.base_url).call(Method.ORDER_QUERY, merchant_order_no="NONE")

    assert answer.code == "E04111"


def test_inline_private_key_setting_is_used_too(configured):
    """CODEPAY_PRIVATE_KEY (PEM text) works as well as the file."""
    configured.CODEPAY_PRIVATE_KEY = TEST_VECTORS["app_private_key_pem"]
    configured.CODEPAY_PRIVATE_KEY_FILE = ""

    with sandbox_from_settings(host="127.0.0.1", port=0) as gateway:
        assert CodePay(gateway.base_url).call(Method.ORDER_QUERY, merchant_order_no="NONE").code == "E04111"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("CODEPAY_APP_ID", "CODEPAY_APP_ID is not set"),
        ("CODEPAY_MERCHANT_NO", "CODEPAY_MERCHANT_NO is not set"),
        ("CODEPAY_PRIVATE_KEY_FILE", "CODEPAY_PRIVATE_KEY (PEM text) or CODEPAY_PRIVATE_KEY_FILE"),
        ("CODEPAY_BASIC_AUTH_PASSWORD", "Set both CODEPAY_BASIC_AUTH_USER and CODEPAY_BASIC_AUTH_PASSWORD"),
    ],
)
def test_missing_setting_is_one_readable_error_naming_it(configured, setting, named):
    """The command stops with a CommandError that names the variable to set."""
    setattr(configured, setting, "")

    with pytest.raises(CommandError, match=re.escape(named)):
        call_command("codepay_sandbox", "--port", "0")


def test_missing_gateway_key_file_variable_is_named(configured):
    """Without CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE the command says to set it."""
    configured.CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE = ""

    with pytest.raises(CommandError, match="CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE is not set"):
        call_command("codepay_sandbox", "--port", "0")


def test_unreadable_key_is_named_without_its_content(configured, tmp_path):
    """A file that is not a PEM key is reported by variable name, not by content."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    configured.CODEPAY_PRIVATE_KEY_FILE = str(bad)

    with pytest.raises(CommandError) as raised:
        call_command("codepay_sandbox", "--port", "0")

    assert str(raised.value).startswith("CODEPAY_PRIVATE_KEY_FILE: ")
    assert "not a key" not in str(raised.value)
