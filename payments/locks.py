"""
Row locks on orders and refunds, taken in the one right order: the order first, then its refund.

Every change to an order, its operations or its refunds happens under the order's row lock
(``select_for_update``), so the sums that bound them (refunded <= paid, captured <= authorized) are checked
against rows nobody else is changing, and work about one order (a refund, a notification, the reconciler)
runs one at a time. A refund's own row is locked only after its order's: two transactions that took the two
locks in opposite orders could each wait for the other (a deadlock PostgreSQL breaks by failing one).
These context managers are the only way ``payments`` and ``webhooks`` lock those rows; each opens a
transaction (a savepoint inside one) that holds the locks until the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

from payments.models import Order, OrderOperation, Refund


@contextmanager
def order_locked(*, order_id: int) -> Iterator[Order]:
    """The order, re-read under its row lock, held until the block ends."""
    with transaction.atomic():
        yield Order.objects.select_for_update().get(pk=order_id)


@contextmanager
def refund_locked(*, refund_id: int, order_id: int | None = None) -> Iterator[tuple[Order, Refund]]:
    """
    The refund and its order, both re-read under their row locks: the order's first, then the refund's.

    ``order_id`` saves a read when the caller knows it (a refund never changes order).
    """
    if order_id is None:
        order_id = Refund.objects.values_list("order_id", flat=True).get(pk=refund_id)
    with order_locked(order_id=order_id) as order:
        yield order, Refund.objects.select_for_update().get(pk=refund_id)


@contextmanager
def operation_locked(*, operation_id: int, order_id: int) -> Iterator[tuple[Order, OrderOperation]]:
    """A capture or void and its order, both under their row locks: the order's first, then the operation's."""
    with order_locked(order_id=order_id) as order:
        operation = OrderOperation.objects.select_for_update().get(pk=operation_id)
        operation.order = order
        yield order, operation
