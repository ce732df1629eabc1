"""
A transaction as the sandbox keeps it, and how it reads on the wire.

Orders, refunds, captures, voids and authorization cancels are all transactions: each has its own
merchant_order_no and trans_no, and a follow-up points at its ``original`` (docs/protocol.md, "Follow-ups").
Amounts are Decimal in the order's currency and become text only through ``format_amount``, the same
function the client signs with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum

from payments.gateway.methods import TransStatus, TransType
from payments.gateway.money import format_amount

FINAL_STATUSES = frozenset({TransStatus.SUCCESS, TransStatus.CLOSED, TransStatus.CANCELLED})
OPEN_STATUSES = frozenset({TransStatus.CREATED, TransStatus.IN_PROGRESS})

# What a refund, void and settlement may point at (docs/protocol.md, "Enumerations" and "Follow-ups").
REFUNDABLE_TYPES = frozenset({TransType.SALE, TransType.PRE_AUTH_COMPLETION, TransType.CASHBACK})
VOIDABLE_TYPES = frozenset({TransType.SALE, TransType.CASHBACK})
# Refunds of a payment (3) and of a capture (8) both give money back and hold the refundable amount.
REFUND_TYPES = frozenset({TransType.REFUND, TransType.COMPLETION_REFUND})
# A batch settles money that moved; an authorization only holds it, voids and cancels only undo.
SETTLED_TYPES = frozenset(
    {
        TransType.SALE,
        TransType.PRE_AUTH_COMPLETION,
        TransType.CASHBACK,
        TransType.CASH_WITHDRAWAL,
        TransType.REFUND,
        TransType.COMPLETION_REFUND,
    }
)

# Why a transaction closed unpaid, as trans_error_code / trans_error_msg (docs/protocol.md, "Responses":
# the fields are published, these values are the sandbox's own, in the style of the resp_code "000").
DECLINES = {
    "declined": ("05", "[05]DO NOT HONOR"),
    "card_declined": ("05", "[05]DO NOT HONOR"),
    "3ds_failed": ("65", "[65]AUTHENTICATION FAILED"),
    "refund_failed": ("12", "[12]INVALID TRANSACTION"),
    "authorization_expired": ("AUTH_EXPIRED", "[AUTH_EXPIRED]AUTHORIZATION EXPIRED"),
}

# The fields a notification carries (docs/protocol.md, "Notifications", inferred), besides app_id,
# merchant_no and sign_type.
NOTIFICATION_KEYS = (
    "trans_no merchant_order_no orig_merchant_order_no trans_type trans_status price_currency order_amount "
    "tip_amount trans_amount paid_amount cashback_amount attach pay_method_id pay_scenario terminal_sn trans_end_time "
    "trans_error_code trans_error_msg discount_bpc discount_bmopc trans_fee_c"
).split()


# Fields a notification carries only when they say something: a decline's reason, a discount or a fee.
DECLINE_KEYS = frozenset({"trans_error_code", "trans_error_msg"})
DISCOUNT_KEYS = frozenset({"discount_bpc", "discount_bmopc", "trans_fee_c"})


def _notified(key: str, value: str) -> bool:
    if key in DECLINE_KEYS:
        return value != ""
    if key in DISCOUNT_KEYS:
        return Decimal(value) != 0
    return True


def gateway_time(epoch_seconds: float) -> str:
    """The gateway's time format, e.g. "2024-02-28 08:51:51" (UTC)."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


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
    # What the payment channel or the merchant gave off, and the fee the customer paid (order.query fields).
    discount_bpc: Decimal = Decimal(0)
    discount_bmopc: Decimal = Decimal(0)
    trans_fee_c: Decimal = Decimal(0)
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
        """What the customer paid: the transaction less the discounts, plus the fee charged to them (inferred)."""
        if self.status is not TransStatus.SUCCESS:
            return Decimal(0)
        return self.trans_amount - self.discount_bpc - self.discount_bmopc + self.trans_fee_c

    def followed_amount(self, trans_types: Iterable[TransType], statuses: Iterable[TransStatus]) -> Decimal:
        trans_types, statuses = frozenset(trans_types), frozenset(statuses)
        return sum(
            (t.trans_amount for t in self.follow_ups if t.trans_type in trans_types and t.status in statuses),
            Decimal(0),
        )

    def follow_up_of(self, trans_type: TransType, statuses: Iterable[TransStatus]) -> Transaction | None:
        statuses = frozenset(statuses)
        return next((t for t in self.follow_ups if t.trans_type is trans_type and t.status in statuses), None)

    @property
    def refundable_amount(self) -> Decimal:
        held = self.followed_amount(REFUND_TYPES, {TransStatus.IN_PROGRESS, TransStatus.SUCCESS})
        return self.paid_amount - held

    @property
    def completion(self) -> Transaction | None:
        """The capture of a pre-auth (one per authorization); a terminal completion counts once it is done."""
        return self.follow_up_of(TransType.PRE_AUTH_COMPLETION, {TransStatus.SUCCESS, TransStatus.CANCELLED})

    @property
    def capturable_amount(self) -> Decimal:
        return Decimal(0) if self.completion is not None else self.paid_amount

    @property
    def decline(self) -> tuple[str, str]:
        ended_unpaid = self.status in (TransStatus.CLOSED, TransStatus.CANCELLED)
        return DECLINES.get(self.close_reason, ("", "")) if ended_unpaid else ("", "")

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
            "trans_error_code": self.decline[0],
            "trans_error_msg": self.decline[1],
            "discount_bpc": self.money(self.discount_bpc),
            "discount_bmopc": self.money(self.discount_bmopc),
            "trans_fee_c": self.money(self.trans_fee_c),
        }

    def notification_fields(self) -> dict[str, str]:
        fields = {"app_id": self.app_id, "merchant_no": self.merchant_no, "sign_type": "RSA2"}
        public = self.public_fields()
        fields.update((key, public[key]) for key in NOTIFICATION_KEYS if _notified(key, public[key]))
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
