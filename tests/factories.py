"""factory_boy factories for rows the tests set up directly (the API and the sandbox make the rest)."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from payments.models import Channel, MerchantAccount, Order, OrderStatus, Refund, RefundStatus


class MerchantAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MerchantAccount
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"acct{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    app_id = factory.Sequence(lambda n: f"wzapp{n:012d}")
    merchant_no = factory.Sequence(lambda n: f"3023{n:08d}")
    default_store_no = "4021000008"


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    account = factory.SubFactory(MerchantAccountFactory)
    merchant_order_no = factory.Sequence(lambda n: f"TEST{n:010d}")
    channel = Channel.TERMINAL
    status = OrderStatus.PENDING
    currency = "USD"
    amount = Decimal("10.00")
    description = "Test order"
    store_no = "4021000008"
    terminal_sn = "WPYB002248000865"
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(seconds=300))


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    order = factory.SubFactory(OrderFactory, status=OrderStatus.SUCCEEDED, paid_amount=Decimal("10.00"))
    account = factory.SelfAttribute("order.account")
    merchant_order_no = factory.Sequence(lambda n: f"REFUND{n:010d}")
    amount = Decimal("1.00")
    currency = "USD"
    reason = "test"
    status = RefundStatus.PENDING
