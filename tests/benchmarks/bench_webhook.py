"""
Benchmark: how fast the notification receiver stores and acknowledges deliveries, over real HTTP.

    python tests/benchmarks/bench_webhook.py --deliveries 2000 [--broker-down]

CodePay counts a delivery as failed unless it reads ``success`` within 5 s, so what matters is the
latency of one acknowledgement under load. The script sets Django up itself, creates its own database
(``<DATABASE_URL name>_bench``, dropped at the end), serves the WSGI application on a free port with
Django's threaded server, and posts signed notifications (the published gateway test key) from several
client threads. Reported: deliveries per second and latency percentiles, with the broker up (Redis at
CELERY_BROKER_URL) or, with ``--broker-down``, pointing at a closed port.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8, help="Concurrent senders.")
    parser.add_argument("--broker-down", action="store_true")
    args = parser.parse_args()
    if args.broker_down:
        os.environ["CELERY_BROKER_URL"] = "redis://127.0.0.1:1/0"

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
    print(f"database {db_name} created and migrated; broker {'down' if args.broker_down else settings.CELERY_BROKER_URL}")
    try:
        run(args)
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        print(f"database {db_name} dropped")


def run(args) -> None:
    import requests
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    from payments.gateway import signing
    from payments.services.accounts import merchant_account_sync_default
    from webhooks.models import NotificationDelivery

    merchant_account_sync_default()

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(WSGIHandler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/webhooks/codepay/"

    gateway_key = signing.load_private_key(VECTORS["gateway_private_key_pem"])
    bodies = []
    for n in range(args.deliveries):
        fields = {
            "app_id": "wz6012822ca2f1as78", "merchant_no": "302300000926", "sign_type": "RSA2",
            "trans_no": f"5021{n:016d}", "merchant_order_no": f"BENCH{n:010d}", "trans_type": "1", "trans_status": "2",
            "price_currency": "USD", "order_amount": "10.00", "paid_amount": "10.00",
        }
        fields["sign"] = signing.sign(fields, gateway_key)
        bodies.append(json.dumps(fields))

    session_local = threading.local()

    def send(body: str) -> tuple[float, int, str]:
        session = getattr(session_local, "session", None) or requests.Session()
        session_local.session = session
        started = time.perf_counter()
        response = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        return time.perf_counter() - started, response.status_code, response.text

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        results = list(pool.map(send, bodies))
    elapsed = time.perf_counter() - started
    server.shutdown()

    latencies = sorted(r[0] * 1000 for r in results)
    acknowledged = sum(1 for _, status, text in results if status == 200 and text == "success")
    stored = NotificationDelivery.objects.count()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    print(
        f"{args.deliveries} deliveries from {args.clients} clients in {elapsed:.1f}s = {args.deliveries / elapsed:.0f}/s; "
        f"acknowledged 'success': {acknowledged}; stored: {stored}; latency ms p50 {statistics.median(latencies):.1f} "
        f"p95 {pct(95):.1f} p99 {pct(99):.1f} max {latencies[-1]:.1f}"
    )


if __name__ == "__main__":
    main()
