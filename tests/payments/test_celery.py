"""Celery wiring: task options, bounded delays, the database beat schedule, housekeeping, and a real worker."""

import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun, task_prerun
from django.apps import apps as django_apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import OperationalError, connection, connections
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from codepay_service.celery import app
from codepay_service.schedules import periodic_tasks_declared
from codepay_service.tasks import task_delay_check
from payments import tasks
from payments.models import (
    BatchClose,
    BatchCloseSchedule,
    BatchCloseStatus,
    Channel,
    IdempotencyRecord,
    Order,
    OrderStatus,
)
from payments.services.orders import order_create
from tests.conftest import STORE_NO

PAYMENTS_TASKS = (
    "payments.tasks.reconcile_due",
    "payments.tasks.run_due_batch_schedules",
    "payments.tasks.close_batch",
    "payments.tasks.retry_due_batch_closes",
    "payments.tasks.purge_expired_idempotency_records",
)
EXPECTED_SCHEDULE = {
    "codepay: reconcile due orders and refunds": ("payments.tasks.reconcile_due", 10, 10, True),
    "codepay: run due batch close schedules": ("payments.tasks.run_due_batch_schedules", 60, 60, True),
    "codepay: retry failed batch closes": ("payments.tasks.retry_due_batch_closes", 60, 60, True),
    "codepay: purge expired idempotency records": ("payments.tasks.purge_expired_idempotency_records", 3600, 600, True),
    "codepay: send due outbound events": ("payments.events.tasks.send_due_event_deliveries", 15, 15, True),
    "codepay: apply due notifications": ("webhooks.tasks.apply_due_notifications", 30, 30, True),
}


def beat_schedule() -> dict:
    return {
        task.name: (task.task, task.interval.every, task.expire_seconds, task.enabled)
        for task in PeriodicTask.objects.select_related("interval").filter(name__startswith="codepay:")
    }


def test_tasks_speak_json_ack_late_and_have_time_limits(settings):
    """Every payments task is acknowledged after it ran, requeued if its worker dies, time-limited, and JSON only."""
    assert (app.conf.task_serializer, app.conf.result_serializer, app.conf.accept_content) == ("json", "json", ["json"])
    for name in PAYMENTS_TASKS:
        task = app.tasks[name]
        assert (task.acks_late, task.reject_on_worker_lost) == (True, True), name
        assert 0 < task.soft_time_limit < task.time_limit <= settings.CELERY_TASK_TIME_LIMIT, name
        assert task.retry_backoff_max < settings.CELERY_MAX_TASK_DELAY_SECONDS, name
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > settings.CELERY_MAX_TASK_DELAY_SECONDS
    assert settings.CELERY_DB_REUSE_MAX == 1000


def test_a_delay_reaching_the_visibility_limit_is_refused_before_sending(settings):
    """A countdown or ETA of CELERY_MAX_TASK_DELAY_SECONDS or more raises; nothing reaches the broker."""
    limit = settings.CELERY_MAX_TASK_DELAY_SECONDS
    with pytest.raises(ValueError, match=f"not below CELERY_MAX_TASK_DELAY_SECONDS \\({limit}s\\)"):
        tasks.close_batch.apply_async(args=[1], countdown=limit)
    with pytest.raises(ValueError):
        tasks.close_batch.apply_async(args=[1], eta=timezone.now() + timedelta(seconds=limit + 60))
    task_delay_check(limit - 1)


def test_a_delay_limit_not_below_the_visibility_timeout_is_a_configuration_error(settings):
    """CELERY_MAX_TASK_DELAY_SECONDS at or above the broker's visibility timeout refuses every task."""
    settings.CELERY_MAX_TASK_DELAY_SECONDS = 3600
    with pytest.raises(ImproperlyConfigured):
        task_delay_check(0)


def test_migrate_and_setup_schedules_install_the_beat_schedule_idempotently(db, capsys):
    """After each migrate (post_migrate) and on `manage.py setup_schedules`, the six periodic tasks the apps
    declare are installed; running them again changes nothing, creates no duplicate interval, and keeps an
    operator's choice to disable a task."""
    PeriodicTask.objects.filter(name__startswith="codepay:").delete()
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert beat_schedule() == EXPECTED_SCHEDULE
    intervals = IntervalSchedule.objects.count()

    PeriodicTask.objects.filter(name="codepay: apply due notifications").update(enabled=False)
    call_command("setup_schedules")
    call_command("setup_schedules")

    assert capsys.readouterr().out.splitlines()[-len(EXPECTED_SCHEDULE) :] == [
        f"updated: {name}" for name in EXPECTED_SCHEDULE
    ]
    assert beat_schedule() == {
        **EXPECTED_SCHEDULE,
        "codepay: apply due notifications": ("webhooks.tasks.apply_due_notifications", 30, 30, False),
    }
    assert IntervalSchedule.objects.count() == intervals


@pytest.mark.django_db(transaction=True)
def test_a_database_connection_the_server_dropped_is_replaced_before_the_next_task():
    """When PostgreSQL terminates a worker's connection, the task that hits it fails, and the next task
    starts on a fresh connection instead of failing on the dead one (CELERY_DB_REUSE_MAX keeps it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        dropped_pid = cursor.fetchone()[0]
    server = connection.settings_dict
    with psycopg.connect(
        host=server["HOST"],
        port=server["PORT"] or 5432,
        user=server["USER"],
        password=server["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (dropped_pid,))
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")

    task_prerun.send(sender=tasks.reconcile_due, task_id="next-task", task=tasks.reconcile_due, args=(), kwargs={})

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != dropped_pid


def test_each_app_declares_only_its_own_periodic_tasks():
    """payments schedules only payments tasks and webhooks only webhooks tasks; together they are the schedule."""
    by_app = {
        label: [spec.task for spec in periodic_tasks_declared(app_configs=[django_apps.get_app_config(label)])]
        for label in ("payments", "webhooks")
    }
    assert by_app == {
        "payments": [task for task, *_ in EXPECTED_SCHEDULE.values() if task.startswith("payments.")],
        "webhooks": ["webhooks.tasks.apply_due_notifications"],
    }
    assert [spec.name for spec in periodic_tasks_declared()] == list(EXPECTED_SCHEDULE)


def test_no_migration_runs_the_live_code_of_an_app():
    """
    Migrations are frozen history: none imports a function of payments, webhooks or codepay_service to run
    it. (A field default written by makemigrations as ``payments.models.all_weekdays`` is a reference Django
    resolves itself, not code the migration runs.)
    """
    offenders = []
    for label in ("payments", "webhooks"):
        for path in (Path(django_apps.get_app_config(label).path) / "migrations").glob("*.py"):
            source = path.read_text()
            if re.search(r"^\s*from\s+(payments|webhooks|codepay_service)\b|import_module\(", source, re.MULTILINE):
                offenders.append(path.name)
    assert offenders == []


def test_purge_deletes_only_expired_idempotency_records(api_key):
    """Records past expires_at are deleted; live ones stay."""
    key, _ = api_key
    now = timezone.now()
    for n, expires_at in enumerate((now - timedelta(hours=1), now - timedelta(seconds=1), now + timedelta(hours=1))):
        IdempotencyRecord.objects.create(
            api_key=key,
            key=f"k{n}",
            request_method="POST",
            request_path="/v1/orders",
            fingerprint="f",
            expires_at=expires_at,
        )

    assert tasks.purge_expired_idempotency_records() == 2
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k2"]


# --- A real worker on the Redis broker ----------------------------------------------------------------


@pytest.fixture
def celery_worker(transactional_db, settings):
    """A Celery worker thread consuming the real Redis broker (CELERY_BROKER_URL) with the project's app."""

    def close_worker_connections(**kwargs):
        # The worker thread keeps its own database connections; close them so the test database can go.
        connections.close_all()

    app.control.purge()
    task_postrun.connect(close_worker_connections, weak=False)
    try:
        with start_worker(app, perform_ping_check=False, shutdown_timeout=30) as worker:
            yield worker
    finally:
        task_postrun.disconnect(close_worker_connections)


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the worker"
        time.sleep(0.1)


@pytest.mark.celery_worker
def test_reconcile_due_on_a_real_worker_resolves_an_unknown_order(
    celery_worker, account, sandbox_reset, sandbox_control
):
    """reconcile_due.delay() goes through Redis to a worker, which finds an order whose create timed out."""
    sandbox_control.fault(fault="timeout_after_create", method="wisehub.cloud.pay.order", seconds=3)
    order = order_create(
        account=account,
        api_key=None,
        channel=Channel.TERMINAL,
        amount=Decimal("8.00"),
        currency="USD",
        description="Sandwich",
        terminal_sn="WPYB002248000865",
    ).obj
    assert order.status == OrderStatus.UNKNOWN
    sandbox_control.pay(order.merchant_order_no)
    Order.objects.filter(pk=order.pk).update(next_check_at=timezone.now() - timedelta(seconds=1))

    tasks.reconcile_due.delay()

    wait_until(lambda: Order.objects.get(pk=order.pk).status != OrderStatus.UNKNOWN)
    order.refresh_from_db()
    assert (order.status, order.paid_amount, order.check_attempts, order.next_check_at) == (
        OrderStatus.SUCCEEDED,
        Decimal("8.00"),
        1,
        None,
    )


@pytest.mark.celery_worker
def test_batch_schedule_on_a_real_worker_records_and_sends_the_close(
    celery_worker, account, sandbox_reset, sandbox_control
):
    """run_due_batch_schedules.delay() records today's close and enqueues close_batch on commit, which sends it."""
    order = order_create(
        account=account,
        api_key=None,
        channel=Channel.TERMINAL,
        amount=Decimal("6.00"),
        currency="USD",
        description="Soup",
        terminal_sn="WPYB002248000865",
    ).obj
    sandbox_control.pay(order.merchant_order_no)
    # Due a minute ago (well inside the catch-up window), on a schedule saved long before.
    due_at = timezone.now() - timedelta(minutes=1)
    schedule = BatchCloseSchedule.objects.create(
        account=account, store_no=STORE_NO, local_time=due_at.time(), time_zone="UTC"
    )
    saved_long_ago = datetime(2024, 1, 1, tzinfo=UTC)
    BatchCloseSchedule.objects.filter(pk=schedule.pk).update(created_at=saved_long_ago, updated_at=saved_long_ago)

    tasks.run_due_batch_schedules.delay()
    tasks.run_due_batch_schedules.delay()  # a second beat process: still one close today

    wait_until(lambda: BatchClose.objects.filter(status=BatchCloseStatus.SUCCEEDED).exists())
    time.sleep(0.5)
    batch = BatchClose.objects.get()
    assert (batch.schedule_id, batch.business_date, batch.trigger) == (schedule.pk, due_at.date(), "schedule")
    assert (batch.count, batch.total_amount, batch.attempts) == (1, Decimal("6.000"), 1)
