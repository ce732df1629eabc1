"""
``make chaos``: the whole service under every fault at once, then proof that nothing was lost or doubled.

    python -m tests.chaos.run --orders 1000 --clients 12

Starts the Procfile's processes against a database and a Redis of the run's own and the sandbox gateway
as a separate process (``stack.py``), and a store system's event endpoint that sometimes fails
(``receiver.py``), registered through the API; arms the sandbox's faults (lost, duplicated, reordered and
delayed notifications; 5xx, 2 s latency, create answers lost, unsigned error answers) and, as the orders
go through, kills a Celery worker with SIGKILL, restarts Redis, drops the database connections, restarts
the web process and kills and restarts the sandbox; drives the orders (``driver.py``); closes the batch;
clears the faults and lets reconciliation and event delivery drain for a bounded time; then checks every
order and refund against the sandbox, and every outbound event against the outbox and the orders'
stories (``verify.py``), and prints the table. Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

from payments.gateway.methods import Method
from tests.chaos import verify
from tests.chaos.driver import Driver, StoreSystem, Tally
from tests.chaos.receiver import EventReceiver
from tests.chaos.stack import Ports, Stack

CREATE_METHODS = (
    Method.CLOUD_PAY_ORDER,
    Method.CHECKOUT,
    Method.MERCHANT_CHECKOUT,
    Method.REFUND_SUBMIT,
    Method.REFUND_PAYMENT,
)
# Each kind fires once for certain at the start (so a small run sees every one), then at a rate.
CALL_FAULTS = (
    {"fault": "latency", "seconds": 2, "rate": 0.03},
    {"fault": "http_500", "rate": 0.02},
    {"fault": "unsigned_errors", "rate": 0.5},
    *({"fault": "timeout_after_create", "method": m.value, "seconds": 6, "rate": 0.04} for m in CREATE_METHODS),
    *({"fault": "http_500_after", "method": m.value, "rate": 0.03} for m in CREATE_METHODS),
)
NOTIFICATION_FAULTS = (
    {"fault": "drop", "rate": 0.06},
    {"fault": "duplicate", "count": 5, "rate": 0.03},
    {"fault": "duplicate", "count": 3, "rate": 0.03},
    {"fault": "duplicate", "count": 2, "rate": 0.03},
    {"fault": "reorder", "rate": 0.05},
    # Longer than a payment takes to be followed by a refund or capture: it lands after the next status.
    {"fault": "delay", "seconds": 8, "rate": 0.06},
)
PROCESS_FAULTS = (
    (0.15, "worker killed (SIGKILL) and restarted"),
    (0.30, "Redis restarted"),
    (0.45, "database connections dropped"),
    (0.60, "web process restarted"),
    (0.75, "sandbox killed (SIGKILL) and restarted"),
)
CONVERGED_LEFTOVERS = (
    "orders_open",
    "refunds_open",
    "operations_unknown",
    "rows_leased",
    "notifications_pending",
    "event_deliveries_pending",
)
# The share of events whose first attempt the receiver fails (HTTP 500 or a dropped connection).
EVENT_ENDPOINT_FAIL_RATE = 0.05


@dataclass
class Outcome:
    orders: int
    tally: Tally
    faults: Counter
    exits: Counter
    mismatches: dict[str, list[str]]
    missing_notifications: list[str]
    creates_twice: list[str]
    leftovers: dict[str, int]
    convergence: list[float]
    delivery_statuses: Counter
    gateway_calls: int
    drained_in: float
    elapsed: float
    events: verify.EventsCheck
    table: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def mismatch_count(self) -> int:
        return (
            len(self.mismatches)
            + len(self.missing_notifications)
            + len(self.creates_twice)
            + len(self.events.problems)
            + sum(self.leftovers.values())
        )


class Chaos:
    def __init__(self, *, stack: Stack, orders: int, clients: int, drain_seconds: float, seed: int, say):
        self.stack = stack
        self.orders = orders
        self.clients = clients
        self.drain_seconds = drain_seconds
        self.seed = seed
        self.say = say
        self.faults: Counter = Counter()
        self.fired_before_restarts: Counter = Counter()
        self.converged: dict[str, float] = {}
        self.started = time.monotonic()
        self.driver: Driver | None = None
        self._done = 0
        self._progress = threading.Condition()
        self._stop_monitor = threading.Event()
        self.latest_problems: dict[str, list[str]] = {}
        self.receiver = EventReceiver(fail_rate=EVENT_ENDPOINT_FAIL_RATE, seed=seed)

    # --- faults ------------------------------------------------------------------------------------

    def arm_sandbox_faults(self) -> None:
        url = self.stack.sandbox_url
        for spec in CALL_FAULTS:
            once = {key: value for key, value in spec.items() if key != "rate"}
            requests.post(f"{url}/sandbox/faults", json={**once, "times": 1}, timeout=10).raise_for_status()
        for spec in NOTIFICATION_FAULTS:
            once = {key: value for key, value in spec.items() if key != "rate"}
            requests.post(
                f"{url}/sandbox/notification-faults", json={**once, "times": 1}, timeout=10
            ).raise_for_status()
        for spec in CALL_FAULTS:
            requests.post(f"{url}/sandbox/faults", json=spec, timeout=10).raise_for_status()
        for spec in NOTIFICATION_FAULTS:
            requests.post(f"{url}/sandbox/notification-faults", json=spec, timeout=10).raise_for_status()

    def sandbox_fired(self) -> Counter:
        fired = requests.get(f"{self.stack.sandbox_url}/sandbox/faults/fired", timeout=10).json()["fired"]
        return self.fired_before_restarts + Counter(fired)

    def _process_faults(self) -> None:
        actions = {
            "worker killed (SIGKILL) and restarted": self._kill_worker,
            "Redis restarted": self.stack.restart_redis,
            "database connections dropped": self._drop_connections,
            "web process restarted": self.stack.restart_web,
            "sandbox killed (SIGKILL) and restarted": self._kill_sandbox,
        }
        for fraction, name in PROCESS_FAULTS:
            with self._progress:
                target = max(1, int(self.orders * fraction))
                self._progress.wait_for(lambda target=target: self._done >= target)
            self.say(f"  fault: {name}")
            actions[name]()
            self.faults[name] += 1

    def _kill_worker(self) -> None:
        self.stack.restart_worker_after_kill()

    def _drop_connections(self) -> None:
        self.faults["database connections terminated"] += self.stack.terminate_database_connections()

    def _kill_sandbox(self) -> None:
        self.fired_before_restarts = self.sandbox_fired()
        self.stack.restart_sandbox_after_kill()
        # Faults are test settings, not gateway state: a restarted sandbox starts without them.
        self.arm_sandbox_faults()

    # --- progress and convergence ------------------------------------------------------------------

    def _on_order_done(self, done: int) -> None:
        with self._progress:
            self._done = done
            self._progress.notify_all()

    def _monitor(self) -> None:
        next_line = 0.0
        while not self._stop_monitor.is_set():
            # The sandbox or the database is being restarted; look again.
            with contextlib.suppress(requests.RequestException, OSError, ValueError):
                self.observe()
            if time.monotonic() >= next_line:
                self.say(self.progress_line())
                next_line = time.monotonic() + 15
            self._stop_monitor.wait(3)

    def observe(self) -> verify.Snapshot:
        snapshot = verify.read(database_url=self.stack.database_url, sandbox_url=self.stack.sandbox_url)
        now = time.monotonic()
        problems = {}
        for order in list(self.driver.orders):
            if not order.last_action_at:
                continue
            found = verify.compare(snapshot, order.merchant_order_no)
            if found:
                problems[order.merchant_order_no] = found
                self.converged.pop(order.merchant_order_no, None)
            elif order.merchant_order_no not in self.converged:
                self.converged[order.merchant_order_no] = max(0.0, now - order.last_action_at)
        self.latest_problems = problems
        self.latest_snapshot = snapshot
        return snapshot

    def progress_line(self) -> str:
        elapsed = time.monotonic() - self.started
        return (
            f"[{elapsed:6.0f}s] driven {self._done}/{self.orders} orders, "
            f"converged {len(self.converged)}, not yet {len(self.latest_problems)}"
        )

    # --- the run -----------------------------------------------------------------------------------

    def run(self) -> Outcome:
        stack = self.stack
        self.say(f"Starting redis, sandbox, web, worker, beat (ports {stack.ports}), database {stack.database_name}")
        stack.create_database()
        stack.start_redis()
        stack.start_sandbox()
        stack.start_web()
        stack.start_worker()
        stack.start_beat()
        api_key = stack.create_api_key()
        self._register_event_endpoint(api_key)
        stack.supervise()
        self.arm_sandbox_faults()
        run_id = uuid.uuid4().hex[:6].upper()
        self.driver = Driver(
            base_url=stack.web_url,
            api_key=api_key,
            sandbox_url=stack.sandbox_url,
            count=self.orders,
            clients=self.clients,
            seed=self.seed,
            run_id=run_id,
            on_progress=self._on_order_done,
        )
        self.started = time.monotonic()
        self.say(f"Driving {self.orders} orders from {self.clients} clients")
        monitor = threading.Thread(target=self._monitor, name="chaos-monitor", daemon=True)
        monitor.start()
        faults = threading.Thread(target=self._process_faults, name="chaos-faults", daemon=True)
        faults.start()
        self.driver.run()
        faults.join()
        self._batch_close(api_key)
        self.faults.update(self.sandbox_fired())
        requests.delete(f"{stack.sandbox_url}/sandbox/faults", timeout=10).raise_for_status()
        self.say(
            f"Driven in {time.monotonic() - self.started:.0f}s; faults cleared, draining (at most "
            f"{self.drain_seconds:.0f}s)"
        )
        drain_started = time.monotonic()
        self._stop_monitor.set()
        monitor.join()
        while True:
            snapshot = self.observe()
            done = not self.latest_problems and not any(snapshot.leftovers[name] for name in CONVERGED_LEFTOVERS)
            if done or time.monotonic() - drain_started > self.drain_seconds:
                break
            self.say(self.progress_line() + f" (draining; {_open_summary(snapshot.leftovers)})")
            time.sleep(5)
        drained_in = time.monotonic() - drain_started
        self.faults.update(self.receiver.faults)
        return self._outcome(snapshot, drained_in)

    def _register_event_endpoint(self, api_key: str) -> None:
        """The receiver, registered account-wide through the API before any order, so every change has its event."""
        self.receiver.start()
        answer = requests.post(
            f"{self.stack.web_url}/api/v1/event-endpoints/",
            json={"url": self.receiver.url, "description": "chaos run receiver"},
            headers={"Authorization": f"Api-Key {api_key}"},
            timeout=30,
        )
        answer.raise_for_status()
        self.receiver.secret = answer.json()["secret"]
        self.say(f"Event endpoint {self.receiver.url} registered")

    def _batch_close(self, api_key: str) -> None:
        client = StoreSystem(
            base_url=self.stack.web_url,
            api_key=api_key,
            sandbox_url=self.stack.sandbox_url,
            tally=self.driver.tally,
            rng=random.Random(self.seed),
        )
        status, answer = client.post("batches/close/", {})
        self.driver.tally.add(f"batch closes (HTTP {status})")
        self.say(
            f"Batch close: HTTP {status} {json.dumps({k: answer.get(k) for k in ('status', 'count', 'total_amount')})}"
        )

    def _outcome(self, snapshot: verify.Snapshot, drained_in: float) -> Outcome:
        mismatches = {number: found for number, found in self.latest_problems.items()}
        driven = {order.merchant_order_no for order in self.driver.orders}
        for number in snapshot.orders:
            if number not in driven:
                mismatches[number] = ["an order nobody drove"]
        events, story = verify.events_read(database_url=self.stack.database_url)
        return Outcome(
            orders=len(self.driver.orders),
            tally=self.driver.tally,
            faults=self.faults,
            exits=self.stack.unexpected_exits,
            mismatches=mismatches,
            missing_notifications=verify.notifications_missing(snapshot),
            creates_twice=verify.creates_sent_twice(snapshot),
            leftovers={name: snapshot.leftovers[name] for name in CONVERGED_LEFTOVERS},
            convergence=sorted(self.converged.values()),
            delivery_statuses=snapshot.delivery_statuses,
            gateway_calls=len(snapshot.calls),
            drained_in=drained_in,
            elapsed=time.monotonic() - self.started,
            events=verify.events_check(
                events=events,
                story=story,
                received=list(self.receiver.accepted),
                signature_failures=list(self.receiver.signature_failures),
            ),
        )


def _open_summary(leftovers: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in leftovers.items() if count) or "nothing open"


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(fraction * 100) - 1]


def render(outcome: Outcome) -> str:
    tally = outcome.tally
    rows: list[tuple[str, str]] = [("orders driven", str(outcome.orders))]
    rows += [(f"  {name}", str(count)) for name, count in sorted(tally.requests.items())]
    rows.append(
        (
            "HTTP answers seen by clients",
            ", ".join(
                f"{'no answer' if status == 0 else status}: {count}" for status, count in sorted(tally.answers.items())
            ),
        )
    )
    rows.append(("faults injected", str(sum(outcome.faults.values()))))
    rows += [(f"  {name}", str(count)) for name, count in sorted(outcome.faults.items())]
    rows.append(("processes that exited by themselves (restarted)", str(sum(outcome.exits.values()))))
    rows += [(f"  {name}", str(count)) for name, count in sorted(outcome.exits.items())]
    rows.append(("MISMATCHES (must be 0)", str(outcome.mismatch_count)))
    rows += [
        ("  orders or refunds differing from the gateway", str(len(outcome.mismatches))),
        ("  delivered notifications not stored", str(len(outcome.missing_notifications))),
        ("  creates sent twice", str(len(outcome.creates_twice))),
        ("  outbound events missing, doubled, out of order or badly signed", str(len(outcome.events.problems))),
    ]
    rows += [(f"  left {name.replace('_', ' ')}", str(count)) for name, count in outcome.leftovers.items()]
    times = outcome.convergence
    rows.append(("orders converged", f"{len(times)} of {outcome.orders}"))
    rows.append(
        (
            "convergence after last action (s)",
            f"p50 {_percentile(times, 0.50):.1f}, p99 {_percentile(times, 0.99):.1f}, max {max(times, default=0):.1f}",
        )
    )
    statuses = outcome.delivery_statuses
    received = sum(statuses.values())
    rows.append(("notifications received", str(received)))
    rows += [(f"  {status}", str(count)) for status, count in sorted(statuses.items())]
    events = outcome.events
    rows += [
        ("outbound events recorded (outbox)", str(events.recorded)),
        ("  delivered at least once", str(events.delivered)),
        ("  deliveries accepted by the receiver", str(events.received)),
        ("  duplicates received (at-least-once)", str(events.duplicates)),
        ("  signature failures", str(events.signature_failures)),
        ("  mismatches", str(len(events.problems))),
    ]
    rows.append(
        (
            "gateway calls (all, per order)",
            f"{outcome.gateway_calls}, {outcome.gateway_calls / max(outcome.orders, 1):.2f}",
        )
    )
    rows.append(("drain time (s)", f"{outcome.drained_in:.0f}"))
    rows.append(("total time (s)", f"{outcome.elapsed:.0f}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


def run(
    *,
    orders: int,
    clients: int,
    drain_seconds: float,
    database_url: str,
    ports: Ports,
    seed: int = 1,
    keep: bool = False,
    say=print,
) -> Outcome:
    workdir = Path(tempfile.mkdtemp(prefix="codepay-chaos-"))
    stack = Stack(workdir=workdir, ports=ports, database_url=database_url)
    chaos = Chaos(stack=stack, orders=orders, clients=clients, drain_seconds=drain_seconds, seed=seed, say=say)
    try:
        outcome = chaos.run()
        outcome.table = render(outcome)
        details = [f"{number}: {'; '.join(found)}" for number, found in sorted(outcome.mismatches.items())]
        outcome.problems = details + outcome.missing_notifications + outcome.creates_twice + outcome.events.problems
        return outcome
    finally:
        stack.stop_all()
        chaos.receiver.stop()
        if not keep:
            stack.drop_database()
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"Kept the logs and sandbox state in {workdir} and the database {stack.database_name}")


def chaos_database_url(base_url: str, suffix: str = "_chaos") -> str:
    """The run's own database next to ``base_url``'s: postgres://.../codepay_i10 -> .../codepay_i10_chaos."""
    return base_url.rsplit("/", 1)[0] + "/" + base_url.rsplit("/", 1)[1].split("?")[0] + suffix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--drain-seconds", type=float, default=600)
    parser.add_argument(
        "--port-base", type=int, default=None, help="web, sandbox and redis on this port and the next two"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database, logs and sandbox state")
    args = parser.parse_args(argv)
    database_url = chaos_database_url(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/codepay"))
    try:
        outcome = run(
            orders=args.orders,
            clients=args.clients,
            drain_seconds=args.drain_seconds,
            database_url=database_url,
            ports=Ports.free_block(args.port_base),
            seed=args.seed,
            keep=args.keep,
            say=lambda line: print(line, flush=True),
        )
    except KeyboardInterrupt:
        # The processes are stopped (run's finally); the clients' threads must not keep driving orders.
        print("Interrupted; every process of the run is stopped.", flush=True)
        os._exit(130)
    print()
    print(outcome.table)
    for problem in outcome.problems[:50]:
        print(f"MISMATCH {problem}")
    for name, count in outcome.leftovers.items():
        if count:
            print(f"LEFT {name}: {count}")
    return 1 if outcome.mismatch_count else 0


if __name__ == "__main__":
    sys.exit(main())
