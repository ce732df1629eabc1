"""
The processes of a chaos run: the Procfile's web, worker and beat, the sandbox gateway, and a Redis of
the run's own, all on loopback, all started, killed and restarted from here.

Decisions:
- The service processes run the Procfile's own command lines (through ``bash -c``, as a Procfile runner
  does), so what survives here is what runs in production, migrations and schedule set-up included.
- Redis is a ``redis-server`` started for the run, without persistence, on its own port: restarting it
  loses every queued task, as a broker crash does, and touches no Redis anyone else uses.
- The database is one of the run's own (created here, dropped at the end); "dropping the web process's
  connections" terminates every backend of that database only.
- Each process gets its own session (process group), so a SIGKILL reaches a Celery worker's pool
  children too, as when a machine dies, and nothing here signals a process it did not start.
- A process that exits by itself is started again, as every process manager in production does
  (systemd, Heroku, ``restart:`` in compose), and each such exit is counted for the run's table: a
  process that dies under a fault is a finding even when the restart hides it.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests

from payments.gateway import signing

REPO = Path(__file__).resolve().parents[2]
APP_ID = "wzchaos00000000001"
MERCHANT_NO = "302300000777"
STORE_NO = "4021000777"
PORT_RANGE = range(18300, 18400)


@dataclass(frozen=True)
class Ports:
    web: int
    sandbox: int
    redis: int

    @classmethod
    def free_block(cls, start: int | None = None) -> Ports:
        """Three consecutive free loopback ports in 18300-18399 (from ``start`` when given)."""
        candidates = [start] if start else range(PORT_RANGE.start, PORT_RANGE.stop - 2, 3)
        for base in candidates:
            if all(_port_free(base + offset) for offset in range(3)):
                return cls(web=base, sandbox=base + 1, redis=base + 2)
        raise RuntimeError("No three consecutive free ports in 18300-18399 for the chaos run.")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def procfile_commands() -> dict[str, str]:
    commands = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if command.strip():
            commands[name.strip()] = command.strip()
    return commands


class Stack:
    def __init__(self, *, workdir: Path, ports: Ports, database_url: str, quiet: bool = True):
        self.workdir = workdir
        self.ports = ports
        self.database_url = database_url
        self.database_name = database_url.rsplit("/", 1)[1]
        self.admin_database_url = database_url.rsplit("/", 1)[0] + "/postgres"
        self.quiet = quiet
        self.processes: dict[str, subprocess.Popen] = {}
        self.unexpected_exits: Counter[str] = Counter()
        # Held while a process is stopped or started on purpose, so the supervisor leaves it alone.
        self._changing = threading.RLock()
        self._supervising = threading.Event()
        self.procfile = procfile_commands()
        self.web_url = f"http://127.0.0.1:{ports.web}"
        self.sandbox_url = f"http://127.0.0.1:{ports.sandbox}"
        self.env = self._environment()

    # --- set-up ------------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        keys = self.workdir / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        app_key, gateway_key = signing.generate_private_key(), signing.generate_private_key()
        (keys / "app.pem").write_text(signing.private_key_pem(app_key))
        (keys / "gateway.pem").write_text(signing.private_key_pem(gateway_key))
        (keys / "gateway.pub").write_text(signing.public_key_b64der(gateway_key.public_key()))
        bin_dir = str(Path(sys.executable).parent)
        return {
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", str(self.workdir)),
            "PORT": str(self.ports.web),
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_DEBUG": "0",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.ports.redis}/0",
            "STATIC_ROOT": str(self.workdir / "static"),
            "LOG_LEVEL": "WARNING",
            "API_THROTTLE_RATE": "1000000/minute",
            "WEB_CONCURRENCY": "2",
            "WEB_THREADS": "8",
            "CELERY_CONCURRENCY": "4",
            "CODEPAY_BASE_URL": self.sandbox_url,
            "CODEPAY_APP_ID": APP_ID,
            "CODEPAY_MERCHANT_NO": MERCHANT_NO,
            "CODEPAY_STORE_NO": STORE_NO,
            "CODEPAY_PRIVATE_KEY_FILE": str(keys / "app.pem"),
            "CODEPAY_GATEWAY_PUBLIC_KEY_FILE": str(keys / "gateway.pub"),
            "CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE": str(keys / "gateway.pem"),
            "CODEPAY_SANDBOX_STATE_DIR": str(self.workdir / "sandbox"),
            "CODEPAY_NOTIFY_URL": f"{self.web_url}/webhooks/codepay/",
            # The 2 s latency fault passes; the lost-answer fault (6 s) times out, as a lost answer does.
            "CODEPAY_READ_TIMEOUT": "4",
            "CODEPAY_MAX_QPS": "100",
            # Shorter waits than production, so the run drains in minutes; the paths taken are the same.
            "CODEPAY_EXPIRY_GRACE_SECONDS": "5",
            "CODEPAY_UNKNOWN_GRACE_SECONDS": "20",
            "CODEPAY_NOTIFICATION_UNMATCHED_RETRY_DELAYS": "1,2,5,10,20,30,60",
            "CODEPAY_NOTIFICATION_RETRY_DELAYS": "1,2,5,10,20,30,60",
            "CODEPAY_NOTIFICATION_SWEEP_GRACE_SECONDS": "10",
            "CODEPAY_NOTIFICATION_SWEEP_LEASE_SECONDS": "30",
            # Outbound events retry after 1, 2, 5 s (then every 5 s) instead of minutes; the beat's sweep of
            # due deliveries (every 15 s, installed by setup_schedules) sends them.
            "EVENTS_RETRY_DELAYS": "1,2,5",
        }

    def create_database(self) -> None:
        with psycopg.connect(self.admin_database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.database_name}"')

    def drop_database(self) -> None:
        with psycopg.connect(self.admin_database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')

    def create_api_key(self) -> str:
        output = self._manage("create_api_key", "--name", "chaos")
        return output.strip().splitlines()[-1]

    def _manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    # --- processes ---------------------------------------------------------------------------------

    def _start(self, name: str, command: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.processes[name] = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _signal(self, name: str, sig: int, *, wait: float = 30) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def start_redis(self) -> None:
        self._start(
            "redis",
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.ports.redis),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        _wait_for_port(self.ports.redis, "redis-server")

    def restart_redis(self) -> None:
        with self._changing:
            self._signal("redis", signal.SIGKILL)
            self.start_redis()

    def start_sandbox(self) -> None:
        self._start(
            "sandbox",
            [
                sys.executable,
                "manage.py",
                "codepay_sandbox",
                "--port",
                str(self.ports.sandbox),
                "--notification-schedule-scale",
                "0.2",
            ],
        )
        _wait_for_http(f"{self.sandbox_url}/sandbox/faults/fired", "the sandbox")

    def restart_sandbox_after_kill(self) -> None:
        with self._changing:
            self._signal("sandbox", signal.SIGKILL)
            self.start_sandbox()

    def start_web(self) -> None:
        self._start("web", ["bash", "-c", self.procfile["web"]])
        _wait_for_http(f"{self.web_url}/readyz", "the web process", timeout=180)

    def restart_web(self) -> None:
        with self._changing:
            self._signal("web", signal.SIGTERM, wait=40)
            self.start_web()

    def start_worker(self) -> None:
        self._start("worker", ["bash", "-c", self.procfile["worker"]])

    def restart_worker_after_kill(self, *, down_seconds: float = 2) -> None:
        with self._changing:
            self._signal("worker", signal.SIGKILL)
            time.sleep(down_seconds)
            self.start_worker()

    def start_beat(self) -> None:
        self._start("beat", ["bash", "-c", self.procfile["beat"]])

    def terminate_database_connections(self) -> int:
        with psycopg.connect(self.admin_database_url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database_name,),
            ).fetchall()
        return len(rows)

    def supervise(self) -> None:
        """Start again, in the background, any process that exits without being asked to."""
        starters = {
            "redis": self.start_redis,
            "sandbox": self.start_sandbox,
            "web": self.start_web,
            "worker": self.start_worker,
            "beat": self.start_beat,
        }
        self._supervising.set()

        def watch() -> None:
            while self._supervising.is_set():
                with self._changing:
                    for name, process in list(self.processes.items()):
                        if process.poll() is not None and self._supervising.is_set():
                            self.unexpected_exits[name] += 1
                            starters[name]()
                time.sleep(1)

        threading.Thread(target=watch, name="chaos-supervisor", daemon=True).start()

    def stop_all(self) -> None:
        self._supervising.clear()
        with self._changing:
            for name in ("beat", "worker", "web", "sandbox", "redis"):
                self._signal(name, signal.SIGTERM, wait=20)


def _wait_for_port(port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _connects(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start on port {port}.")
        time.sleep(0.1)


def _connects(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_http(url: str, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s.")
        time.sleep(0.2)
