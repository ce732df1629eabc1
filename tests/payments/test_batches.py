"""Batch closes: schedules per store and time zone, once per business day, retries, and the command."""

import threading
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from payments.models import BatchClose, BatchCloseSchedule, BatchCloseStatus, Channel
from payments.services.batches import (
    CATCH_UP_WINDOW,
    batch_close,
    batch_close_attempt,
    batch_closes_claim_due,
    batch_schedules_open_due,
)
from payments.services.orders import order_create
from tests.conftest import STORE_NO

TERMINAL_SN = "WPYB002248000865"


def schedule_for(
    account, *, local_time: time, time_zone: str, weekdays=None, store_no=STORE_NO, terminals=None
) -> BatchCloseSchedule:
    schedule = BatchCloseSchedule.objects.create(
        account=account,
        store_no=store_no,
        local_time=local_time,
        time_zone=time_zone,
        weekdays=weekdays or [1, 2, 3, 4, 5, 6, 7],
        terminal_sn_list=terminals or [],
    )
    # No occurrence before a schedule's last save fires; these were saved long ago.
    saved_long_ago = datetime(2024, 1, 1, tzinfo=UTC)
    BatchCloseSchedule.objects.filter(pk=schedule.pk).update(created_at=saved_long_ago, updated_at=saved_long_ago)
    schedule.refresh_from_db()
    return schedule


def opened(now: datetime) -> list[tuple[str, date]]:
    return sorted((batch.schedule.time_zone.key, batch.business_date) for batch in batch_schedules_open_due(now=now))


def paid_terminal_sale(account, sandbox_control, amount="10.00", terminal_sn=TERMINAL_SN):
    order = order_create(
        account=account,
        api_key=None,
        channel=Channel.TERMINAL,
        amount=Decimal(amount),
        currency="USD",
        description="Lunch",
        terminal_sn=terminal_sn,
    ).obj
    sandbox_control.pay(order.merchant_order_no)
    return order


def test_schedules_fire_once_per_local_business_day_across_beat_runs_and_time_zones(account):
    """Tokyo at 19:00 and Los Angeles at 02:30 close once per local day, whatever the number of beat runs.
    2024-03-10 is the US spring-forward day: 02:30 never happens in Los Angeles, so that close fires at 03:00."""
    schedule_for(account, local_time=time(19, 0), time_zone="Asia/Tokyo")
    schedule_for(account, local_time=time(2, 30), time_zone="America/Los_Angeles")

    # 09:59Z: Tokyo 18:59 (not yet); Los Angeles 01:59 PST, the last minute before the jump (not yet).
    assert opened(datetime(2024, 3, 10, 9, 59, tzinfo=UTC)) == []
    # 10:00Z: Tokyo 19:00 Sunday; Los Angeles 03:00 PDT, past the skipped 02:30.
    assert opened(datetime(2024, 3, 10, 10, 0, tzinfo=UTC)) == [
        ("America/Los_Angeles", date(2024, 3, 10)),
        ("Asia/Tokyo", date(2024, 3, 10)),
    ]
    # A second beat run the same minute, and later the same local days: nothing more.
    assert opened(datetime(2024, 3, 10, 10, 0, 30, tzinfo=UTC)) == []
    assert opened(datetime(2024, 3, 10, 14, 59, tzinfo=UTC)) == []
    # 15:00Z: Tokyo is already Monday 00:00 (before 19:00); Los Angeles is still Sunday.
    assert opened(datetime(2024, 3, 10, 15, 0, tzinfo=UTC)) == []
    # Next day, each at its own local time.
    assert opened(datetime(2024, 3, 11, 9, 30, tzinfo=UTC)) == [("America/Los_Angeles", date(2024, 3, 11))]
    assert opened(datetime(2024, 3, 11, 10, 0, tzinfo=UTC)) == [("Asia/Tokyo", date(2024, 3, 11))]
    assert BatchClose.objects.filter(trigger=BatchClose.Trigger.SCHEDULE).count() == 4


def test_a_time_repeated_when_clocks_fall_back_fires_only_the_first_time(account):
    """2024-11-03 01:30 happens twice in Los Angeles (PDT, then PST): one close for the day."""
    schedule_for(account, local_time=time(1, 30), time_zone="America/Los_Angeles")
    assert opened(datetime(2024, 11, 3, 8, 30, tzinfo=UTC)) == [("America/Los_Angeles", date(2024, 11, 3))]
    assert opened(datetime(2024, 11, 3, 9, 30, tzinfo=UTC)) == []


def test_schedules_fire_only_on_their_weekdays_and_only_when_enabled(account):
    """A weekday-only schedule skips Sunday; a disabled schedule never fires."""
    schedule_for(account, local_time=time(19, 0), time_zone="Asia/Tokyo", weekdays=[1, 2, 3, 4, 5])
    off = schedule_for(account, local_time=time(19, 0), time_zone="Europe/Paris", store_no="4021000009")
    BatchCloseSchedule.objects.filter(pk=off.pk).update(enabled=False)
    assert opened(datetime(2024, 3, 10, 10, 0, tzinfo=UTC)) == []  # Sunday 2024-03-10 in Tokyo
    assert opened(datetime(2024, 3, 11, 10, 0, tzinfo=UTC)) == [("Asia/Tokyo", date(2024, 3, 11))]


def test_a_schedule_saved_after_todays_time_starts_tomorrow(account):
    """Saving a 09:00 schedule at 15:00 does not close the batch that afternoon."""
    schedule = BatchCloseSchedule.objects.create(
        account=account, store_no=STORE_NO, local_time=time(9, 0), time_zone="UTC"
    )
    saved_at = datetime(2024, 5, 6, 15, 0, tzinfo=UTC)
    BatchCloseSchedule.objects.filter(pk=schedule.pk).update(created_at=saved_at, updated_at=saved_at)
    assert opened(datetime(2024, 5, 6, 15, 1, tzinfo=UTC)) == []
    assert opened(datetime(2024, 5, 7, 9, 0, tzinfo=UTC)) == [("UTC", date(2024, 5, 7))]


def test_re_enabling_a_schedule_or_moving_it_earlier_after_todays_time_waits_for_the_next_day(account):
    """At 15:00 one 09:00 schedule is re-enabled and an 18:00 one is moved to 09:00: neither closes that
    afternoon (today's 09:00 came before the save), and both close at 09:00 the next day."""
    reenabled = schedule_for(account, local_time=time(9, 0), time_zone="UTC")
    moved = schedule_for(account, local_time=time(18, 0), time_zone="UTC", store_no="4021000009")
    saved_at = datetime(2024, 5, 6, 15, 0, tzinfo=UTC)  # updated_at, as the admin's save sets it
    BatchCloseSchedule.objects.filter(pk=reenabled.pk).update(enabled=True, updated_at=saved_at)
    BatchCloseSchedule.objects.filter(pk=moved.pk).update(local_time=time(9, 0), updated_at=saved_at)

    assert batch_schedules_open_due(now=datetime(2024, 5, 6, 15, 1, tzinfo=UTC)) == []
    assert batch_schedules_open_due(now=datetime(2024, 5, 6, 18, 0, tzinfo=UTC)) == []
    next_day = batch_schedules_open_due(now=datetime(2024, 5, 7, 9, 0, tzinfo=UTC))
    assert sorted((batch.store_no, batch.business_date) for batch in next_day) == [
        (STORE_NO, date(2024, 5, 7)),
        ("4021000009", date(2024, 5, 7)),
    ]


def test_a_close_whose_beat_run_comes_after_local_midnight_fires_for_the_day_before(account):
    """A 23:59 New York close on Fridays: the beat run due at 23:59 comes at 00:00:30 Saturday, and the close is
    still made, once, for Friday. On Monday at 23:58 Friday's occurrence is far outside the catch-up window."""
    schedule_for(account, local_time=time(23, 59), time_zone="America/New_York", weekdays=[5])
    # 2024-06-08 04:00:30Z is Saturday 00:00:30 EDT.
    assert opened(datetime(2024, 6, 8, 4, 0, 30, tzinfo=UTC)) == [("America/New_York", date(2024, 6, 7))]
    assert opened(datetime(2024, 6, 8, 4, 1, 30, tzinfo=UTC)) == []
    assert opened(datetime(2024, 6, 11, 3, 58, tzinfo=UTC)) == []
    assert BatchClose.objects.get().business_date == date(2024, 6, 7)


def test_a_close_is_caught_up_within_the_window_and_dropped_after_it(account):
    """A 09:00 close missed while beat was down is made by the first run up to CATCH_UP_WINDOW later (for its own
    day); a run after the window leaves that day without a close and waits for the next occurrence."""
    schedule_for(account, local_time=time(9, 0), time_zone="UTC")
    assert timedelta(hours=6) == CATCH_UP_WINDOW
    assert opened(datetime(2024, 5, 6, 15, 0, tzinfo=UTC)) == [("UTC", date(2024, 5, 6))]
    assert opened(datetime(2024, 5, 7, 15, 1, tzinfo=UTC)) == []
    assert opened(datetime(2024, 5, 8, 2, 0, tzinfo=UTC)) == []
    assert opened(datetime(2024, 5, 8, 9, 0, tzinfo=UTC)) == [("UTC", date(2024, 5, 8))]
    assert sorted(BatchClose.objects.values_list("business_date", flat=True)) == [date(2024, 5, 6), date(2024, 5, 8)]


def test_two_beat_processes_racing_record_one_close(transactional_db, account):
    """Two processes evaluate the same schedule at once: the unique (schedule, business_date) lets one insert win."""
    schedule_for(account, local_time=time(19, 0), time_zone="Asia/Tokyo")
    now = datetime(2024, 3, 11, 10, 0, tzinfo=UTC)
    first_inserted = threading.Event()
    results = {}

    def first():
        try:
            with transaction.atomic():
                results["first"] = len(batch_schedules_open_due(now=now))
                first_inserted.set()
                threading.Event().wait(0.5)  # the second process runs into the uncommitted row meanwhile
        finally:
            connection.close()

    def second():
        try:
            assert first_inserted.wait(10)
            results["second"] = len(batch_schedules_open_due(now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == {"first": 1, "second": 0}
    assert BatchClose.objects.filter(business_date=date(2024, 3, 11)).count() == 1


def test_a_scheduled_close_records_the_gateways_count_total_and_answer(account, sandbox_reset, sandbox_control):
    """The close of the schedule's terminals goes to the published per-terminal batch.close; the record keeps
    the count and total read just before, and the closed batch is no longer open at the gateway. Closing
    the whole store (no terminals known) falls back to the terminal-list close."""
    paid_terminal_sale(account, sandbox_control, "10.00")
    paid_terminal_sale(account, sandbox_control, "2.50")
    paid_terminal_sale(account, sandbox_control, "7.00", terminal_sn="WPYB002248000999")
    schedule_for(account, local_time=time(19, 0), time_zone="Asia/Tokyo", terminals=[TERMINAL_SN])

    [batch] = batch_schedules_open_due(now=datetime(2024, 3, 11, 10, 0, tzinfo=UTC))
    batch = batch_close_attempt(batch=batch)

    assert batch.status == BatchCloseStatus.SUCCEEDED
    assert (batch.count, batch.total_amount, batch.attempts, batch.next_attempt_at) == (2, Decimal("12.50"), 1, None)
    assert batch.response == {
        "closed_terminal_sns": [TERMINAL_SN],
        "open_batch_before": {"count": "2", "total_amount": "12.50"},
    }
    assert [
        call["method"] for call in sandbox_control.get("calls").json()["calls"] if call["method"].startswith("batch")
    ] == [
        "batch.open.query",
        "batch.close",
    ]
    assert (batch.trigger, batch.store_no, batch.terminal_sn_list) == ("schedule", STORE_NO, [TERMINAL_SN])
    # Closing again finds nothing left of those terminals; the other terminal's sale is still open.
    again = batch_close(account=account, trigger=BatchClose.Trigger.COMMAND, store_no=STORE_NO)
    assert (again.count, again.total_amount) == (1, Decimal("7.00"))


def test_a_failed_close_is_retried_with_back_off_a_bounded_number_of_times(account, sandbox_reset, sandbox_control):
    """Each failed attempt schedules the next one later (1, 5, 15, 30 min); after 5 attempts it stops and stays
    visible with its attempts; a retry by hand still works."""
    sandbox_control.fault(fault="http_500", method="batch.close.terminals", times=5)
    before = timezone.now()
    batch = batch_close(account=account, trigger=BatchClose.Trigger.COMMAND, store_no=STORE_NO)
    assert (batch.status, batch.attempts, batch.gateway_message) == (
        BatchCloseStatus.UNKNOWN,
        1,
        "the gateway answered HTTP 500",
    )
    assert before + timedelta(minutes=1) <= batch.next_attempt_at <= timezone.now() + timedelta(minutes=1)

    # Not due yet: the sweep leaves it.
    assert batch_closes_claim_due(now=batch.next_attempt_at - timedelta(seconds=1)) == []
    for attempts, delay in (
        (2, timedelta(minutes=5)),
        (3, timedelta(minutes=15)),
        (4, timedelta(minutes=30)),
        (5, None),
    ):
        assert batch_closes_claim_due(now=batch.next_attempt_at) == [batch.pk]
        started = timezone.now()
        batch = batch_close_attempt(batch=batch)
        assert (batch.status, batch.attempts) == (BatchCloseStatus.UNKNOWN, attempts)
        if delay is None:
            assert batch.next_attempt_at is None
        else:
            assert started + delay <= batch.next_attempt_at <= timezone.now() + delay
    assert batch_closes_claim_due(now=timezone.now() + timedelta(days=1)) == []

    batch = batch_close_attempt(batch=batch)  # an operator's retry
    assert (batch.status, batch.attempts, batch.count) == (BatchCloseStatus.SUCCEEDED, 6, 0)


def test_close_batches_command_closes_now_through_the_same_service(account, sandbox_reset, sandbox_control, capsys):
    """
    `manage.py close_batches --now --store S -v 2` records a close with trigger "command" and prints its
    result, then the summary.
    """
    paid_terminal_sale(account, sandbox_control, "10.00")

    call_command("close_batches", "--now", "--store", STORE_NO, verbosity=2)

    batch = BatchClose.objects.get()
    assert (batch.trigger, batch.status, batch.count, batch.total_amount) == (
        "command",
        "succeeded",
        1,
        Decimal("10.00"),
    )
    assert capsys.readouterr().out == (
        f"Batch close {batch.pk} ({STORE_NO}): succeeded, 1 transactions, total 10.00.\n"
        "Batch closes: 1 succeeded, 0 did not.\n"
    )


def test_close_batches_command_reports_a_failed_close(account, sandbox_reset, sandbox_control, capsys):
    """A close that fails makes the command print the summary and exit with an error naming the failed close."""
    sandbox_control.fault(fault="http_500", method="batch.close.terminals")
    with pytest.raises(CommandError) as raised:
        call_command("close_batches", "--now")
    batch = BatchClose.objects.get()
    assert capsys.readouterr().out == "Batch closes: 0 succeeded, 1 did not.\n"
    assert str(raised.value) == (
        f"Batch close {batch.pk} (all stores): unknown after 1 attempt(s):  the gateway answered HTTP 500. "
        "A close that did not succeed is retried automatically while attempts remain."
    )


@pytest.mark.parametrize(
    "weekdays, terminals",
    [([], []), ([0, 1], []), ([1, 1], []), (["1"], []), ([1], ["x" * 33]), ([1], [7])],
)
def test_schedule_validation_rejects_bad_weekdays_and_terminals(db, weekdays, terminals):
    """Weekdays are distinct ISO numbers 1-7 (at least one); terminals are serial numbers of at most 32 characters."""
    schedule = BatchCloseSchedule(
        store_no=STORE_NO, local_time=time(22, 0), weekdays=weekdays, terminal_sn_list=terminals
    )
    with pytest.raises(ValidationError):
        schedule.clean()


def test_a_new_schedule_closes_every_day_by_default(db):
    """Weekdays default to all seven days."""
    assert BatchCloseSchedule(store_no=STORE_NO, local_time=time(22, 0)).weekdays == [1, 2, 3, 4, 5, 6, 7]


def test_the_retry_sweep_sends_due_closes_and_a_redelivered_close_task_does_nothing(
    account, sandbox_reset, sandbox_control
):
    """retry_due_batch_closes sends a failed close once its retry is due; close_batch, delivered again for a
    close already sent, sends nothing more."""
    from payments import tasks

    sandbox_control.fault(fault="http_500", method="batch.close.terminals")
    batch = batch_close(account=account, trigger=BatchClose.Trigger.COMMAND, store_no=STORE_NO)
    assert (batch.status, batch.attempts) == (BatchCloseStatus.UNKNOWN, 1)

    assert tasks.close_batch(batch.pk) == "skipped"
    assert tasks.retry_due_batch_closes() == 0  # not due for a minute
    BatchClose.objects.filter(pk=batch.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert tasks.retry_due_batch_closes() == 1

    batch.refresh_from_db()
    assert (batch.status, batch.attempts, batch.next_attempt_at) == (BatchCloseStatus.SUCCEEDED, 2, None)
