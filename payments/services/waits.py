"""
Waiting for an order to settle: ``GET /api/v1/orders/{no}/?wait=N`` without polling.

Why Redis pub/sub and an async view under an ASGI server: a wait is mostly doing nothing. Under gunicorn's
gthread worker every request in progress holds one of its threads until it answers (gthread only parks
idle keep-alive connections), so 200 waiting POS terminals would hold 200 threads, and with 2 x 16 threads
the notification receiver would queue behind them. PostgreSQL ``LISTEN`` would hold a database connection
per waiter. So the wait runs as an ``async`` view under uvicorn (the ``waits`` process; the router sends
requests carrying ``wait=`` there): a waiting client costs a coroutine and a Redis subscription, no thread
and no database connection (Django runs the short database reads on its one sync thread). The commit of
every move out of pending/processing/unknown publishes the order's id (``order_event`` ->
``order_settled_publish_on_commit``), so the waiter wakes at once and answers the order as the database has
it: the message carries no state to trust.

A lost message (Redis restarting) costs at most ``RECHECK_SECONDS``: the waiter looks at the database that
often anyway. Without any Redis (``make run`` on its filesystem broker) the wait looks every
``ORDER_WAIT_POLL_SECONDS``. Served by the WSGI process instead (no router), at most
``WSGI_MAX_WAITERS`` waits per process hold a thread; beyond that a wait answers at once with the current
state, so the receiver always keeps threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from typing import TypeVar

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import connections, transaction

logger = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL_PREFIX = "codepay:order-settled:"
RECHECK_SECONDS = 10.0
WSGI_MAX_WAITERS = 4

_publisher: redis.Redis | None = None
_publisher_url = ""
_publisher_lock = threading.Lock()
_wsgi_waiters = threading.BoundedSemaphore(WSGI_MAX_WAITERS)


def wait_redis_url() -> str:
    url = settings.ORDER_WAIT_REDIS_URL or settings.CELERY_BROKER_URL
    return url if url.startswith(("redis://", "rediss://", "unix://")) else ""


def order_channel(order_id: int) -> str:
    return f"{CHANNEL_PREFIX}{order_id}"


def _publisher_client(url: str) -> redis.Redis:
    global _publisher, _publisher_url
    with _publisher_lock:
        if _publisher is None or _publisher_url != url:
            # Short timeouts: a publish happens after a commit in a request or task, never worth waiting for.
            _publisher = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            _publisher_url = url
        return _publisher


def order_settled_publish(*, order_id: int) -> None:
    """Wake the clients waiting on this order; a Redis failure only delays them until their next look."""
    url = wait_redis_url()
    if not url:
        return
    try:
        _publisher_client(url).publish(order_channel(order_id), str(order_id))
    except redis.RedisError as exc:
        logger.warning("order change not published", extra={"order_id": order_id, "error_type": type(exc).__name__})


def order_settled_publish_on_commit(*, order_id: int) -> None:
    """Called when an order's status leaves pending/processing/unknown; published once the change is committed."""
    transaction.on_commit(lambda: order_settled_publish(order_id=order_id))


async def order_wait_until(*, order_id: int, seconds: float, is_settled: Callable[[], Awaitable[bool]]) -> None:
    """
    Return once ``is_settled()`` (a database read) says so, or after ``seconds``. Subscribes before the
    first read, so a change committed in between is never missed.
    """
    deadline = time.monotonic() + seconds
    url = wait_redis_url()
    if not url:
        while not await is_settled() and time.monotonic() < deadline:
            await asyncio.sleep(min(settings.ORDER_WAIT_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
        return
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1.0)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(order_channel(order_id))
        while not await is_settled():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # A message means the order settled (the caller reads it next); else look again every RECHECK_SECONDS.
            if await pubsub.get_message(timeout=min(remaining, RECHECK_SECONDS)) is not None:
                return
    except (redis.RedisError, OSError) as exc:
        logger.warning("order wait without Redis", extra={"order_id": order_id, "error_type": type(exc).__name__})
        while time.monotonic() < deadline and not await is_settled():
            await asyncio.sleep(min(settings.ORDER_WAIT_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
    finally:
        try:
            await pubsub.aclose()
            await client.aclose()
        except (redis.RedisError, OSError):
            pass


_database_slots: threading.BoundedSemaphore | None = None
_database_slots_lock = threading.Lock()


def _slots() -> threading.BoundedSemaphore:
    global _database_slots
    with _database_slots_lock:
        if _database_slots is None:
            _database_slots = threading.BoundedSemaphore(settings.ORDER_WAIT_DATABASE_CONCURRENCY)
        return _database_slots


def database_read_then_release(read: Callable[[], T]) -> T:
    """
    Run a short database read for a waiting request, then give its connection back. Waits arrive in bursts
    (every terminal of a store after a push); at most ``ORDER_WAIT_DATABASE_CONCURRENCY`` of these reads
    run at once per process, so a burst of 200 waiters costs that many connections, not 200.
    """
    with _slots():
        try:
            return read()
        finally:
            connections.close_all()


@contextmanager
def wsgi_wait_slot(*, is_wsgi: bool):
    """Under WSGI a wait holds a thread: yields False when this process already has its share of waiters."""
    if not is_wsgi:
        yield True
        return
    acquired = _wsgi_waiters.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            _wsgi_waiters.release()
