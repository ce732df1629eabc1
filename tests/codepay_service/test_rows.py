"""``row_insert`` stores exactly what ``Model.save()`` stores, for the rows it is used on."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from codepay_service.rows import row_insert, row_update_then_insert, rows_insert_together
from payments.models import GatewayCall, MerchantOrderNumber, Order, OrderEvent
from tests.conftest import run_on_fresh_sqlite
from tests.factories import MerchantAccountFactory, OrderFactory
from webhooks.models import NotificationDelivery, ProcessingStatus

NOW = timezone.now()


def _delivery(**overrides) -> NotificationDelivery:
    now = NOW
    fields = dict(
        account_code="default",
        received_at=now,
        source_address="2001:db8::1",
        headers={"Content-Type": "application/json", "X-Note": "é ü \u2603"},
        content_type="application/json",
        raw_body=b'{"a": "\\u0000 bytes \xff"}',
        body_size=27,
        payload={"amount": "10.00", "nested": {"list": [1, 2.5, None, True]}},
        verification="valid",
        fingerprint="f" * 64,
        merchant_order_no="ROW-1",
        trans_status="2",
        next_attempt_at=now + timedelta(seconds=30),
    )
    return NotificationDelivery(**{**fields, **overrides})


def _stored(pk: int) -> dict:
    stored = NotificationDelivery.objects.filter(pk=pk).values().get()
    stored.pop("id")
    stored["raw_body"] = bytes(stored["raw_body"])
    return stored


def test_a_row_inserted_in_one_statement_reads_back_as_one_saved_by_the_orm(db):
    saved, inserted = _delivery(), _delivery()
    saved.save()

    row_insert(inserted)

    assert inserted.pk is not None and inserted.pk != saved.pk
    assert inserted._state.adding is False
    assert _stored(inserted.pk) == _stored(saved.pk)
    # Defaults the caller left alone come from the model, as with save().
    assert (_stored(inserted.pk)["status"], _stored(inserted.pk)["attempts"]) == (ProcessingStatus.RECEIVED, 0)


def test_nulls_and_empty_values_are_stored_as_save_stores_them(db):
    saved = _delivery(source_address=None, payload=None, headers={}, raw_body=b"", next_attempt_at=None)
    inserted = _delivery(source_address=None, payload=None, headers={}, raw_body=b"", next_attempt_at=None)
    saved.save()

    row_insert(inserted)

    assert _stored(inserted.pk) == _stored(saved.pk)
    assert NotificationDelivery.objects.filter(pk=inserted.pk, payload__isnull=True).exists()


@pytest.mark.parametrize("model", [NotificationDelivery, Order, OrderEvent, GatewayCall, MerchantOrderNumber])
def test_no_signal_listens_to_the_rows_inserted_without_save(model):
    """``row_insert`` sends no signals, so it is only used for models nothing listens to."""
    assert not pre_save.has_listeners(model)
    assert not post_save.has_listeners(model)


def _order_rows(account, merchant_order_no: str):
    order = Order(
        account=account,
        merchant_order_no=merchant_order_no,
        channel="terminal",
        currency="USD",
        amount=Decimal("12.50"),
        description="Rows",
        expires_in=300,
        expires_at=NOW + timedelta(seconds=300),
        options={"pay_scenario": "x"},
    )
    number = MerchantOrderNumber(account=account, merchant_order_no=merchant_order_no, kind="order")
    event = OrderEvent(order=order, kind="created", source="api", to_status="unknown", message="stored")
    return number, order, event


def test_rows_inserted_together_read_back_as_saved_rows_with_the_link_set(db):
    account = MerchantAccountFactory()
    number, order, event = _order_rows(account, "ROWS-1")
    saved_number, saved_order, saved_event = _order_rows(account, "ROWS-2")
    saved_number.save()
    saved_order.save()
    saved_event.order = saved_order
    saved_event.save()

    rows_insert_together([number, order, event], links={2: {"order": 1}})

    assert event.order_id == order.pk and event.pk is not None and number.pk is not None
    stored = OrderEvent.objects.filter(pk=event.pk).values().get()
    saved = OrderEvent.objects.filter(pk=saved_event.pk).values().get()
    assert stored["order_id"] == order.pk
    assert _without(stored, "id", "order_id", "created_at") == _without(saved, "id", "order_id", "created_at")
    order_row = Order.objects.filter(pk=order.pk).values().get()
    saved_order_row = Order.objects.filter(pk=saved_order.pk).values().get()
    assert _without(order_row, "id", "merchant_order_no", "created_at", "updated_at") == _without(
        saved_order_row, "id", "merchant_order_no", "created_at", "updated_at"
    )


def test_rows_inserted_together_are_all_stored_or_none(db):
    account = MerchantAccountFactory()
    MerchantOrderNumber.objects.create(account=account, merchant_order_no="ROWS-TAKEN", kind="refund")
    number, order, event = _order_rows(account, "ROWS-TAKEN")

    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        rows_insert_together([number, order, event], links={2: {"order": 1}})

    assert refused.value.__cause__.diag.constraint_name == "merchant_order_no_unique_per_account"
    assert not Order.objects.filter(merchant_order_no="ROWS-TAKEN").exists()
    assert not OrderEvent.objects.filter(message="stored").exists()


def test_an_update_and_its_record_in_one_statement_only_when_the_update_takes_the_row(db):
    order = OrderFactory(status="unknown")
    first = OrderEvent(order=order, kind="status_changed", source="api", from_status="unknown", to_status="pending")
    second = OrderEvent(order=order, kind="status_changed", source="api", from_status="unknown", to_status="pending")
    still_unknown = Order.objects.filter(pk=order.pk, status="unknown")

    assert row_update_then_insert(still_unknown, {"status": "pending", "trans_no": "T-1"}, first, link="order")
    assert not row_update_then_insert(still_unknown, {"status": "failed"}, second, link="order")

    order.refresh_from_db()
    assert (order.status, order.trans_no) == ("pending", "T-1")
    assert (first.pk is not None, first.order_id, second.pk) == (True, order.pk, None)
    assert list(OrderEvent.objects.filter(order=order).values_list("to_status", flat=True)) == ["pending"]


def _without(row: dict, *names: str) -> dict:
    return {key: value for key, value in row.items() if key not in names}


def test_on_sqlite_the_helpers_store_the_same_through_the_orm(tmp_path):
    """``make run`` keeps its data in SQLite, where neither data-modifying WITH nor psycopg exist."""
    report, _ = run_on_fresh_sqlite("tests.codepay_service.rows_on_sqlite", tmp_path)

    assert report == {
        "vendor": "sqlite",
        "orders": [["SQ-1", "pending"]],
        "numbers": 1,
        "events": [
            [report["events"][0][0], "created", "unknown"],
            [report["events"][0][0], "status_changed", "pending"],
        ],
        "event_linked": True,
        "duplicate": "refused",
        "moved": [True, False],
        "check_attempts": 1,
        "next_check_set": True,
        "delivery_stored": True,
    }
