"""
Benchmark: notification intake latency with 200 store systems waiting on orders (``?wait=60``), and how
fast the waiters wake once their orders are paid.

    python tests/benchmarks/bench_wait.py --waiters 200 --deliveries 1000

The script sets Django up itself, creates its own database (``<DATABASE_URL name>_bench``, dropped at the
end), serves the WSGI application (the notification receiver) with Django's threaded server, and starts
the ``waits`` process as the Procfile does (uvicorn serving ``codepay_service.asgi``, its own process).
It measures intake (signed notifications from 8 client threads) alone, then again while ``--waiters``
clients each hold a ``wait=60`` on their own pending order, then marks every order paid through the one
transition function and measures how long each waiter takes to get its answer. Ports: 18700-18799.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codepay_service.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-secret")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")

import django  # noqa: E402

VECTORS = json.loads((ROOT / "tests" / "fixtures" / "test-vectors.json").read_text())
PORTS = range(18700, 18800)


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 18700-18799")


def percentiles(seconds: list[float]) -> str:
    values = sorted(s * 1000 for s in seconds)

    def pct(p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    return f"p50 {statistics.median(values):.1f} p95 {pct(95):.1f} p99 {pct(99):.1f} max {values[-1]:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8, help="Concurrent notification senders.")
    args = parser.parse_args()

    django.setup()
    import logging

    logging.disable(logging.WARNING)
    from django.conf import settings
    from django.db import connection

    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CODEPAY_APP_ID, settings.CODEPAY_MERCHANT_NO = "wz6012822ca2f1as78", "302300000926"
    settings.CODEPAY_GATEWAY_PUBLIC_KEY = VECTORS["gateway_public_key_b64der"]
    settings.CODEPAY_PRIVATE_KEY = VECTORS["app_private_key_pem"]
    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"{settings.DATABASES['default']['NAME']}_bench"
    old_name = settings.DATABASES["default"]["NAME"]
    db_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    print(f"database {db_name} created and migrated; Redis {settings.CELERY_BROKER_URL}")
    try:
        run(args, db_name)
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        print(f"database {db_name} dropped")


def run(args, db_name: str) -> None:
    import redis
    import requests
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.db import transaction
    from django.utils import timezone

    from payments.gateway import signing
    from payments.models import Order, OrderStatus
    from payments.services.accounts import api_key_create, merchant_account_sync_default
    from payments.services.orders import order_transition
    from payments.services.waits import order_channel

    account = merchant_account_sync_default()
    _, key = api_key_create(name="bench", account=account)
    orders = [
        Order.objects.create(
            account=account,
            merchant_order_no=f"WAIT{n:06d}",
            channel="terminal",
            status=OrderStatus.PENDING,
            currency="USD",
            amount="10.00",
            description="bench",
            expires_at=timezone.now() + timezone.timedelta(minutes=10),
        )
        for n in range(args.waiters)
    ]

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    intake_port = free_port()
    server = ThreadedWSGIServer(("127.0.0.1", intake_port), QuietHandler)
    server.set_app(WSGIHandler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    intake_url = f"http://127.0.0.1:{intake_port}/webhooks/codepay/"

    waits_port = free_port()
    database_url = (
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/codepay").rsplit("/", 1)[0] + f"/{db_name}"
    )
    waits = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "codepay_service.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(waits_port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--timeout-keep-alive",
            "75",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{waits_port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the waits process did not start"
                time.sleep(0.2)
        measure(
            args,
            intake_url,
            f"http://127.0.0.1:{waits_port}",
            key,
            orders,
            redis.Redis.from_url(settings.CELERY_BROKER_URL),
            signing,
            requests,
            transaction,
            order_transition,
            order_channel,
            Order,
        )
    finally:
        waits.terminate()
        waits.wait(15)
        server.shutdown()


def measure(
    args,
    intake_url,
    waits_url,
    key,
    orders,
    redis_client,
    signing,
    requests,
    transaction,
    order_transition,
    order_channel,
    Order,
) -> None:
    gateway_key = signing.load_private_key(VECTORS["gateway_private_key_pem"])

    def bodies(prefix: str) -> list[str]:
        out = []
        for n in range(args.deliveries):
            fields = {
                "app_id": "wz6012822ca2f1as78",
                "merchant_no": "302300000926",
                "sign_type": "RSA2",
                "trans_no": f"5021{n:016d}",
                "merchant_order_no": f"{prefix}{n:08d}",
                "trans_type": "1",
                "trans_status": "2",
                "price_currency": "USD",
                "order_amount": "10.00",
                "paid_amount": "10.00",
            }
            fields["sign"] = signing.sign(fields, gateway_key)
            out.append(json.dumps(fields))
        return out

    session_local = threading.local()

    def send(body: str) -> tuple[float, bool]:
        session = getattr(session_local, "session", None) or requests.Session()
        session_local.session = session
        started = time.perf_counter()
        response = session.post(intake_url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        return time.perf_counter() - started, response.status_code == 200 and response.text == "success"

    def intake(label: str, prefix: str) -> None:
        payload = bodies(prefix)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            results = list(pool.map(send, payload))
        elapsed = time.perf_counter() - started
        print(
            f"intake {label}: {len(results)} deliveries in {elapsed:.1f}s = {len(results) / elapsed:.0f}/s, "
            f"acknowledged {sum(ok for _, ok in results)}; latency {percentiles([s for s, _ in results])}"
        )

    intake("alone", "ALONE")

    answers: dict[int, tuple[float, str]] = {}
    lock = threading.Lock()

    def wait(order) -> None:
        with requests.Session() as session:
            response = session.get(
                f"{waits_url}/api/v1/orders/{order.merchant_order_no}/",
                params={"wait": 60},
                headers={"Authorization": f"Api-Key {key}"},
                timeout=90,
            )
        with lock:
            answers[order.pk] = (time.perf_counter(), response.json().get("status", str(response.status_code)))

    threads = [threading.Thread(target=wait, args=(order,), daemon=True) for order in orders]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    channels = [order_channel(order.pk) for order in orders]
    while sum(count for _, count in redis_client.pubsub_numsub(*channels)) < len(orders):
        assert time.perf_counter() - started < 60, "waiters did not all subscribe"
        time.sleep(0.1)
    print(f"{len(orders)} waiters subscribed in {time.perf_counter() - started:.1f}s (wait=60 each)")

    intake(f"with {len(orders)} waiters", "BESIDE")
    still_waiting = len(orders) - len(answers)
    print(f"waiters still waiting after the intake run: {still_waiting} of {len(orders)}")

    paid_at: dict[int, float] = {}
    for order in orders:
        with transaction.atomic():
            locked = Order.objects.select_for_update().get(pk=order.pk)
            order_transition(locked, "succeeded", source="bench")
        paid_at[order.pk] = time.perf_counter()
    for thread in threads:
        thread.join(90)
    woke = [answers[pk][0] - paid_at[pk] for pk in paid_at if pk in answers and answers[pk][1] == "succeeded"]
    print(
        f"waiters answered 'succeeded' after their order was paid: {len(woke)} of {len(orders)}; "
        f"commit-to-answer {percentiles(woke)}"
    )


if __name__ == "__main__":
    main()
