"""
Benchmark: one reconciliation pass over many due orders, against the in-process sandbox over real HTTP.

    make bench                                   # 10,000 orders, one worker, no rate limit
    python tests/benchmarks/bench_reconcile.py --orders 2000 --workers 2 --qps 0

It sets Django up itself, creates its own database (``<DATABASE_URL name>_bench``, dropped at the end),
and seeds both sides:

- our side with ``bulk_create`` (orders ``pending`` and due, their merchant_order_no reservations);
- the sandbox's side through its Python state (``SandboxState.add`` / ``pay``) kept on disk, because
  creating orders through the client costs a signed HTTP round trip each; the rate of that path is
  measured on a small sample and printed, so the choice can be checked.

Then the sandbox runs as its own process (``manage.py codepay_sandbox --state-dir``) with the published
test keys, as a gateway is another machine: in this process its signing would share the interpreter lock
with the pass. The pass runs in ``CODEPAY_RECONCILE_THREADS`` threads (4), as the periodic task runs it.

The mix: 60 % paid at the gateway (the pass moves them to succeeded), 30 % still waiting (rescheduled),
10 % never received by the gateway (E04111, kept unknown within the grace period). Reported: orders per
second of the pass, database queries per order (every query of the pass, counted on each worker's
connection), and gateway calls. ``--qps`` > 0 paces the pass with the shared Redis limiter, as the
periodic task does (then the pace, not the code, sets the rate).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codepay_service.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-secret")

import django  # noqa: E402

APP_ID = "wz6012822ca2f1as78"
MERCHANT_NO = "302300000926"
STORE_NO = "4021000008"
TERMINAL_SN = "WPYB002248000865"
VECTORS = json.loads((ROOT / "tests" / "fixtures" / "test-vectors.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Passes running at once, each in its own thread (default: CODEPAY_RECONCILE_THREADS, as the task).",
    )
    parser.add_argument("--qps", type=float, default=0.0, help="Shared Redis rate limit; 0: none.")
    parser.add_argument(
        "--client-sample", type=int, default=200, help="Orders created through the client to time that path."
    )
    parser.add_argument("--keep-db", action="store_true", help="Leave the benchmark database in place.")
    args = parser.parse_args()

    django.setup()
    logging.disable(logging.INFO)
    from django.conf import settings
    from django.db import connection

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"{settings.DATABASES['default']['NAME']}_bench"
    old_name = settings.DATABASES["default"]["NAME"]
    if args.workers is None:
        args.workers = settings.CODEPAY_RECONCILE_THREADS
    db_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    print(f"database {db_name} created and migrated")
    state_dir = Path(tempfile.mkdtemp(prefix="codepay-bench-sandbox-"))
    sandbox = start_sandbox(state_dir)
    try:
        configure(settings, sandbox.base_url, args.qps)
        run(args, sandbox, state_dir)
    finally:
        sandbox.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        if not args.keep_db:
            connection.creation.destroy_test_db(old_name, verbosity=0)
            print(f"database {db_name} dropped")


def start_sandbox(state_dir: Path):
    from payments.gateway import signing
    from payments.sandbox.server import SandboxApp, SandboxGateway

    return SandboxGateway(
        state_dir=str(state_dir),
        gateway_private_key=signing.load_private_key(VECTORS["gateway_private_key_pem"]),
        apps=[
            SandboxApp(
                app_id=APP_ID,
                merchant_no=MERCHANT_NO,
                public_key=signing.load_private_key(VECTORS["app_private_key_pem"]).public_key(),
            )
        ],
        host="127.0.0.1",
        port=0,
    ).start()


def configure(settings, base_url: str, qps: float) -> None:
    settings.CODEPAY_BASE_URL = base_url
    settings.CODEPAY_APP_ID = APP_ID
    settings.CODEPAY_MERCHANT_NO = MERCHANT_NO
    settings.CODEPAY_STORE_NO = STORE_NO
    settings.CODEPAY_SIGN_TYPE = "RSA2"
    settings.CODEPAY_PRIVATE_KEY = VECTORS["app_private_key_pem"]
    settings.CODEPAY_GATEWAY_PUBLIC_KEY = VECTORS["gateway_public_key_b64der"]
    settings.CODEPAY_NOTIFY_URL = ""
    settings.CODEPAY_MAX_QPS = qps


def time_client_creates(account, count: int) -> float:
    """Orders per second when created the normal way: a signed call to the gateway each."""
    from payments.models import Channel
    from payments.services.orders import order_create

    started = time.perf_counter()
    for _ in range(count):
        order_create(
            account=account,
            api_key=None,
            channel=Channel.TERMINAL,
            amount=Decimal("1.00"),
            currency="USD",
            description="sample",
            terminal_sn=TERMINAL_SN,
        )
    return count / (time.perf_counter() - started)


def seed(account, sandbox, count: int) -> dict[str, int]:
    """``count`` due pending orders here; 90 % of them exist at the gateway, two thirds of those paid."""
    from django.utils import timezone

    from payments.gateway.methods import TransType
    from payments.models import Channel, MerchantOrderNumber, Order, OrderStatus
    from payments.sandbox.transactions import Channel as SandboxChannel

    now = timezone.now()
    mix = {"paid": 0, "waiting": 0, "never_received": 0}
    orders, numbers = [], []
    for n in range(count):
        merchant_order_no = f"BENCH{n:08d}"
        kind = ("paid",) * 6 + ("waiting",) * 3 + ("never_received",)
        kind = kind[n % 10]
        mix[kind] += 1
        trans_no = ""
        if kind != "never_received":
            trans_no = sandbox.state.add(
                app_id=APP_ID,
                merchant_no=MERCHANT_NO,
                merchant_order_no=merchant_order_no,
                trans_type=TransType.SALE,
                channel=SandboxChannel.TERMINAL,
                price_currency="USD",
                order_amount=Decimal("12.50"),
                expires=3600,
                store_no=STORE_NO,
                terminal_sn=TERMINAL_SN,
            )["trans_no"]
            if kind == "paid":
                sandbox.state.pay(merchant_order_no, merchant_no=MERCHANT_NO)
        numbers.append(MerchantOrderNumber(account=account, merchant_order_no=merchant_order_no, kind="order"))
        orders.append(
            Order(
                account=account,
                merchant_order_no=merchant_order_no,
                channel=Channel.TERMINAL,
                status=OrderStatus.PENDING if trans_no else OrderStatus.UNKNOWN,
                currency="USD",
                amount=Decimal("12.50"),
                description="bench",
                store_no=STORE_NO,
                terminal_sn=TERMINAL_SN,
                trans_no=trans_no,
                expires_in=3600,
                # As the create's answer left it (trans_status 9, created).
                gateway_trans_status="9" if trans_no else "",
                expires_at=now + timedelta(hours=1),
                next_check_at=now - timedelta(seconds=1),
            )
        )
    MerchantOrderNumber.objects.bulk_create(numbers, batch_size=2000)
    Order.objects.bulk_create(orders, batch_size=2000)
    return mix


class SandboxProcess:
    """The sandbox as its own process on the seeded state, until ``stop()``."""

    def __init__(self, state_dir: Path, port: int):
        (state_dir / "app.pem").write_text(VECTORS["app_private_key_pem"])
        (state_dir / "gateway.pem").write_text(VECTORS["gateway_private_key_pem"])
        env = {
            **os.environ,
            "CODEPAY_APP_ID": APP_ID,
            "CODEPAY_MERCHANT_NO": MERCHANT_NO,
            "CODEPAY_PRIVATE_KEY": "",
            "CODEPAY_PRIVATE_KEY_FILE": str(state_dir / "app.pem"),
            "CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE": str(state_dir / "gateway.pem"),
            "CODEPAY_BASIC_AUTH_USER": "",
            "CODEPAY_BASIC_AUTH_PASSWORD": "",
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "manage.py", "codepay_sandbox", "--port", str(port), "--state-dir", str(state_dir)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox process did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def run(args, sandbox, state_dir: Path) -> None:
    from django.db import connection

    from payments.models import GatewayCall, Order
    from payments.ratelimit import gateway_rate_limiter
    from payments.services.accounts import merchant_account_sync_default
    from payments.services.reconcile import reconciliation_run

    account = merchant_account_sync_default()
    client_rate = time_client_creates(account, args.client_sample) if args.client_sample else 0.0
    Order.objects.all().delete()
    GatewayCall.objects.all().delete()
    sandbox.reset()

    started = time.perf_counter()
    mix = seed(account, sandbox, args.orders)
    seeded_in = time.perf_counter() - started
    connection.close()
    # The seeded state is on disk: the same port now answers from a process of its own.
    port = int(sandbox.base_url.rsplit(":", 1)[1].split("/")[0])
    sandbox.stop()
    gateway = SandboxProcess(state_dir, port)

    throttle = gateway_rate_limiter() if args.qps > 0 else None
    results, errors = [], []

    def worker() -> None:
        queries = [0]

        def count(execute, sql, params, many, context):
            queries[0] += 1
            return execute(sql, params, many, context)

        try:
            with connection.execute_wrapper(count):
                report = reconciliation_run(throttle=throttle, chunk_size=100)
            results.append((report, queries[0]))
        except Exception as exc:  # printed below
            errors.append(exc)
        finally:
            connection.close()

    started = time.perf_counter()
    if args.workers == 1:
        worker()
    else:
        threads = [threading.Thread(target=worker) for _ in range(args.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elapsed = time.perf_counter() - started
    gateway.stop()
    if errors:
        raise errors[0]

    checked = sum(report.orders_checked for report, _ in results)
    queries = sum(q for _, q in results)
    changed = sum(len(report.changes) for report, _ in results)
    failed_checks = sum(report.errors for report, _ in results)
    calls = GatewayCall.objects.count()
    print(
        f"seeded {args.orders} due orders in {seeded_in:.1f}s {mix} "
        f"(through the client: {client_rate:.0f} orders/s, so {args.orders / client_rate:.0f}s for all)"
        if client_rate
        else f"seeded {args.orders} due orders in {seeded_in:.1f}s {mix}"
    )
    print(
        f"pass: {checked} orders checked by {args.workers} worker(s) in {elapsed:.1f}s = {checked / elapsed:.0f} "
        "orders/s; "
        f"{queries} database queries = {queries / checked:.2f} per order; {calls} gateway calls; "
        f"{changed} status changes; {failed_checks} checks failed; rate limit: "
        f"{f'{args.qps:g}/s' if args.qps else 'none'}"
    )


if __name__ == "__main__":
    main()
