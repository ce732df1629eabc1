"""The shared gateway rate limit: a strict pace of CODEPAY_MAX_QPS across workers, on an injected clock."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry

from payments.models import Channel, GatewayCall, Order
from payments.ratelimit import (
    LocalRateLimiter,
    RedisRateLimiter,
    gateway_rate_limiter,
    gateway_rate_limiters_reset,
)
from payments.services.orders import order_create
from payments.services.reconcile import reconciliation_run


class FakeTime:
    """A clock that only moves when something sleeps."""

    def __init__(self, start: float = 0.0):
        self.now = start

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def redis_client(settings):
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield client
    client.close()


@pytest.fixture
def limiter_key(redis_client):
    key = f"test:ratelimit:{uuid.uuid4().hex}"
    yield key
    redis_client.delete(key)


def most_in_any_second(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 1.0 - 1e-9) for start in times)


def test_local_limiter_spaces_requests_one_interval_apart():
    """At 5 per second, ten requests at the same instant go out 0.2 s apart: at most 5 in any second."""
    fake = FakeTime()
    limiter = LocalRateLimiter(qps=5, clock=fake.clock, sleep=fake.sleep)
    sent = []
    for _ in range(10):
        limiter()
        sent.append(round(fake.now, 6))
    assert sent == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    assert most_in_any_second(sent) == 5


def test_local_limiter_does_not_save_up_idle_time_for_a_burst():
    """After a quiet spell the next request goes at once, but the one after still waits a full interval."""
    fake = FakeTime()
    limiter = LocalRateLimiter(qps=4, clock=fake.clock, sleep=fake.sleep)
    limiter()
    fake.now += 10
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == 0.25


def test_two_workers_sharing_the_redis_limiter_keep_the_combined_pace(redis_client, limiter_key):
    """Two limiter instances (two worker processes) on one Redis key interleave their slots: 4 per second in all."""
    fake = FakeTime(1_700_000_000.0)
    worker_a = RedisRateLimiter(redis=redis_client, qps=4, key=limiter_key, clock=fake.clock, sleep=lambda s: None)
    worker_b = RedisRateLimiter(redis=redis_client, qps=4, key=limiter_key, clock=fake.clock, sleep=lambda s: None)
    waits = [worker.reserve() for worker in (worker_a, worker_b) * 4]
    assert waits == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]

    fake.now += 3.0  # the timeline has caught up: no wait, and no burst credit either
    assert [worker_a.reserve(), worker_b.reserve()] == [0.0, 0.25]


def test_redis_limiter_on_the_server_clock_paces_real_requests(redis_client, limiter_key):
    """Without an injected clock the Redis server's time is used: 3 reservations at 10 per second span 0.2 s."""
    limiter = RedisRateLimiter(redis=redis_client, qps=10, key=limiter_key)
    waits = [limiter.reserve() for _ in range(3)]
    assert waits[0] == 0.0
    assert 0.09 <= waits[1] <= 0.1
    assert 0.19 <= waits[2] <= 0.2


def test_a_reconcile_pass_waits_for_the_shared_limiter_before_each_query(
    account, sandbox_reset, redis_client, limiter_key
):
    """Six due orders at 2 queries per second: the pass sends one query per slot, 0.5 s apart on the injected clock."""
    for _ in range(6):
        order_create(
            account=account,
            api_key=None,
            channel=Channel.TERMINAL,
            amount=Decimal("3.00"),
            currency="USD",
            description="Bagel",
            terminal_sn="WPYB002248000865",
        )
    now = timezone.now()
    Order.objects.update(next_check_at=now - timedelta(seconds=1))
    fake = FakeTime(1_700_000_000.0)
    limiter = RedisRateLimiter(redis=redis_client, qps=2, key=limiter_key, clock=fake.clock, sleep=fake.sleep)
    slots = []

    def throttle():
        limiter()
        slots.append(fake.now - 1_700_000_000.0)

    report = reconciliation_run(throttle=throttle, clock=lambda: now)

    assert report.orders_checked == 6
    assert slots == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert GatewayCall.objects.filter(method="order.query").count() == 6


def test_the_limiter_is_shared_through_redis_only_when_the_broker_is_redis(settings):
    """Redis broker: the Redis limiter; the filesystem broker of `make run`: the in-process one; QPS 0: none."""
    gateway_rate_limiters_reset()
    try:
        settings.CODEPAY_MAX_QPS = 20
        assert isinstance(gateway_rate_limiter(), RedisRateLimiter)
        settings.CELERY_BROKER_URL = "filesystem://"
        assert isinstance(gateway_rate_limiter(), LocalRateLimiter)
        settings.CODEPAY_MAX_QPS = 0
        assert gateway_rate_limiter() is None
    finally:
        gateway_rate_limiters_reset()


def test_the_redis_limiter_falls_back_to_the_process_pace_when_redis_is_down():
    """An unreachable Redis does not stop reconciliation: this process keeps its own pace instead."""
    fake = FakeTime()
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    limiter = RedisRateLimiter(
        redis=unreachable, qps=5, fallback=LocalRateLimiter(qps=5, clock=fake.clock, sleep=fake.sleep), sleep=fake.sleep
    )
    assert [limiter.reserve(), round(limiter.reserve(), 9), round(limiter.reserve(), 9)] == [0.0, 0.2, 0.4]
