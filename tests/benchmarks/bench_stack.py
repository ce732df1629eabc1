"""
Benchmark: the service's own processes side by side with the bare stack, in one run, with the ratios.

    make bench                                       # every figure below; writes docs/benchmarks.md
    make bench-memory                                # RSS after 10,000 and 100,000 intakes
    python tests/benchmarks/bench_stack.py --seconds 5 --no-write   # a quick look

What runs, each as its own process, as in production: the sandbox gateway (``manage.py codepay_sandbox``),
the web server (the Procfile's ``gunicorn`` command line and defaults, bound to 127.0.0.1), the Celery
worker (the Procfile's command line), and for the intake baseline a second gunicorn with the same settings
serving ``tests/benchmarks/bare_app.py`` (one view inserting the raw body). They use their own database
(``<DATABASE_URL name>_bench_stack``, dropped at the end), the Redis at CELERY_BROKER_URL, and ports from
``--port-base`` (default 18400) up.

Figures, each next to its baseline measured in the same run, in alternating rounds so that other load on
the machine falls on both sides alike:

- create a terminal sale, ``POST /api/v1/orders/``, at concurrency 8 (throughput) and 1 (added p50),
  against a raw client (``CodePayClient``, no database) signing the same CodePay request and posting it
  to the same sandbox;
- notification intake at concurrency 8 against the bare insert view;
- acknowledgement latency with the broker down (a web server whose broker URL is a closed port), and
  while every gateway call takes 5 s (8 creates stuck on the gateway meanwhile; the worker's confirmation
  queries take 5 s too);
- web and worker RSS after two counts of intakes (``--memory``);
- a reconciliation pass over 10,000 due orders with the rate limit lifted (``bench_reconcile.py``).

The API throttle is lifted for the run (``API_THROTTLE_RATE``): it limits a store system, not the code path.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
VECTORS = json.loads((ROOT / "tests" / "fixtures" / "test-vectors.json").read_text())
APP_ID = "wz6012822ca2f1as78"
MERCHANT_NO = "302300000926"
STORE_NO = "4021000008"
TERMINAL_SN = "WPYB002248000865"
DOC = ROOT / "docs" / "benchmarks.md"


# --- Processes ------------------------------------------------------------------------------------------


def procfile_command(name: str) -> str:
    """The Procfile's command for ``name``, from its server on (the web line migrates first)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            command = line.split(":", 1)[1].strip()
            return command[command.index("exec ") + 5 :] if "exec " in command else command
    raise SystemExit(f"Procfile has no {name} process")


class Processes:
    def __init__(self, logs: Path):
        self.logs = logs
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: str, env: dict[str, str], port: int | None = None) -> subprocess.Popen:
        if port is not None:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    raise SystemExit(f"port {port} is taken; stop what listens there or pass --port-base")
        # The child holds its own copy of the log's descriptor; ours can close once it has started.
        with open(self.logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running[name] = process
        if port is not None:
            wait_for_port(port, process, self.logs / f"{name}.log")
        return process

    def stop(self, name: str) -> None:
        process = self.running.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process on port {port} exited; see {log}:\n{log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s; see {log}")


def rss_mib(pid: int, *, children: bool) -> float:
    """Resident memory of a process, or of its children (gunicorn's workers, Celery's pool) plus itself."""
    pids = [pid]
    if children:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry.name))
    total = 0
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# --- Load -----------------------------------------------------------------------------------------------


@dataclass
class Run:
    latencies_ms: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    failures: int = 0
    sample_failure: str = ""

    def add(self, other: Run) -> None:
        self.latencies_ms += other.latencies_ms
        self.elapsed += other.elapsed
        self.failures += other.failures
        self.sample_failure = self.sample_failure or other.sample_failure

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        if p == 50:
            return statistics.median(ordered)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def text(self) -> str:
        failed = f", {self.failures} failed ({self.sample_failure[:80]})" if self.failures else ""
        return (
            f"{len(self.latencies_ms)} in {self.elapsed:.1f}s = {self.rate:.0f}/s, "
            f"p50 {self.pct(50):.1f} ms, p99 {self.pct(99):.1f} ms{failed}"
        )


def drive(call, *, concurrency: int, seconds: float | None = None, count: int | None = None) -> Run:
    """
    ``call(worker_index, n)`` from ``concurrency`` threads until ``seconds`` pass or ``count`` calls are
    made; it returns None on success or a failure text. Latency is measured around each call.
    """
    run = Run()
    lock = threading.Lock()
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds if seconds else None

    def worker(index: int) -> None:
        while True:
            with lock:
                n = next(counter)
            if (count is not None and n >= count) or (deadline is not None and time.monotonic() >= deadline):
                return
            started = time.perf_counter()
            try:
                failure = call(index, n)
            except Exception as exc:  # counted and shown, the run goes on
                failure = f"{type(exc).__name__}: {exc}"
            took = (time.perf_counter() - started) * 1000
            with lock:
                if failure:
                    run.failures += 1
                    run.sample_failure = run.sample_failure or failure
                else:
                    run.latencies_ms.append(took)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    run.elapsed = time.perf_counter() - started
    return run


class Http:
    """One keep-alive HTTP/1.1 connection per thread and host: the cheapest client Python has."""

    def __init__(self):
        self.local = threading.local()

    def post(self, port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        connections = self.local.__dict__.setdefault("connections", {})
        for attempt in range(2):
            connection = connections.get(port)
            if connection is None:
                connection = connections[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                connections.pop(port, None)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def alternate(rounds: int, sides: dict[str, callable]) -> dict[str, Run]:
    """Run each side once per round, in turn, and add up the rounds."""
    totals = {name: Run() for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            totals[name].add(side())
    return totals


# --- The bench ------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.http = Http()
        self.tmp = Path(tempfile.mkdtemp(prefix="codepay-bench-"))
        self.processes = Processes(self.tmp)
        base = args.port_base
        self.ports = {"sandbox": base, "web": base + 1, "bare": base + 2, "web_broker_down": base + 3}
        self.results: list[tuple[str, str, str, str, str]] = []  # figure, service, baseline, ratio, target
        self.notes: list[str] = []
        self.database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/codepay")
        url = urlsplit(self.database_url)
        self.admin_url = urlunsplit(url._replace(path="/postgres"))
        self.db_name = f"{url.path.lstrip('/')}_bench_stack"
        self.db_url = urlunsplit(url._replace(path=f"/{self.db_name}"))
        self.order_seq = iter(range(10**9))
        self.profiles: dict[str, Path] = {}
        self.seq_lock = threading.Lock()

    # Set-up -----------------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        (self.tmp / "app.pem").write_text(VECTORS["app_private_key_pem"])
        (self.tmp / "gateway.pem").write_text(VECTORS["gateway_private_key_pem"])
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "DJANGO_SETTINGS_MODULE": "codepay_service.settings",
            "DJANGO_SECRET_KEY": "bench-only-not-secret",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.db_url,
            "CODEPAY_BASE_URL": f"http://127.0.0.1:{self.ports['sandbox']}",
            "CODEPAY_APP_ID": APP_ID,
            "CODEPAY_MERCHANT_NO": MERCHANT_NO,
            "CODEPAY_STORE_NO": STORE_NO,
            "CODEPAY_PRIVATE_KEY_FILE": str(self.tmp / "app.pem"),
            "CODEPAY_GATEWAY_PUBLIC_KEY": VECTORS["gateway_public_key_b64der"],
            "CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE": str(self.tmp / "gateway.pem"),
            "CODEPAY_NOTIFY_URL": "",
            "API_THROTTLE_RATE": "100000000/minute",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env

    def database_create(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{self.db_name}"')
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env(), check=True
        )
        os.environ.update(
            {k: v for k, v in self.env().items() if k.startswith(("DJANGO_", "CODEPAY_", "DATABASE_URL"))}
        )
        import logging

        import django

        django.setup()
        logging.disable(logging.WARNING)
        from django.db import connection

        from tests.benchmarks.bare_app import CREATE_TABLE

        with connection.cursor() as cursor:
            cursor.execute(CREATE_TABLE)

    def database_drop(self) -> None:
        import psycopg
        from django.db import connections

        connections.close_all()
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def start(self) -> None:
        env = self.env()
        self.processes.start(
            "sandbox",
            f"{shlex.quote(sys.executable)} manage.py codepay_sandbox --port {self.ports['sandbox']}",
            env,
            port=self.ports["sandbox"],
        )
        web = procfile_command("web").replace("0.0.0.0", "127.0.0.1")
        self.processes.start("web", web, {**env, "PORT": str(self.ports["web"])}, port=self.ports["web"])
        bare = web.replace("codepay_service.wsgi:application", "tests.benchmarks.bare_app:application")
        self.processes.start(
            "bare",
            bare,
            {**env, "PORT": str(self.ports["bare"]), "DJANGO_SETTINGS_MODULE": "tests.benchmarks.bare_app"},
            port=self.ports["bare"],
        )
        self.processes.start("worker", procfile_command("worker"), env)
        from payments.models import ApiKey
        from payments.services.accounts import merchant_account_sync_default

        account = merchant_account_sync_default()
        _, self.api_key = ApiKey.objects.create_key(name="bench", account=account)
        self.account = account

    # Create -----------------------------------------------------------------------------------------

    def next_order_no(self, prefix: str) -> str:
        with self.seq_lock:
            return f"{prefix}{next(self.order_seq):09d}"

    def service_create(self, index: int, n: int) -> str | None:
        body = {
            "channel": "terminal",
            "amount": "1.00",
            "currency": "USD",
            "description": "bench",
            "terminal_sn": TERMINAL_SN,
            "merchant_order_no": self.next_order_no("SVC"),
        }
        status, answer = self.http.post(
            self.ports["web"],
            "/api/v1/orders/",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Api-Key {self.api_key}"},
        )
        return None if status == 201 else f"HTTP {status}: {answer[:120]!r}"

    def raw_clients(self):
        from payments.gateway import signing
        from payments.gateway.client import CodePayClient

        local = threading.local()
        private_key = signing.load_private_key(VECTORS["app_private_key_pem"])
        public_key = signing.load_public_key(VECTORS["gateway_public_key_b64der"])

        def client():
            if not hasattr(local, "client"):
                local.client = CodePayClient(
                    base_url=f"http://127.0.0.1:{self.ports['sandbox']}",
                    app_id=APP_ID,
                    merchant_no=MERCHANT_NO,
                    private_key=private_key,
                    gateway_public_key=public_key,
                    read_timeout=60,
                )
            return local.client

        return client

    def raw_create(self, client):
        def call(index: int, n: int) -> str | None:
            client().create_cloud_order(
                merchant_order_no=self.next_order_no("RAW"),
                terminal_sn=TERMINAL_SN,
                trans_type="1",
                amount=Decimal("1.00"),
                currency="USD",
                description="bench",
                expires=300,
                store_no=STORE_NO,
            )
            return None

        return call

    def bench_create(self) -> None:
        client = self.raw_clients()
        raw = self.raw_create(client)
        drive(self.service_create, concurrency=8, count=40)  # warm both sides: connections, caches, keys
        drive(raw, concurrency=8, count=40)
        rounds, seconds = self.args.rounds, self.args.seconds
        c8 = alternate(
            rounds,
            {
                "raw": lambda: drive(raw, concurrency=8, seconds=seconds / rounds),
                "service": lambda: self.profiled(
                    "create", lambda: drive(self.service_create, concurrency=8, seconds=seconds / rounds)
                ),
            },
        )
        ratio = c8["service"].rate / c8["raw"].rate
        self.record(
            "create a terminal sale, concurrency 8", c8["service"], c8["raw"], f"{ratio:.2f}x throughput", ">= 0.4x"
        )
        count = max(50, int(self.args.seconds * 10))
        c1 = alternate(
            rounds,
            {
                "raw": lambda: drive(raw, concurrency=1, count=count // rounds),
                "service": lambda: drive(self.service_create, concurrency=1, count=count // rounds),
            },
        )
        added = c1["service"].pct(50) - c1["raw"].pct(50)
        self.record(
            "create a terminal sale, concurrency 1", c1["service"], c1["raw"], f"+{added:.1f} ms p50", "<= +10 ms p50"
        )

    # Intake -----------------------------------------------------------------------------------------

    def seed_orders(self, count: int) -> list[tuple[str, str]]:
        """``count`` pending terminal orders to be notified about: (merchant_order_no, trans_no)."""
        from django.utils import timezone

        from payments.models import Channel, MerchantOrderNumber, Order, OrderStatus

        start = Order.objects.count()
        now = timezone.now()
        pairs = [(f"NTF{start + n:09d}", f"5021{start + n:016d}") for n in range(count)]
        for offset in range(0, count, 5000):
            chunk = pairs[offset : offset + 5000]
            MerchantOrderNumber.objects.bulk_create(
                [MerchantOrderNumber(account=self.account, merchant_order_no=no, kind="order") for no, _ in chunk]
            )
            Order.objects.bulk_create(
                [
                    Order(
                        account=self.account,
                        merchant_order_no=no,
                        channel=Channel.TERMINAL,
                        status=OrderStatus.PENDING,
                        currency="USD",
                        amount=Decimal("10.00"),
                        description="bench",
                        store_no=STORE_NO,
                        terminal_sn=TERMINAL_SN,
                        trans_no=trans_no,
                        expires_in=3600,
                        expires_at=now + timezone.timedelta(hours=1),
                        next_check_at=now + timezone.timedelta(hours=1),
                    )
                    for no, trans_no in chunk
                ]
            )
        return pairs

    @staticmethod
    def notification(merchant_order_no: str, trans_no: str, trans_status: str = "0") -> bytes:
        from payments.gateway import signing

        key = _gateway_key()
        fields = {
            "app_id": APP_ID,
            "merchant_no": MERCHANT_NO,
            "sign_type": "RSA2",
            "trans_no": trans_no,
            "merchant_order_no": merchant_order_no,
            "trans_type": "1",
            "trans_status": trans_status,
            "price_currency": "USD",
            "order_amount": "10.00",
        }
        fields["sign"] = signing.sign(fields, key)
        return json.dumps(fields).encode()

    def poster(self, port: int, path: str, bodies: list[bytes] | None = None, make=None):
        def call(index: int, n: int) -> str | None:
            body = bodies[n] if bodies is not None else make(n)
            status, answer = self.http.post(port, path, body, {"Content-Type": "application/json"})
            return None if status == 200 and answer == b"success" else f"HTTP {status}: {answer[:80]!r}"

        return call

    def bench_intake(self) -> None:
        per_round = self.args.deliveries // self.args.rounds
        pairs = self.seed_orders(per_round * self.args.rounds + 200)
        bodies = [self.notification(no, trans_no) for no, trans_no in pairs]
        service_path, bare_path = "/webhooks/codepay/", "/notify/"
        drive(self.poster(self.ports["web"], service_path, bodies[-200:]), concurrency=8, count=200)
        drive(self.poster(self.ports["bare"], bare_path, bodies[-200:]), concurrency=8, count=200)
        chunks = iter([bodies[r * per_round : (r + 1) * per_round] for r in range(self.args.rounds)])
        c8 = alternate(
            self.args.rounds,
            {
                "bare": lambda: drive(
                    self.poster(self.ports["bare"], bare_path, bodies), concurrency=8, count=per_round
                ),
                "service": lambda: self.profiled(
                    "intake",
                    lambda: drive(
                        self.poster(self.ports["web"], service_path, next(chunks)), concurrency=8, count=per_round
                    ),
                ),
            },
        )
        ratio = c8["service"].rate / c8["bare"].rate
        self.record(
            "notification intake, concurrency 8",
            c8["service"],
            c8["bare"],
            f"{ratio:.2f}x throughput; p99 {c8['service'].pct(99):.0f} ms",
            ">= 0.6x, p99 < 50 ms",
        )

    def bench_ack_broker_down(self) -> None:
        port = self.ports["web_broker_down"]
        web = procfile_command("web").replace("0.0.0.0", "127.0.0.1")
        self.processes.start(
            "web_broker_down", web, self.env(PORT=str(port), CELERY_BROKER_URL="redis://127.0.0.1:1/0"), port=port
        )
        try:
            pairs = self.seed_orders(self.args.ack_deliveries + 100)
            bodies = [self.notification(no, trans_no) for no, trans_no in pairs]
            # Warm the new server (its workers load the application on their first request), then measure.
            drive(self.poster(port, "/webhooks/codepay/", bodies[-100:]), concurrency=8, count=100)
            run = drive(self.poster(port, "/webhooks/codepay/", bodies), concurrency=8, count=len(bodies) - 100)
        finally:
            self.processes.stop("web_broker_down")
        self.record("acknowledgement, broker down, concurrency 8", run, None, f"p99 {run.pct(99):.0f} ms", "p99 < 1 s")

    def bench_ack_gateway_slow(self) -> None:
        import requests

        sandbox = f"http://127.0.0.1:{self.ports['sandbox']}"
        requests.post(
            f"{sandbox}/sandbox/faults", json={"fault": "latency", "method": "*", "seconds": 5, "rate": 1}, timeout=5
        ).raise_for_status()
        stop = threading.Event()
        creates = []

        def keep_creating(index: int) -> None:
            while not stop.is_set():
                creates.append(self.service_create(index, 0))

        blockers = [threading.Thread(target=keep_creating, args=(i,)) for i in range(8)]
        try:
            for thread in blockers:
                thread.start()
            time.sleep(1)
            pairs = self.seed_orders(self.args.ack_deliveries)
            # Final statuses: the worker confirms each by a query, which takes 5 s now.
            bodies = [self.notification(no, trans_no, trans_status="2") for no, trans_no in pairs]
            run = drive(self.poster(self.ports["web"], "/webhooks/codepay/", bodies), concurrency=8, count=len(bodies))
        finally:
            stop.set()
            for thread in blockers:
                thread.join()
            requests.delete(f"{sandbox}/sandbox/faults", timeout=5)
        self.record(
            "acknowledgement while gateway calls take 5 s, concurrency 8",
            run,
            None,
            f"p99 {run.pct(99):.0f} ms",
            f"p99 < 1 s ({len(creates)} creates held 8 web threads meanwhile)",
        )

    def bench_memory(self) -> None:
        first, second = self.args.memory
        web, worker = self.processes.running["web"], self.processes.running["worker"]
        from codepay_service.celery import app
        from webhooks.models import NotificationDelivery

        # The earlier phases' tasks still queued are dropped (their deliveries stay due for a sweep), so the
        # worker's figures are about these intakes only.
        app.control.purge()
        self.memory_after_id = NotificationDelivery.objects.order_by("-id").values_list("id", flat=True).first() or 0
        pairs = self.seed_orders(second)
        sender = self.poster(self.ports["web"], "/webhooks/codepay/", make=lambda n: self.notification(*pairs[n]))
        sent = 0
        figures = {}
        for target in (first, second):
            run = drive(lambda i, n, sent=sent: sender(i, n + sent), concurrency=8, count=target - sent)
            sent = target
            self.drain_worker()
            figures[target] = (rss_mib(web.pid, children=True), rss_mib(worker.pid, children=True), run)
        (web_a, worker_a, _), (web_b, worker_b, run_b) = figures[first], figures[second]
        label = f"RSS after {first:,} and {second:,} intakes"
        self.results.append(
            (
                f"{label}: web (gunicorn workers)",
                f"{web_a:.0f} MiB -> {web_b:.0f} MiB",
                "",
                f"{(web_b / web_a - 1) * 100:+.1f} %",
                "within 10 %",
            )
        )
        self.results.append(
            (
                f"{label}: worker (Celery, with its pool)",
                f"{worker_a:.0f} MiB -> {worker_b:.0f} MiB",
                "",
                f"{(worker_b / worker_a - 1) * 100:+.1f} %",
                "within 10 %",
            )
        )
        print(
            f"{label}: web {web_a:.0f} -> {web_b:.0f} MiB, worker {worker_a:.0f} -> {worker_b:.0f} MiB; last leg "
            f"{run_b.text()}",
            flush=True,
        )

    def drain_worker(self) -> None:
        """Wait until the worker has applied every delivery queued so far (at most ``--drain-seconds``)."""
        from webhooks.models import NotificationDelivery, ProcessingStatus

        timeout = self.args.drain_seconds
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            due = NotificationDelivery.objects.filter(status=ProcessingStatus.RECEIVED, id__gt=self.memory_after_id)
            if not due.exists():
                return
            time.sleep(1)
        left = NotificationDelivery.objects.filter(
            status=ProcessingStatus.RECEIVED, id__gt=self.memory_after_id
        ).count()
        self.notes.append(
            f"memory: {left} deliveries were still waiting for the worker when its RSS was read ({timeout:.0f} s "
            "allowed)"
        )

    # Reconciliation ---------------------------------------------------------------------------------

    def bench_reconcile(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.database_url}
        output = subprocess.run(
            [
                sys.executable,
                "tests/benchmarks/bench_reconcile.py",
                "--orders",
                str(self.args.reconcile_orders),
                "--client-sample",
                "0",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = next(line for line in output.splitlines() if line.startswith("pass:"))
        seconds = float(re.search(r"in ([\d.]+)s", line).group(1))
        per_order = float(re.search(r"= ([\d.]+) per order", line).group(1))
        rate = float(re.search(r"= (\d+) orders/s", line).group(1))
        self.results.append(
            (
                f"reconciliation of {self.args.reconcile_orders:,} due orders, rate limit lifted "
                "(the pass's threads as configured, the sandbox a process of its own)",
                f"{seconds:.1f} s ({rate:.0f} orders/s, {per_order:.2f} queries per order)",
                "",
                "",
                "< 60 s; <= 3 queries per order",
            )
        )
        print(line, flush=True)

    def profiled(self, name: str, measure):
        """``measure()``, sampled by py-spy across the web workers when ``--profile DIR`` is given (first round
        only)."""
        if not self.args.profile or name in self.profiles:
            return measure()
        self.args.profile.mkdir(parents=True, exist_ok=True)
        out = self.args.profile / f"{name}.txt"
        self.profiles[name] = out
        spy = subprocess.Popen(
            [
                str(BIN / "py-spy"),
                "record",
                "--subprocesses",
                "--nonblocking",
                *(["--gil"] if self.args.profile_cpu else []),
                "--rate",
                "100",
                "--format",
                "raw",
                "--pid",
                str(self.processes.running["web"].pid),
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        try:
            return measure()
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            print(f"profile of the web workers during {name}: {out}\n{profile_summary(out, top=25)}", flush=True)

    # Report -----------------------------------------------------------------------------------------

    def record(self, figure: str, service: Run, baseline: Run | None, ratio: str, target: str) -> None:
        self.results.append((figure, service.text(), baseline.text() if baseline else "", ratio, target))
        print(f"{figure}:\n  service:  {service.text()}", flush=True)
        if baseline is not None:
            print(f"  baseline: {baseline.text()}", flush=True)
        print(f"  => {ratio} (target {target})", flush=True)

    @property
    def markers(self) -> tuple[str, str]:
        """Each command's figures have their own place in docs/benchmarks.md."""
        return f"<!-- {self.args.section}: begin -->", f"<!-- {self.args.section}: end -->"

    def report(self, started: datetime, command: str) -> str:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        load = os.getloadavg()
        begin, end = self.markers
        lines = [
            begin,
            f"Run {started:%Y-%m-%d %H:%M} UTC, `{command}`, {time.monotonic() - self.began:.0f} s.",
            f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}; "
            f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
            f"Web: `{procfile_command('web').replace('0.0.0.0', '127.0.0.1')}` (defaults as in the Procfile); "
            f"worker: `{procfile_command('worker')}`.",
            "",
            "| figure | the service | baseline, same run | ratio | target |",
            "|---|---|---|---|---|",
            *(f"| {' | '.join(row)} |" for row in self.results),
            "",
            *(f"- Note: {note}" for note in self.notes),
            end,
        ]
        return "\n".join(lines)

    def write(self, text: str) -> None:
        begin, end = self.markers
        current = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        if begin not in current:
            current += f"\n{begin}\n{end}\n"
        head, rest = current.split(begin, 1)
        DOC.write_text(head + text + rest.split(end, 1)[1])
        print(f"figures written to {DOC.relative_to(ROOT)}")


# Frames where a thread waits rather than works: left out of a profile's share of busy time.
IDLE_FRAMES = (
    "select (selectors.py",
    "wait (threading.py",
    "_wait_for_tstate_lock",
    "accept (socket.py",
    "poll (selectors.py",
    "sleep",
    "get (queue.py",
    "run (gunicorn/arbiter.py",
)


def profile_summary(path: Path, *, top: int = 25) -> str:
    """The functions holding the most busy samples of a py-spy raw profile (inclusive), under our code and libraries."""
    inclusive: dict[str, int] = {}
    busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or any(frame.startswith(IDLE_FRAMES) for frame in frames[-1:]):
            continue
        busy += int(count)
        names = {frame.split(":")[0] + ")" for frame in frames[1:] if " (" in frame}
        for name in names:
            inclusive[name] = inclusive.get(name, 0) + int(count)
    skip = (
        "threading.py",
        "gunicorn/",
        "concurrent/",
        "django/core/handlers",
        "django/utils/deprecation",
        "whitenoise/",
        "django/views/",
        "rest_framework/views.py",
        "drf_spectacular/drainage",
    )
    rows = sorted(((n, name) for name, n in inclusive.items() if not any(s in name for s in skip)), reverse=True)[:top]
    return "\n".join(f"  {100 * n / max(busy, 1):5.1f} %  {name}" for n, name in rows)


_KEY = None


def _gateway_key():
    global _KEY
    if _KEY is None:
        from payments.gateway import signing

        _KEY = signing.load_private_key(VECTORS["gateway_private_key_pem"])
    return _KEY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", "18400")))
    parser.add_argument(
        "--seconds", type=float, default=16.0, help="Measured time per side for creates at concurrency 8."
    )
    parser.add_argument("--rounds", type=int, default=4, help="Alternating rounds per comparison.")
    parser.add_argument("--deliveries", type=int, default=3000, help="Deliveries per side for intake at concurrency 8.")
    parser.add_argument("--ack-deliveries", type=int, default=500)
    parser.add_argument("--memory", type=int, nargs=2, default=(2000, 10000), metavar=("FIRST", "SECOND"))
    parser.add_argument(
        "--drain-seconds", type=float, default=30, help="Longest wait for the worker before reading its RSS."
    )
    parser.add_argument("--reconcile-orders", type=int, default=10_000)
    parser.add_argument("--only", nargs="*", default=["create", "intake", "ack", "memory", "reconcile"])
    parser.add_argument("--profile", type=Path, help="Sample the web workers with py-spy into this folder.")
    parser.add_argument(
        "--profile-cpu",
        action="store_true",
        help="With --profile: sample only threads holding the GIL (Python CPU time, no waiting).",
    )
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    parser.add_argument("--section", default="make bench", help="Where in docs/benchmarks.md the figures go.")
    args = parser.parse_args()

    # Stopped by a signal, the servers are still stopped and the database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.now(UTC)
    bench = Bench(args)
    bench.began = time.monotonic()
    command = os.environ.get("BENCH_COMMAND") or "make bench"
    print(
        f"logs in {bench.tmp}; database {bench.db_name}; ports {min(bench.ports.values())}-{max(bench.ports.values())}",
        flush=True,
    )
    try:
        bench.database_create()
        bench.start()
        if "create" in args.only:
            bench.bench_create()
        if "intake" in args.only:
            bench.bench_intake()
        if "ack" in args.only:
            bench.bench_ack_broker_down()
            bench.bench_ack_gateway_slow()
        if "memory" in args.only:
            bench.bench_memory()
    finally:
        bench.processes.stop_all()
        bench.database_drop()
    if "reconcile" in args.only:
        bench.bench_reconcile()
    text = bench.report(started, command)
    print(text)
    if not args.no_write:
        bench.write(text)


if __name__ == "__main__":
    main()
