"""
Fault injection: the sandbox fails the ways a real gateway and network fail, on request.

Call faults are chosen per method ("*" for any) and fire a number of ``times`` (default once) or with a
``rate`` (0..1, until cleared):

- ``latency``: wait ``seconds``, then answer normally.
- ``http_500``: answer 500 without processing; nothing happened, so a retry is safe.
- ``http_500_after``: process, then answer 500; the order exists although the caller saw an error.
- ``timeout_after_create``: process, then wait ``seconds`` before answering, so the caller's read times
  out on a call that did act. These last two are why a money-moving call is resolved by query, never resent.
- ``refund_async``: a refund stays in progress (status 0) until the control API completes or fails it.
- ``unsigned_errors``: error answers (``code`` != "0") go out without ``sign``, as a gateway that never
  signs its refusals would send them (docs/protocol.md, "Responses"). It counts only error answers; give
  ``"rate": 1`` to leave every one unsigned until cleared.

Notification faults apply to each notification as it is raised:

- ``drop``: never sent (recorded as dropped). ``delay``: sent after ``seconds``.
- ``duplicate``: ``count`` copies (default 2) delivered concurrently.
- ``reorder``: after the final notification, a stale in-progress (status 0) one for the same order.

The plan has its own lock: it is independent of the transactions, and taking a fault must not wait on a
long state operation.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass

from payments.gateway.methods import Method

CALL_FAULTS = frozenset(
    {"latency", "http_500", "http_500_after", "timeout_after_create", "refund_async", "unsigned_errors"}
)
NOTIFICATION_FAULTS = frozenset({"drop", "duplicate", "reorder", "delay"})
ANY_METHOD = "*"


@dataclass
class Fault:
    fault: str
    method: str = ANY_METHOD
    seconds: float = 0.0
    count: int = 2
    times: int | None = 1  # None when the fault fires by rate until cleared
    rate: float | None = None


class FaultPlan:
    def __init__(self, *, rng: random.Random | None = None):
        self._lock = threading.Lock()
        self._rng = rng or random.Random()
        self._call_faults: list[Fault] = []
        self._notification_faults: list[Fault] = []
        # How often each kind fired since the start or the last reset, for the control API (a chaos run's table).
        self._fired: Counter[str] = Counter()

    def add_call_fault(self, spec: dict) -> dict:
        """Add a call fault from its control API description; ``ValueError`` names what is wrong."""
        fault = _parse(spec, CALL_FAULTS)
        method = spec.get("method", ANY_METHOD)
        if method != ANY_METHOD and method not in {m.value for m in Method}:
            raise ValueError(f"'method' must be a CodePay method name or \"*\", got {method!r}.")
        fault.method = method
        with self._lock:
            self._call_faults.append(fault)
        return asdict(fault)

    def add_notification_fault(self, spec: dict) -> dict:
        fault = _parse(spec, NOTIFICATION_FAULTS)
        with self._lock:
            self._notification_faults.append(fault)
        return asdict(fault)

    def take_call_fault(self, method: str, kinds: frozenset[str]) -> Fault | None:
        """The first armed fault of one of ``kinds`` for ``method``, used up if it counts its ``times``."""
        with self._lock:
            return self._take(self._call_faults, lambda f: f.fault in kinds and f.method in (ANY_METHOD, method))

    def take_notification_fault(self) -> Fault | None:
        with self._lock:
            return self._take(self._notification_faults, lambda f: True)

    def clear(self) -> None:
        with self._lock:
            self._call_faults.clear()
            self._notification_faults.clear()

    def reset(self) -> None:
        """Clear every fault and forget how often each fired."""
        self.clear()
        with self._lock:
            self._fired.clear()

    def fired(self) -> dict[str, int]:
        with self._lock:
            return dict(self._fired)

    def _take(self, faults: list[Fault], wanted) -> Fault | None:
        for fault in faults:
            if not wanted(fault):
                continue
            if fault.rate is not None:
                if self._rng.random() < fault.rate:
                    self._fired[fault.fault] += 1
                    return fault
                continue
            if fault.times is None:  # neither a rate nor a count: _parse never builds one
                continue
            fault.times -= 1
            if fault.times == 0:
                faults.remove(fault)
            self._fired[fault.fault] += 1
            return fault
        return None


def _parse(spec: dict, kinds: frozenset[str]) -> Fault:
    if not isinstance(spec, dict):
        raise ValueError("The body must be a JSON object.")
    fault = spec.get("fault")
    if fault not in kinds:
        raise ValueError(f"'fault' must be one of {', '.join(sorted(kinds))}; got {fault!r}.")
    seconds = _number(spec, "seconds", 0.0, float)
    count = _number(spec, "count", 2, int)
    if seconds < 0 or count < 1:
        raise ValueError("'seconds' must be >= 0 and 'count' >= 1.")
    if "rate" in spec:
        if "times" in spec:
            raise ValueError("Give either 'times' or 'rate', not both.")
        rate = _number(spec, "rate", 1.0, float)
        if not 0 <= rate <= 1:
            raise ValueError("'rate' must be between 0 and 1.")
        return Fault(fault=fault, seconds=seconds, count=count, times=None, rate=rate)
    times = _number(spec, "times", 1, int)
    if times < 1:
        raise ValueError("'times' must be at least 1.")
    return Fault(fault=fault, seconds=seconds, count=count, times=times)


def _number(spec: dict, name: str, default, kind: type):
    value = spec.get(name, default)
    # bool is an int in Python; "times": true is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ValueError(f"'{name}' must be a {'whole ' if kind is int else ''}number.")
    return kind(value)
