"""
``make run``: the whole service on one machine with no database or broker server.

SQLite holds the data, Celery uses kombu's filesystem transport (no server), and the built-in sandbox
plays CodePay with freshly generated development keys. Web, worker (with beat) and sandbox run as
child processes of this command and stop with it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from payments.gateway import signing
from payments.services.accounts import api_key_create, merchant_account_sync_default


def _write_dev_keys() -> None:
    """Generate the app and sandbox-gateway key pairs once; they are for this machine's sandbox only."""
    pairs = (
        (settings.CODEPAY_PRIVATE_KEY_FILE, None),
        (settings.CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE, settings.CODEPAY_GATEWAY_PUBLIC_KEY_FILE),
    )
    for private_path, public_path in pairs:
        if not private_path:
            raise CommandError(
                "devserver needs CODEPAY_PRIVATE_KEY_FILE and CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE (see the "
                "Makefile)."
            )
        private_file = Path(private_path)
        if not private_file.exists():
            private_file.parent.mkdir(parents=True, exist_ok=True)
            private_file.write_text(signing.private_key_pem(signing.generate_private_key()))
            private_file.chmod(0o600)
        if public_path:
            key = signing.load_private_key(private_file.read_text())
            Path(public_path).write_text(signing.public_key_b64der(key.public_key()))


class Command(BaseCommand):
    help = "Run web, worker, beat and the sandbox gateway for local development (used by `make run`)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--sandbox-port", type=int, default=8010)

    def handle(self, *args, host, port, sandbox_port, **options):
        if not settings.DEBUG:
            raise CommandError("devserver is for development only; set DJANGO_DEBUG=1 (make run does).")
        _write_dev_keys()
        folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            for name in ("processed_folder", "control_folder"):
                Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS[name]).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("setup_schedules", verbosity=0)
        account = merchant_account_sync_default()
        _, key = api_key_create(name="make-run", account=account)

        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        children = [
            subprocess.Popen([*manage, "codepay_sandbox", "--host", "127.0.0.1", "--port", str(sandbox_port)]),
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "codepay_service",
                    "worker",
                    "--beat",
                    "--pool",
                    "threads",
                    "--concurrency",
                    "4",
                    "--loglevel",
                    "INFO",
                    "--scheduler",
                    "django_celery_beat.schedulers:DatabaseScheduler",
                ]
            ),
            subprocess.Popen([*manage, "runserver", "--noreload", f"{host}:{port}"]),
        ]
        base = f"http://{host}:{port}"
        time.sleep(2)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "CodePay merchant service (development, sandbox gateway)",
                    f"  API        {base}/api/v1/orders/",
                    f"  API docs   {base}/api/docs/",
                    f"  Admin      {base}/admin/   (make manage ARGS=createsuperuser to get a login)",
                    f"  Webhooks   {base}/webhooks/codepay/",
                    f"  Sandbox    http://127.0.0.1:{sandbox_port}/sandbox/calls  (control API: POST "
                    "/sandbox/orders/<no>/pay)",
                    "  API key (export it for the README demo):",
                    f"export API_KEY={key}",
                    "",
                ]
            )
        )
        self.stdout.flush()
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
