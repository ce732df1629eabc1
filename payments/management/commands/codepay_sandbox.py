"""
``python manage.py codepay_sandbox [--host H] [--port N]``: run the fake CodePay gateway until Ctrl-C.

The sandbox accepts the one app configured in settings: its public key is derived from our own private
key (``CODEPAY_PRIVATE_KEY`` or ``CODEPAY_PRIVATE_KEY_FILE``), so the service signs with the key it would
use against CodePay. The gateway's own key pair is the sandbox's; its private key is a PEM file named by
the ``CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE`` setting (development only; ``make run`` generates it). The
matching public key is printed at start, ready for ``CODEPAY_GATEWAY_PUBLIC_KEY``.

``--state-dir`` (default: the ``CODEPAY_SANDBOX_STATE_DIR`` setting) keeps every transaction on disk, so
a sandbox that is stopped or killed and started again knows every order it knew, as the real gateway
would; without it the sandbox starts empty each time.
"""

from __future__ import annotations

import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from payments.gateway import signing
from payments.gateway.errors import GatewayConfigurationError
from payments.sandbox.server import DEFAULT_PORT, SandboxApp, SandboxGateway

GATEWAY_KEY_ENV = "CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE"


class Command(BaseCommand):
    help = "Run the CodePay sandbox gateway (the fake CodePay) on this machine until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=DEFAULT_PORT)
        parser.add_argument(
            "--notification-schedule-scale",
            type=float,
            default=1.0,
            help="Multiply the notification retry schedule (5 s ... 3 h) by this; 0.01 for quick demos.",
        )
        parser.add_argument(
            "--state-dir",
            default=None,
            help=(
                "Folder for the sandbox's transactions on disk (default: CODEPAY_SANDBOX_STATE_DIR; empty: "
                "memory only)."
            ),
        )

    def handle(self, *args, host: str, port: int, notification_schedule_scale: float, state_dir: str | None, **options):
        gateway = sandbox_from_settings(
            host=host,
            port=port,
            notification_schedule_scale=notification_schedule_scale,
            state_dir=settings.CODEPAY_SANDBOX_STATE_DIR if state_dir is None else state_dir,
        )
        gateway.start()
        gateway_public_key = signing.public_key_b64der(gateway.gateway_public_key)
        self.stdout.write(f"CodePay sandbox at {gateway.base_url} (POST /api/entry, control API under /sandbox/)")
        self.stdout.write(f"Gateway public key for CODEPAY_GATEWAY_PUBLIC_KEY: {gateway_public_key}")
        self.stdout.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            self.stdout.write("Stopping the CodePay sandbox.")
        finally:
            gateway.stop()


def sandbox_from_settings(
    *, host: str, port: int, notification_schedule_scale: float = 1.0, state_dir: str | None = None
) -> SandboxGateway:
    """A sandbox accepting the app configured in settings; CommandError names the variable to set."""
    app_id = _required_setting("CODEPAY_APP_ID")
    merchant_no = _required_setting("CODEPAY_MERCHANT_NO")
    app_public_key = _app_private_key().public_key()
    user, password = settings.CODEPAY_BASIC_AUTH_USER, settings.CODEPAY_BASIC_AUTH_PASSWORD
    if bool(user) != bool(password):
        raise CommandError("Set both CODEPAY_BASIC_AUTH_USER and CODEPAY_BASIC_AUTH_PASSWORD, or neither.")
    return SandboxGateway(
        gateway_private_key=_gateway_private_key(),
        apps=[
            SandboxApp(
                app_id=app_id,
                merchant_no=merchant_no,
                public_key=app_public_key,
                basic_auth=(user, password) if user else None,
            )
        ],
        host=host,
        port=port,
        notification_schedule_scale=notification_schedule_scale,
        state_dir=state_dir or None,
    )


def _required_setting(name: str) -> str:
    value = getattr(settings, name, "")
    if not value:
        raise CommandError(f"{name} is not set. Set it in the environment to run the CodePay sandbox.")
    return value


def _app_private_key():
    if settings.CODEPAY_PRIVATE_KEY:
        return _load_key(settings.CODEPAY_PRIVATE_KEY, "CODEPAY_PRIVATE_KEY")
    if settings.CODEPAY_PRIVATE_KEY_FILE:
        return _load_key(
            _read(settings.CODEPAY_PRIVATE_KEY_FILE, "CODEPAY_PRIVATE_KEY_FILE"), "CODEPAY_PRIVATE_KEY_FILE"
        )
    raise CommandError(
        "CODEPAY_PRIVATE_KEY (PEM text) or CODEPAY_PRIVATE_KEY_FILE (a PEM file) is not set; "
        "the sandbox derives the app's public key from it."
    )


def _gateway_private_key():
    path = settings.CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE
    if not path:
        raise CommandError(
            f"{GATEWAY_KEY_ENV} is not set. Point it at a PEM RSA private key for the sandbox gateway, e.g. one "
            "made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out gateway.pem`."
        )
    return _load_key(_read(path, GATEWAY_KEY_ENV), GATEWAY_KEY_ENV)


def _read(path: str, variable: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise CommandError(f"{variable} names {path!r}, which cannot be read: {exc.strerror}.") from None


def _load_key(pem: str, variable: str):
    try:
        return signing.load_private_key(pem)
    except GatewayConfigurationError as exc:
        raise CommandError(f"{variable}: {exc.message}") from None
