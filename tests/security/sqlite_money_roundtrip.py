"""
Run in a subprocess against a fresh SQLite database (DATABASE_URL=sqlite:///...): store orders whose every
amount and every sum sits at the currency's maximum, read them back through the ORM and the API, and print
what came back as JSON. SQLite keeps decimals as 64-bit floats, so this is where digits would get lost.
Then poison one row the way only a write around the service could (a tip of 1e17, past its column), and
report what the list, another order's detail and a reconciliation pass make of it.
"""

import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codepay_service.settings")
django.setup()

from datetime import timedelta  # noqa: E402
from decimal import Decimal  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from payments.gateway.money import amount_maximum, quantum  # noqa: E402
from payments.models import MerchantAccount, Order  # noqa: E402
from payments.services.accounts import api_key_create  # noqa: E402
from payments.services.reconcile import reconciliation_run  # noqa: E402

call_command("migrate", verbosity=0)
account = MerchantAccount.objects.create(code="default", name="Default", app_id="wz1", merchant_no="3023000001")
_, key = api_key_create(name="pos", account=account)
stored = {}
for currency in ("USD", "JPY", "BHD", "KWD"):
    maximum = amount_maximum(currency)
    amount = maximum - 2 * quantum(currency)
    order = Order.objects.create(
        account=account,
        merchant_order_no=f"MAX-{currency}",
        channel="terminal",
        currency=currency,
        amount=amount,
        tip_amount=quantum(currency),
        cashback_amount=quantum(currency),
        authorized_amount=maximum,
        captured_amount=maximum,
        paid_amount=maximum,
        refunded_amount=maximum,
        description="max",
        expires_at=timezone.now(),
    )
    stored[currency] = {f: str(getattr(order, f)) for f in ("amount", "tip_amount", "authorized_amount", "paid_amount")}
read = {
    order.currency: {
        f: str(getattr(order, f).quantize(quantum(order.currency)))
        for f in ("amount", "tip_amount", "authorized_amount", "paid_amount")
    }
    for order in Order.objects.all()
}
listing = Client().get("/api/v1/orders/", HTTP_AUTHORIZATION=f"Api-Key {key}")
poison = Order.objects.create(
    account=account,
    merchant_order_no="POISON",
    channel="terminal",
    currency="USD",
    amount=Decimal("1.00"),
    description="poison",
    expires_at=timezone.now(),
)
with connection.cursor() as cursor:
    cursor.execute("UPDATE payments_order SET tip_amount = %s WHERE id = %s", [1e17, poison.pk])
poisoned_list = Client().get("/api/v1/orders/", HTTP_AUTHORIZATION=f"Api-Key {key}")
other_detail = Client().get("/api/v1/orders/MAX-USD/", HTTP_AUTHORIZATION=f"Api-Key {key}")
Order.objects.update(status="pending", next_check_at=timezone.now() - timedelta(seconds=5))
reconciled = reconciliation_run(max_seconds=30)
print(
    json.dumps(
        {
            "poisoned_list_status": poisoned_list.status_code,
            "poisoned_list": sorted(o["merchant_order_no"] for o in poisoned_list.json().get("results", [])),
            "other_detail_status": other_detail.status_code,
            "reconcile_orders_checked": reconciled.orders_checked,
            "stored": stored,
            "read": read,
            "list_status": listing.status_code,
            "listed": {o["currency"]: o["amount"] for o in listing.json().get("results", [])},
            "paid_exact": all(
                o.paid_amount == o.amount + o.tip_amount + o.cashback_amount
                for o in Order.objects.exclude(merchant_order_no="POISON")
            ),
            "max_usd": str(amount_maximum("USD")),
            "sum_is_max": str(Decimal(stored["USD"]["amount"]) + 2 * quantum("USD")),
        }
    )
)
