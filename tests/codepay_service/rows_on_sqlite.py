"""
Run in a subprocess against a fresh SQLite database (``make run``'s embedded default): the one-statement
helpers of ``codepay_service.rows`` fall back to the ORM there, and must store the same. Prints JSON.
"""

import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codepay_service.settings")
django.setup()

from datetime import timedelta  # noqa: E402
from decimal import Decimal  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import IntegrityError, connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from codepay_service.rows import row_insert, row_update_then_insert, rows_insert_together  # noqa: E402
from payments.models import MerchantAccount, MerchantOrderNumber, Order, OrderEvent  # noqa: E402
from payments.services.reconcile import ORDER_OPEN_STATUSES, _schedule_next  # noqa: E402
from webhooks.models import NotificationDelivery  # noqa: E402

call_command("migrate", verbosity=0)
now = timezone.now()
account = MerchantAccount.objects.create(code="default", name="Default", app_id="wz1", merchant_no="3023000001")


def order_rows(number: str):
    order = Order(
        account=account,
        merchant_order_no=number,
        channel="terminal",
        currency="USD",
        amount=Decimal("12.50"),
        description="SQLite",
        expires_in=300,
        expires_at=now + timedelta(seconds=300),
    )
    event = OrderEvent(order=order, kind="created", source="api", to_status="unknown")
    return [MerchantOrderNumber(account=account, merchant_order_no=number, kind="order"), order, event]


number, order, event = order_rows("SQ-1")
rows_insert_together([number, order, event], links={2: {"order": 1}})
try:
    rows_insert_together(order_rows("SQ-1"), links={2: {"order": 1}})
    duplicate = "stored"
except IntegrityError:
    duplicate = "refused"
moved = OrderEvent(order=order, kind="status_changed", source="api", from_status="unknown", to_status="pending")
unknown = Order.objects.filter(pk=order.pk, status="unknown")
first = row_update_then_insert(unknown, {"status": "pending"}, moved, link="order")
again = row_update_then_insert(unknown, {"status": "failed"}, OrderEvent(order=order, kind="x"), link="order")
_schedule_next(Order, ORDER_OPEN_STATUSES, order.pk, attempts=0, now=now)
order.refresh_from_db()
delivery = NotificationDelivery(
    account_code="default", received_at=now, raw_body=b"{}", body_size=2, verification="valid"
)
row_insert(delivery)
print(
    json.dumps(
        {
            "vendor": connection.vendor,
            "orders": list(Order.objects.values_list("merchant_order_no", "status")),
            "numbers": MerchantOrderNumber.objects.count(),
            "events": list(OrderEvent.objects.values_list("order_id", "kind", "to_status")),
            "event_linked": event.order_id == order.pk,
            "duplicate": duplicate,
            "moved": [first, again],
            "check_attempts": order.check_attempts,
            "next_check_set": order.next_check_at is not None,
            "delivery_stored": NotificationDelivery.objects.filter(pk=delivery.pk).exists(),
        }
    )
)
