"""
A transaction as the sandbox keeps it, and how it reads on the wire.

Orders, refunds, captures, voids and authorization cancels are all transactions: each has its own
merchant_order_no and trans_no, and a follow-up points at its ``original`` (PROTOCOL.md, "Rules").
Amounts are Decimal in the order's currency and become text only through ``format_amount``, the same
function the client signs with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum

from payments.gateway.methods import TransStatus, TransType
from payments.gateway.money import format_amount

FINAL_STATUSES = frozenset({TransStatus.SUCCESS, TransStatus.CLOSED, TransStatus.CANCELLED})
OPEN_STATUSES = frozenset({TransStatus.CREATED, TransStatus.IN_PROGRESS})
QR_PAY_SCENARIOS = frozenset({"BSCANQR_PAY", "SCANQR_PAY"})

# What a refund, void and settlement may point at (PROTOCOL.md, "Enumerations").
REFUNDABLE_TYPES = frozenset({TransType.SALE, TransType.PRE_AUTH_COMPLETION, TransType.CASHBACK})
VOIDABLE_TYPES = frozenset({TransType.SALE, TransType.CASHBACK})
# A batch settles money that moved; an authorization only holds it, voids and cancels only undo.
SETTLED_TYPES = frozenset(
    {TransType.SALE, TransType.PRE_AUTH_COMPLETION, TransType.CASHBACK, TransType.CASH_WITHDRAWAL, TransType.REFUND}
)

# The fields a notification carries (PROTOCOL.md, "Notifications", inferred), besides app_id,
# merchant_no and sign_type.
NOTIFICATION_KEYS = (
    "trans_no merchant_order_no orig_merchant_order_no trans_type trans_status price_currency order_amount "
    "tip_amount trans_amount paid_amount cashback_amount attach pay_method_id pay_scenario terminal_sn trans_end_time"
).split()


def gateway_time(epoch_seconds: float) -> str:
    """The gateway's time format, e.g. "2024-02-28 08:51:51" (UTC)."""
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class Channel(str, Enum):
    """How the customer pays; decides whether ``order.revoker`` may refund a paid order."""

    TERMINAL = "terminal"  # wisehub.cloud.pay.order, card present on a CodePay Register terminal
    HOSTED_CHECKOUT = "hosted_checkout"  # pay.checkout, CodePay's payment page
    MERCHANT_CHECKOUT = "merchant_checkout"  # pay.merchant.checkout, card data sent by the merchant


@dataclass(eq=False)
class Transaction:
    trans_no: str
    app_id: str
    merchant_no: str
    merchant_order_no: str
    trans_type: TransType
    channel: Channel
    price_currency: str
    order_amount: Decimal
    created_at: float
    expires: int | None = None  # seconds; follow-ups (refunds, captures...) do not expire
    status: TransStatus = TransStatus.CREATED
    tip_amount: Decimal = Decimal(0)
    cashback_amount: Decimal = Decimal(0)
    incremented_amount: Decimal = Decimal(0)  # incremental authorizations on a pre-auth
    original: Transaction | None = None
    follow_ups: list[Transaction] = field(default_factory=list)
    store_no: str = ""
    terminal_sn: str = ""
    pay_scenario: str = ""
    pay_method_id: str = ""
    attach: str = ""
    description: str = ""
    notify_url: str = ""
    return_url: str = ""
    card_last4: str = ""
    end_time: float | None = None
    batched: bool = False
    close_reason: str = ""
    notification_attempts: list[dict] = field(default_factory=list)

    @property
    def trans_amount(self) -> Decimal:
        return self.order_amount + self.tip_amount + self.cashback_amount + self.incremented_amount

    @property
    def paid_amount(self) -> Decimal:
        return self.trans_amount if self.status is TransStatus.SUCCESS else Decimal(0)

    def followed_amount(self, trans_type: TransType, statuses: Iterable[TransStatus]) -> Decimal:
        statuses = frozenset(statuses)
        return sum(
            (t.trans_amount for t in self.follow_ups if t.trans_type is trans_type and t.status in statuses),
            Decimal(0),
        )

    @property
    def refundable_amount(self) -> Decimal:
        held = self.followed_amount(TransType.REFUND, {TransStatus.IN_PROGRESS, TransStatus.SUCCESS})
        return self.paid_amount - held

    @property
    def capturable_amount(self) -> Decimal:
        return self.paid_amount - self.followed_amount(TransType.PRE_AUTH_COMPLETION, {TransStatus.SUCCESS})

    def money(self, amount: Decimal) -> str:
        return format_amount(amount, self.price_currency)

    def public_fields(self) -> dict[str, str]:
        """Everything a query or notification may show, as the strings the gateway sends."""
        return {
            "app_id": self.app_id,
            "merchant_no": self.merchant_no,
            "trans_no": self.trans_no,
            "merchant_order_no": self.merchant_order_no,
            "orig_merchant_order_no": self.original.merchant_order_no if self.original else "",
            "trans_type": self.trans_type.value,
            "trans_status": self.status.value,
            "price_currency": self.price_currency,
            "order_amount": self.money(self.order_amount),
            "tip_amount": self.money(self.tip_amount),
            "cashback_amount": self.money(self.cashback_amount),
            "trans_amount": self.money(self.trans_amount),
            "paid_amount": self.money(self.paid_amount),
            "attach": self.attach,
            "pay_method_id": self.pay_method_id,
            "pay_scenario": self.pay_scenario,
            "terminal_sn": self.terminal_sn,
            "store_no": self.store_no,
            "trans_end_time": gateway_time(self.end_time) if self.end_time else "",
        }

    def notification_fields(self) -> dict[str, str]:
        fields = {"app_id": self.app_id, "merchant_no": self.merchant_no, "sign_type": "RSA2"}
        public = self.public_fields()
        fields.update((key, public[key]) for key in NOTIFICATION_KEYS)
        return fields

    def control_view(self) -> dict:
        """The full state for the control API: public fields plus what only the sandbox knows."""
        return {
            **self.public_fields(),
            "channel": self.channel.value,
            "description": self.description,
            "notify_url": self.notify_url,
            "return_url": self.return_url,
            "created_time": gateway_time(self.created_at),
            "expires": self.expires,
            "batched": self.batched,
            "card_last4": self.card_last4,
            "close_reason": self.close_reason,
            "follow_ups": [t.merchant_order_no for t in self.follow_ups],
            "notification_attempts": list(self.notification_attempts),
        }
