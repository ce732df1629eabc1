"""
Handing stored deliveries to the Celery worker without making the sender wait for the broker.

The apply task is imported from ``webhooks.tasks`` when first sent, not looked up in the Celery app's
registry: a web process never runs the worker's task discovery, so there the registry does not hold it.

Why a queue and one publisher thread per process: the receiver answers as soon as the delivery row is
committed; publishing the apply task is a convenience on top (the periodic sweep applies any delivery
whose task never arrived, through ``next_attempt_at``). Publishing inline cost a thread and a new broker
connection per delivery and, with the broker down or hung, up to the publish timeout of every answer. Here
a request only puts the delivery's id on a bounded in-process queue; one long-lived thread publishes from
it over one persistent producer, reconnecting when needed, one ``apply_notifications`` message for up to
``TASK_DELIVERIES`` deliveries that arrived together (a publish per delivery cost the receiver a fifth of
its CPU under load).

What a failure does: a delivery whose publish failed, or that did not fit in the queue, is made due at once
(its ``next_attempt_at`` moves to now, or to when its retry was meant to run), so the next sweep applies it.
After a failed publish the thread stops trying for ``BROKER_RETRY_SECONDS`` and marks whatever arrives
meanwhile due in one update, so a broker outage costs one query per batch, not a timeout per delivery.
A process that dies with ids still queued loses nothing: those deliveries are already due for the sweep
after its grace period. A publish that succeeds late only makes an apply run twice, which changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from datetime import timedelta

from celery import Task
from django.db import close_old_connections, connection
from django.utils import timezone

from .. import conf
from ..models import PENDING_STATUSES, NotificationDelivery

logger = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
# How long the publisher waits for more deliveries to name in one message: far below the sweep's grace
# period and a gateway's patience, and enough to batch a burst.
GATHER_SECONDS = 0.02
# After a failed publish: no new attempt for this long; deliveries arriving meanwhile are made due at once.
BROKER_RETRY_SECONDS = 5.0
_BATCH = 500
# Deliveries named in one task message: one publish per message instead of per delivery, while the
# worker's processes still share a burst between them.
TASK_DELIVERIES = 16
# The apply tasks' names, given by ``webhooks.tasks``.
APPLY_TASK = "webhooks.tasks.apply_notification"
APPLY_MANY_TASK = "webhooks.tasks.apply_notifications"


def _apply_task(*, many: bool = False) -> Task:
    # Imported here, not at the top: ``webhooks.tasks`` imports these services.
    from webhooks.tasks import apply_notification, apply_notifications

    return apply_notifications if many else apply_notification


class _Publisher:
    def __init__(self):
        self._queue: queue.Queue[tuple[int, float]] = queue.Queue(maxsize=QUEUE_SIZE)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._connection = None
        self._producer = None
        self._broker_url = ""
        self._broker_down_until = 0.0
        self._broker_down_url = ""

    def submit(self, delivery_id: int, countdown: float) -> bool:
        """Queue the delivery's apply task for publishing; False when the queue is full (the caller makes it due)."""
        self._ensure_thread()
        try:
            self._queue.put_nowait((delivery_id, countdown))
        except queue.Full:
            return False
        return True

    def _ensure_thread(self) -> None:
        # A forked child (gunicorn and Celery workers) has the parent's object but none of its threads.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._queue = queue.Queue(maxsize=QUEUE_SIZE)
            self._connection = self._producer = None
            self._thread = threading.Thread(target=self._run, name="notification-publisher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Deliveries arriving within a few milliseconds share a message: under load that is most of them.
            gathered_by = time.monotonic() + GATHER_SECONDS
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get(timeout=max(gathered_by - time.monotonic(), 0)))
                except queue.Empty:
                    break
            close_old_connections()
            failed = batch if self._broker_resting() else self._publish(batch)
            if failed:
                _make_due(failed)
                # Hold no database connection between outages.
                connection.close()

    def _broker_resting(self) -> bool:
        """Within the pause after a failed publish, for the same broker (a new broker URL is tried at once)."""
        apply_notification = _apply_task()
        return (
            time.monotonic() < self._broker_down_until
            and apply_notification.app.conf.broker_url == self._broker_down_url
        )

    def _publish(self, batch: list[tuple[int, float]]) -> list[tuple[int, float]]:
        apply_notifications = _apply_task(many=True)
        chunks = _chunks(batch)
        for index, chunk in enumerate(chunks):
            try:
                producer = self._current_producer(apply_notifications.app)
                apply_notifications.apply_async(
                    args=([delivery_id for delivery_id, _ in chunk],),
                    countdown=chunk[0][1] or None,  # type: ignore[arg-type]  # Celery takes None: no countdown
                    producer=producer,
                    retry=False,
                )
            except Exception as exc:  # kombu, redis, socket errors: any failure means "not queued"
                self._close()
                self._broker_down_until = time.monotonic() + BROKER_RETRY_SECONDS
                self._broker_down_url = apply_notifications.app.conf.broker_url
                failed = [item for rest in chunks[index:] for item in rest]
                logger.warning(
                    "notification tasks not queued: broker unavailable",
                    extra={"deliveries": len(failed), "error_type": type(exc).__name__},
                )
                return failed
        return []

    def _current_producer(self, app):
        broker_url = app.conf.broker_url or ""
        if self._producer is None or broker_url != self._broker_url:
            self._close()
            connection = app.connection_for_write(
                transport_options={
                    **(app.conf.broker_transport_options or {}),
                    # A broker host that accepts and never answers must not hold the publisher for long.
                    "socket_connect_timeout": conf.publish_timeout_seconds(),
                    "socket_timeout": conf.publish_timeout_seconds(),
                }
            )
            connection.ensure_connection(max_retries=0)
            self._connection, self._producer, self._broker_url = connection, app.amqp.Producer(connection), broker_url
        return self._producer

    def _close(self) -> None:
        if self._connection is not None:
            # Closing a broken connection may fail too; it is dropped either way.
            with contextlib.suppress(Exception):
                self._connection.release()
        self._connection = self._producer = None


def _chunks(batch: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    """The batch as task messages: deliveries with the same countdown together, at most ``TASK_DELIVERIES`` each."""
    by_countdown: dict[float, list[tuple[int, float]]] = {}
    for item in batch:
        by_countdown.setdefault(item[1], []).append(item)
    return [
        items[start : start + TASK_DELIVERIES]
        for items in by_countdown.values()
        for start in range(0, len(items), TASK_DELIVERIES)
    ]


def _make_due(items: list[tuple[int, float]]) -> None:
    """Deliveries not queued: due now (or when their retry was meant to run), for the next sweep."""
    now = timezone.now()
    by_countdown: dict[float, list[int]] = {}
    for delivery_id, countdown in items:
        by_countdown.setdefault(countdown, []).append(delivery_id)
    try:
        for countdown, ids in by_countdown.items():
            NotificationDelivery.objects.filter(
                pk__in=ids, status__in=PENDING_STATUSES, next_attempt_at__isnull=False
            ).update(next_attempt_at=now + timedelta(seconds=countdown))
    except Exception:  # the database is down too: the grace period set at intake still makes them due
        logger.exception(
            "notification deliveries not made due after a failed publish", extra={"deliveries": len(items)}
        )


_publisher = _Publisher()


def apply_task_submit(delivery_id: int, *, countdown: float = 0) -> bool:
    """Publish ``apply_notification`` for the delivery in the background; False: not taken (make it due)."""
    return _publisher.submit(delivery_id, countdown)


def apply_task_pending_make_due(delivery_id: int, *, countdown: float = 0) -> None:
    _make_due([(delivery_id, countdown)])


def apply_task_publish(delivery_id: int, *, countdown: float = 0) -> bool:
    """
    Queue ``apply_notification`` without waiting for the broker: True when it is handed to this process's
    publisher, which makes the delivery due for the sweep if the publish fails.
    """
    apply_notification = _apply_task()
    if apply_notification.app.conf.task_always_eager:
        # Celery takes None for "no countdown"; its stubs say float only.
        apply_notification.apply_async(args=(delivery_id,), countdown=countdown or None)  # type: ignore[arg-type]
        return True
    return apply_task_submit(delivery_id, countdown=countdown)


def notification_apply_later(*, delivery_id: int, countdown: float) -> bool:
    """Queue the next attempt as a countdown task; when it is queued the sweep waits a grace period past it."""
    countdown = min(countdown, conf.max_task_delay_seconds())
    queued = apply_task_publish(delivery_id, countdown=countdown)
    if queued:
        NotificationDelivery.objects.filter(
            pk=delivery_id, status__in=PENDING_STATUSES, next_attempt_at__isnull=False
        ).update(next_attempt_at=timezone.now() + timedelta(seconds=countdown + conf.sweep_grace_seconds()))
    return queued
