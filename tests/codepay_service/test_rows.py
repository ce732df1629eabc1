"""``row_insert`` stores exactly what ``Model.save()`` stores, for the rows it is used on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from codepay_service.rows import row_insert
from payments.models import GatewayCall, MerchantOrderNumber, Order, OrderEvent
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
