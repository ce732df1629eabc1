"""
The periodic sweep against the sandbox (a slow gateway is its latency fault): it keeps to its time
budget, and Celery's soft time limit stops it without being taken for a failure of a delivery.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
from billiard.pool import soft_timeout_sighandler
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from tests.webhooks.conftest import deliveries_for, terminal_order
from webhooks.models import NotificationDelivery, ProcessingStatus
from webhooks.services import notifications_apply_due


def _paid_orders_notified(account, control, numbers: list[str]) -> list[NotificationDelivery]:
    for number in numbers:
        terminal_order(account, number)
        control.pay(number)
    return [deliveries_for(number, 1)[0] for number in numbers]


def test_the_sweep_stops_at_its_time_budget_and_leaves_the_rest_due(sandbox_account, sandbox_control):
    """
    With a budget of half a second and a clock on which each applied delivery takes one second, the sweep
    applies the first of three due deliveries and stops. The two it claimed and did not reach are due again
    at once (not when their lease runs out), untouched, and the next sweep applies them.
    """
    first, *rest = _paid_orders_notified(sandbox_account, sandbox_control, ["BUDGET-1", "BUDGET-2", "BUDGET-3"])

    def one_second_per_applied_delivery() -> float:
        return float(NotificationDelivery.objects.filter(status=ProcessingStatus.APPLIED).count())

    outcomes = notifications_apply_due(time_budget_seconds=0.5, clock=one_second_per_applied_delivery)

    assert [(outcome.delivery_id, outcome.status) for outcome in outcomes] == [(first.pk, ProcessingStatus.APPLIED)]
    now = timezone.now()
    assert [
        (delivery.status, delivery.attempts, delivery.next_attempt_at <= now)
        for delivery in NotificationDelivery.objects.filter(pk__in=[d.pk for d in rest]).order_by("id")
    ] == [(ProcessingStatus.RECEIVED, 0, True)] * 2

    assert [outcome.status for outcome in notifications_apply_due()] == [ProcessingStatus.APPLIED] * 2


@pytest.fixture
def soft_time_limit_signal():
    """SIGUSR1 raises SoftTimeLimitExceeded, as in a prefork worker at the task's soft time limit."""
    previous = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    yield lambda: os.kill(os.getpid(), signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, previous)


def test_a_soft_time_limit_stops_the_sweep_and_leaves_the_delivery_due(
    sandbox_account, sandbox_control, soft_time_limit_signal
):
    """
    Celery's soft time limit arriving while a confirmation query waits is not a failure to retry: the sweep
    raises SoftTimeLimitExceeded, the delivery stays "received" with no error recorded and is due again
    at once, and the next sweep applies it.
    """
    [delivery] = _paid_orders_notified(sandbox_account, sandbox_control, ["SOFT-1"])
    sandbox_control.fault(fault="latency", method="order.query", seconds=1.5)
    timer = threading.Timer(0.5, soft_time_limit_signal)

    timer.start()
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            notifications_apply_due()
    finally:
        timer.cancel()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error, delivery.next_attempt_at <= timezone.now()) == (
        ProcessingStatus.RECEIVED,
        1,
        "",
        True,
    )
    assert [outcome.status for outcome in notifications_apply_due()] == [ProcessingStatus.APPLIED]
