"""The order state machine: one place, row-locked, never backwards, paid always wins."""

from decimal import Decimal

import pytest

from payments.gateway.results import OrderInfo
from payments.models import OrderEvent, OrderStatus, TransType
from payments.services.orders import ApplyResult, order_apply_gateway_state
from payments.state_machine import ORDER_TRANSITIONS
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


def info(trans_status, **fields):
    data = {"trans_status": trans_status, "price_currency": "USD", "order_amount": "10.00", **fields}
    return OrderInfo.from_data(data)


def test_late_pending_never_overwrites_succeeded():
    """A stale 'created' (9) or 'in progress' (0) after success is ignored and recorded as stale."""
    order = OrderFactory(status=OrderStatus.PENDING)
    assert order_apply_gateway_state(order_id=order.pk, info=info("2"), source="test") is ApplyResult.APPLIED
    assert order_apply_gateway_state(order_id=order.pk, info=info("0"), source="test") is ApplyResult.STALE
    assert order_apply_gateway_state(order_id=order.pk, info=info("9"), source="test") is ApplyResult.STALE
    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED
    assert order.paid_amount == Decimal("10.00")
    assert order.next_check_at is None
    assert list(OrderEvent.objects.filter(order=order).values_list("kind", "to_status")) == [
        ("status_changed", "succeeded"),
        ("stale_status_ignored", "processing"),
        ("stale_status_ignored", "pending"),
    ]


def test_repeated_status_changes_nothing():
    """Applying the same success twice is a no-op the second time."""
    order = OrderFactory(status=OrderStatus.PENDING)
    order_apply_gateway_state(order_id=order.pk, info=info("2"), source="test")
    assert order_apply_gateway_state(order_id=order.pk, info=info("2"), source="test") is ApplyResult.UNCHANGED
    assert OrderEvent.objects.filter(order=order, kind="status_changed").count() == 1


def test_payment_reported_after_expiry_wins():
    """An order we marked expired that the gateway reports paid becomes succeeded: the money moved."""
    order = OrderFactory(status=OrderStatus.EXPIRED)
    assert order_apply_gateway_state(order_id=order.pk, info=info("2"), source="test") is ApplyResult.APPLIED
    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED


def test_amount_or_currency_mismatch_changes_nothing():
    """A gateway amount or currency that differs from ours is a conflict for an operator."""
    order = OrderFactory(status=OrderStatus.PENDING)
    assert (
        order_apply_gateway_state(order_id=order.pk, info=info("2", order_amount="1.00"), source="test")
        is ApplyResult.CONFLICT
    )
    assert (
        order_apply_gateway_state(order_id=order.pk, info=info("2", price_currency="EUR"), source="test")
        is ApplyResult.CONFLICT
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert OrderEvent.objects.filter(order=order, kind="conflict").count() == 2


def test_a_paid_pre_authorization_is_authorized_not_succeeded():
    """trans_status 2 on an auth means the amount is held: `authorized`, with the authorized amount set."""
    order = OrderFactory(status=OrderStatus.PENDING, trans_type=TransType.AUTH)
    order_apply_gateway_state(order_id=order.pk, info=info("2"), source="test")
    order.refresh_from_db()
    assert order.status == OrderStatus.AUTHORIZED
    assert order.authorized_amount == Decimal("10.00")
    assert order.paid_amount == Decimal("0")


def test_cancelled_is_final_and_every_status_has_a_row():
    """The transition table covers every status; nothing leaves `cancelled`."""
    assert set(ORDER_TRANSITIONS) == set(OrderStatus.values)
    assert ORDER_TRANSITIONS[OrderStatus.CANCELLED] == frozenset()
    assert OrderStatus.PENDING not in ORDER_TRANSITIONS[OrderStatus.PROCESSING]


def test_database_refuses_refunds_above_paid_and_non_positive_amounts():
    """The invariants hold in the database even if code tried to break them."""
    from django.db import IntegrityError, transaction

    order = OrderFactory(status=OrderStatus.SUCCEEDED, paid_amount=Decimal("10.00"))
    order.refunded_amount = Decimal("10.01")
    with pytest.raises(IntegrityError), transaction.atomic():
        order.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(amount=Decimal("0"))
