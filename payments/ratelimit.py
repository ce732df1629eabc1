"""
One pace for every request to the gateway, shared by every worker process.

CodePay publishes no rate limit, but a reconciler that wakes a thousand overdue orders at once must not
fire a thousand queries in the same second. ``settings.CODEPAY_MAX_QPS`` caps the pace across all worker
processes and machines.

How: each request reserves the next free slot on one timeline kept in Redis. The slot is
``max(now, last slot + 1/QPS)``; the caller sleeps until its slot, then sends. Reserving is one atomic
Lua script, so two processes can never take the same slot, and slots are at least ``1/QPS`` apart, so
no window of one second ever holds more than ``QPS`` requests (a strict pace, no bursts). A caller never
gets a refusal to handle: it just waits its turn. Time comes from the Redis server by default, so the
clocks of the worker machines do not have to agree; tests inject a clock and a sleep instead.

When the broker is not Redis (the embedded filesystem broker of ``make run``) there is nothing shared
to keep the timeline in; the same algorithm then runs in-process (one worker process is the norm there).
If Redis cannot be reached, the limiter falls back to the in-process pace rather than stopping work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings

logger = logging.getLogger(__name__)

GATEWAY_KEY = "codepay:ratelimit:gateway"
REDIS_RETRY_AFTER_SECONDS = 30.0
_MICROS = 1_000_000

# KEYS[1]: the timeline key. ARGV[1]: microseconds between slots. ARGV[2]: now in microseconds, or ""
# to use the Redis server's clock. Returns the microseconds to wait before the reserved slot.
# Microsecond integers stay exact in Lua's doubles (below 2^53), and the integer reply is not truncated.
_RESERVE_SCRIPT = """
local interval = tonumber(ARGV[1])
local now
if ARGV[2] == '' then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
    now = tonumber(ARGV[2])
end
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, last + interval)
redis.call('SET', KEYS[1], string.format('%d', slot), 'PX', math.floor((slot - now) / 1000) + 60000)
return slot - now
"""


class LocalRateLimiter:
    """The pace within one process: thread-safe, the same slot rule as the shared limiter."""

    def __init__(
        self, *, qps: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ):
        if qps <= 0:
            raise ValueError("qps must be positive")
        self.interval = 1.0 / qps
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last: float | None = None

    def reserve(self) -> float:
        """Take the next slot; the seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            slot = now if self._last is None else max(now, self._last + self.interval)
            self._last = slot
            return slot - now

    def __call__(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


class RedisRateLimiter:
    """The pace across every process that shares ``key`` in Redis."""

    def __init__(
        self,
        *,
        redis,
        qps: float,
        key: str = GATEWAY_KEY,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fallback: LocalRateLimiter | None = None,
    ):
        if qps <= 0:
            raise ValueError("qps must be positive")
        self.interval = 1.0 / qps
        self.key = key
        self._redis = redis
        self._script = redis.register_script(_RESERVE_SCRIPT)
        self._clock = clock
        self._sleep = sleep
        self._fallback = fallback or LocalRateLimiter(qps=qps, sleep=sleep)
        # After a failure, Redis is left alone for a while rather than making every request wait on it.
        self._redis_down_until = 0.0

    def reserve(self) -> float:
        """Take the next slot on the shared timeline; the seconds to wait before using it."""
        import redis as redis_lib

        if time.monotonic() < self._redis_down_until:
            return self._fallback.reserve()
        now = "" if self._clock is None else str(round(self._clock() * _MICROS))
        try:
            wait_us = self._script(keys=[self.key], args=[round(self.interval * _MICROS), now])
        except redis_lib.RedisError as exc:
            self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_SECONDS
            logger.warning(
                "gateway rate limiter: Redis unavailable, pacing this process alone", extra={"error": str(exc)}
            )
            return self._fallback.reserve()
        return int(wait_us) / _MICROS

    def __call__(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


_limiters: dict[tuple[str, float], Callable[[], None]] = {}
_limiters_lock = threading.Lock()


def gateway_rate_limiter() -> Callable[[], None] | None:
    """
    The process's limiter for gateway requests, for ``gateway_client_for(account, throttle=...)``.

    Shared through Redis when the Celery broker is Redis, in-process otherwise; None when
    ``CODEPAY_MAX_QPS`` is 0 (no limit).
    """
    qps = float(settings.CODEPAY_MAX_QPS)
    if qps <= 0:
        return None
    broker = settings.CELERY_BROKER_URL
    cache_key = (broker, qps)
    with _limiters_lock:
        limiter = _limiters.get(cache_key)
        if limiter is None:
            if broker.startswith(("redis://", "rediss://")):
                import redis as redis_lib
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                # No retries inside the client: a failure switches to the in-process pace at once.
                client = redis_lib.Redis.from_url(
                    broker, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
                )
                limiter = RedisRateLimiter(redis=client, qps=qps)
            else:
                limiter = LocalRateLimiter(qps=qps)
            _limiters[cache_key] = limiter
    return limiter


def gateway_rate_limiters_reset() -> None:
    """Forget the cached limiters (after the settings change, e.g. in tests)."""
    with _limiters_lock:
        _limiters.clear()
