"""
Serializer fields built once per class and thread (``payments.serializers.FieldsBoundOnce``): every
instance still answers for its own object and its own data, in any thread, one request after another.
"""

from __future__ import annotations

from decimal import Decimal

from payments import serializers
from payments.models import Order, OrderStatus
from tests.factories import OrderFactory, RefundFactory
from tests.webhooks.conftest import run_in_threads

VALID_TERMINAL_ORDER = {
    "channel": "terminal",
    "amount": "12.50",
    "currency": "USD",
    "description": "Coffee",
    "terminal_sn": "WPYB002248000865",
}


def test_orders_in_two_currencies_serialized_at_once_in_four_threads_each_answer_for_their_own(db):
    usd = OrderFactory(merchant_order_no="FIELDS-USD", currency="USD", amount=Decimal("12.50"))
    jpy = OrderFactory(
        merchant_order_no="FIELDS-JPY",
        currency="JPY",
        amount=Decimal("1200"),
        status=OrderStatus.SUCCEEDED,
        paid_amount=Decimal("1200"),
    )
    RefundFactory(order=jpy, currency="JPY", amount=Decimal("200"), merchant_order_no="FIELDS-JPY-R1")
    # Refunds read beforehand: the threads have database connections of their own, outside this test's transaction.
    orders = list(
        Order.objects.prefetch_related("refunds").filter(pk__in=[usd.pk, jpy.pk]).order_by("currency").reverse()
    )
    expected = [serializers.OrderSerializer(order).data for order in orders]
    assert (expected[0]["amount"], expected[1]["amount"], expected[1]["refundable_amount"]) == ("12.50", "1200", "1000")
    assert [refund["amount"] for refund in expected[1]["refunds"]] == ["200"]

    def serialize_many_times(index: int) -> bool:
        return all(
            serializers.OrderSerializer(orders[(index + n) % 2]).data == expected[(index + n) % 2] for n in range(100)
        )

    assert run_in_threads(4, serialize_many_times) == [True, True, True, True]


def test_an_invalid_body_leaves_nothing_for_the_next_one_in_the_same_thread():
    wrong = serializers.OrderCreateSerializer(data={**VALID_TERMINAL_ORDER, "tip_ammount": "1.00"})
    right = serializers.OrderCreateSerializer(data=VALID_TERMINAL_ORDER)

    assert wrong.is_valid() is False
    assert right.is_valid() is True, right.errors

    assert wrong.errors == {"tip_ammount": ["Unknown field; did you mean 'tip_amount'?"]}
    assert right.validated_data["amount"] == Decimal("12.50")
    assert "tip_ammount" not in right.validated_data


def test_valid_and_invalid_bodies_validated_at_once_in_four_threads_each_get_their_own_answer():
    def validate_many_times(index: int) -> list[bool]:
        answers = []
        for n in range(100):
            amount = f"{index + 1}.{n:02d}"
            body = {**VALID_TERMINAL_ORDER, "amount": amount}
            if n % 2:
                body["colour"] = "red"
            serializer = serializers.OrderCreateSerializer(data=body)
            valid = serializer.is_valid()
            answers.append(
                valid == (n % 2 == 0)
                and (
                    serializer.validated_data["amount"] == Decimal(amount)
                    if valid
                    else set(serializer.errors) == {"colour"}
                )
            )
        return answers

    assert all(all(answers) for answers in run_in_threads(4, validate_many_times))
