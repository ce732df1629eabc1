import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from payments.gateway import signing
from payments.sandbox.server import SandboxApp, SandboxGateway


@pytest.fixture(autouse=True)
def process_caches_empty():
    """Each test starts with no account or API key cached from an earlier test's (rolled back) database."""
    from payments.services.accounts import process_caches_clear

    process_caches_clear()
    yield
    process_caches_clear()


# --- CodePay sandbox: the fake gateway, in this process, over real HTTP -----------------------------
# Keys are the published test keys (tests/fixtures/test-vectors.json); never use them for real traffic.
TEST_VECTORS = json.loads((Path(__file__).parent / "fixtures" / "test-vectors.json").read_text())
SANDBOX_APP_ID = "wz6012822ca2f1as78"
SANDBOX_MERCHANT_NO = "302300000926"
SANDBOX_BASIC_AUTH = ("sandbox-user", "sandbox-pass")


def make_sandbox_gateway(**options) -> SandboxGateway:
    """A sandbox gateway (not started) for the test app, on a free port, notification retries 1000x faster."""
    return SandboxGateway(
        gateway_private_key=signing.load_private_key(TEST_VECTORS["gateway_private_key_pem"]),
        apps=[
            SandboxApp(
                app_id=SANDBOX_APP_ID,
                merchant_no=SANDBOX_MERCHANT_NO,
                public_key=signing.load_private_key(TEST_VECTORS["app_private_key_pem"]).public_key(),
                basic_auth=SANDBOX_BASIC_AUTH,
            )
        ],
        host="127.0.0.1",
        port=0,
        notification_schedule_scale=0.001,
        **options,
    )


@pytest.fixture(scope="session")
def sandbox():
    """The sandbox gateway on a free port for the whole session; notification retries run 1000x faster."""
    gateway = make_sandbox_gateway().start()
    yield gateway
    gateway.stop()


@pytest.fixture
def sandbox_reset(sandbox):
    """The session's sandbox with no orders, calls, faults or notifications left from earlier tests."""
    requests.post(f"{sandbox.base_url}/sandbox/reset", timeout=5).raise_for_status()
    return sandbox


APP_ID = SANDBOX_APP_ID
MERCHANT_NO = SANDBOX_MERCHANT_NO
STORE_NO = "4021000008"
VECTORS = TEST_VECTORS


# --- A merchant account wired to the sandbox -------------------------------------------------------


@pytest.fixture
def codepay_settings(settings, sandbox):
    """The default merchant account's settings, pointing at the in-process sandbox with the test keys."""
    from payments.services.accounts import gateway_clients_reset

    settings.CODEPAY_BASE_URL = sandbox.base_url
    settings.CODEPAY_APP_ID = APP_ID
    settings.CODEPAY_MERCHANT_NO = MERCHANT_NO
    settings.CODEPAY_STORE_NO = STORE_NO
    settings.CODEPAY_SIGN_TYPE = "RSA2"
    settings.CODEPAY_PRIVATE_KEY = VECTORS["app_private_key_pem"]
    settings.CODEPAY_PRIVATE_KEY_FILE = ""
    settings.CODEPAY_GATEWAY_PUBLIC_KEY = VECTORS["gateway_public_key_b64der"]
    settings.CODEPAY_GATEWAY_PUBLIC_KEY_FILE = ""
    settings.CODEPAY_NEXT_GATEWAY_PUBLIC_KEY = ""
    settings.CODEPAY_BASIC_AUTH_USER = "sandbox-user"
    settings.CODEPAY_BASIC_AUTH_PASSWORD = "sandbox-pass"
    settings.CODEPAY_NOTIFY_URL = ""
    settings.CODEPAY_CONNECT_TIMEOUT = 2.0
    settings.CODEPAY_READ_TIMEOUT = 2.0
    gateway_clients_reset()
    yield settings
    gateway_clients_reset()


@pytest.fixture
def account(db, codepay_settings):
    from payments.services.accounts import merchant_account_sync_default

    return merchant_account_sync_default()


@pytest.fixture
def api_key(account):
    """(ApiKey, plain key) for the default account, all stores."""
    from payments.services.accounts import api_key_create

    return api_key_create(name="pos-1", account=account)


class ApiClient:
    """A store system calling the service over real HTTP."""

    def __init__(self, base_url: str, key: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Api-Key {key}"

    def get(self, path, **kwargs):
        return self.session.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path, json=None, idempotency_key=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self.session.post(self.base_url + path, json=json, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def api(live_server, api_key):
    """The REST API over real HTTP, authenticated with a key of the default account."""
    return ApiClient(live_server.url, api_key[1])


@pytest.fixture
def make_api_client(live_server):
    def make(key: str) -> ApiClient:
        return ApiClient(live_server.url, key)

    return make


@pytest.fixture
def sandbox_control(sandbox):
    """Play the terminal or the customer through the sandbox's control API."""

    class Control:
        def pay(self, merchant_order_no, **body):
            response = requests.post(
                f"{sandbox.base_url}/sandbox/orders/{merchant_order_no}/pay", json=body, timeout=10
            )
            assert response.status_code == 200, response.text
            return response.json()

        def post(self, path, body=None):
            return requests.post(f"{sandbox.base_url}/sandbox/{path.lstrip('/')}", json=body or {}, timeout=10)

        def get(self, path):
            return requests.get(f"{sandbox.base_url}/sandbox/{path.lstrip('/')}", timeout=10)

        def fault(self, **body):
            response = requests.post(f"{sandbox.base_url}/sandbox/faults", json=body, timeout=10)
            assert response.status_code in (200, 201), response.text

        def notification_fault(self, **body):
            response = requests.post(f"{sandbox.base_url}/sandbox/notification-faults", json=body, timeout=10)
            assert response.status_code in (200, 201), response.text

    control = Control()
    yield control
    requests.delete(f"{sandbox.base_url}/sandbox/faults", timeout=10)


# --- SQLite, make run's embedded database ------------------------------------------------------------


def run_on_fresh_sqlite(module: str, folder: Path) -> tuple[dict, str]:
    """
    Run ``python -m module`` against a new SQLite database in ``folder`` (the module migrates it) and answer
    the JSON it printed last and its stderr; fails with the stderr's end if the module failed.
    """
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "DJANGO_SECRET_KEY": "sqlite-check",
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr
