"""The sandbox keeps its transactions and call log on disk: a stopped or killed sandbox restarts knowing them."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from payments.gateway.methods import Method
from payments.sandbox.server import SandboxGateway
from tests.conftest import SANDBOX_APP_ID, SANDBOX_MERCHANT_NO, TEST_VECTORS, make_sandbox_gateway
from tests.payments.sandbox.helpers import CodePay, NotificationReceiver


def _gateway(state_dir: Path) -> SandboxGateway:
    return make_sandbox_gateway(state_dir=str(state_dir))


def test_a_restarted_sandbox_knows_every_order_refund_and_call(tmp_path):
    """Orders, their follow-ups, amounts, statuses and the call log survive a stop and start; new
    transaction numbers keep counting after the stored ones."""
    with _gateway(tmp_path) as first:
        codepay = CodePay(first.base_url)
        sale = codepay.paid_sale("KEEP-1", "10.00")
        refund = codepay.refund("KEEP-1", "KEEP-1-R1", "2.50")
        auth = codepay.terminal_order("KEEP-2", "20.00", trans_type="4")
        codepay.pay("KEEP-2")
        assert codepay.call(Method.INCREMENTAL_AUTH, trans_no=auth.data["trans_no"], trans_amount="5.00").code == "0"
        assert codepay.terminal_order("KEEP-3", "7.00").code == "0"
        before = {no: codepay.order_view(no) for no in ("KEEP-1", "KEEP-1-R1", "KEEP-2", "KEEP-3")}
        calls_before = requests.get(f"{first.base_url}/sandbox/calls", timeout=5).json()["calls"]

    with _gateway(tmp_path) as second:
        codepay = CodePay(second.base_url)
        after = {no: codepay.order_view(no) for no in before}
        calls_after = requests.get(f"{second.base_url}/sandbox/calls", timeout=5).json()["calls"]
        too_much = codepay.refund("KEEP-1", "KEEP-1-R2", "7.51")
        rest = codepay.refund("KEEP-1", "KEEP-1-R3", "7.50")
        next_order = codepay.terminal_order("KEEP-4", "1.00")

    assert after == before
    assert after["KEEP-1"]["follow_ups"] == ["KEEP-1-R1"]
    assert (after["KEEP-1"]["trans_no"], after["KEEP-1"]["trans_status"]) == (sale["trans_no"], "2")
    assert (after["KEEP-1-R1"]["trans_no"], after["KEEP-1-R1"]["order_amount"]) == (refund.data["trans_no"], "2.50")
    assert (after["KEEP-2"]["trans_amount"], after["KEEP-3"]["trans_status"]) == ("25.00", "9")
    assert calls_after == calls_before
    assert (too_much.code, rest.code) == ("E04132", "0")
    serials = [int(view["trans_no"][-16:]) for view in after.values()]
    assert int(next_order.data["trans_no"][-16:]) > max(serials)


def test_a_killed_sandbox_process_restarts_with_its_orders_and_delivers_what_it_had_not(tmp_path, settings):
    """``manage.py codepay_sandbox --state-dir`` killed with SIGKILL and started again still knows a paid
    order, and delivers its notification, which the receiver was refusing before the kill."""
    state_dir = tmp_path / "state"
    key_file = tmp_path / "gateway.pem"
    key_file.write_text(TEST_VECTORS["gateway_private_key_pem"])
    app_key_file = tmp_path / "app.pem"
    app_key_file.write_text(TEST_VECTORS["app_private_key_pem"])
    port = _free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SECRET_KEY": "test-only-not-secret",
        "CODEPAY_APP_ID": SANDBOX_APP_ID,
        "CODEPAY_MERCHANT_NO": SANDBOX_MERCHANT_NO,
        "CODEPAY_PRIVATE_KEY_FILE": str(app_key_file),
        "CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE": str(key_file),
    }
    command = [
        sys.executable,
        "manage.py",
        "codepay_sandbox",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        "--notification-schedule-scale",
        "100",
    ]
    refusing = NotificationReceiver(((500, "busy"),))
    sandbox = subprocess.Popen(command, env=env, cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL)
    try:
        codepay = CodePay(f"http://127.0.0.1:{port}")
        _wait_until_up(codepay)
        assert codepay.terminal_order("KILL-1", "3.00", notify_url=refusing.url).code == "0"
        codepay.pay("KILL-1")
        # The first try is refused; the next is 500 s away at this scale, so the kill comes first.
        refusing.wait_for(1)
        sandbox.send_signal(signal.SIGKILL)
        sandbox.wait(timeout=10)
        sandbox = subprocess.Popen(command, env=env, cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL)
        _wait_until_up(codepay)
        view = codepay.order_view("KILL-1")
        bodies = refusing.wait_for(2)
    finally:
        sandbox.send_signal(signal.SIGKILL)
        sandbox.wait(timeout=10)
        refusing.close()

    assert (view["trans_status"], view["trans_amount"]) == ("2", "3.00")
    assert [body["trans_status"] for body in bodies] == ["2", "2"]
    assert bodies[1]["trans_no"] == view["trans_no"]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(codepay: CodePay, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(f"{codepay.base_url}/sandbox/calls", timeout=1)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                pytest.fail("the sandbox did not start")
            time.sleep(0.1)
