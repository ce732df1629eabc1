"""
The gateway's words for what an order asks of it, in one table: the serializers, the services, the
reconciler and the sandbox all read these, so none of them can accept or send a value the others do not
know. Each comes from the endpoint reference (``wisehub.cloud.pay.order``, ``pay.merchant.checkout``,
docs/protocol.md "Enumerations"); change them here only.
"""

from __future__ import annotations

import re

# merchant_order_no: the gateway's rule for every number we give it (orders, refunds, operations).
MERCHANT_ORDER_NO_MAX_LENGTH = 32
MERCHANT_ORDER_NO_CHARACTERS = "letters, digits and _ - | * @"
# Use with fullmatch.
MERCHANT_ORDER_NO_PATTERN = re.compile(r"[A-Za-z0-9_\-|*@]{1,32}")

# pay_scenario of a terminal order: a card on the terminal, or a wallet QR code (scanned by or shown to
# the customer). QR orders are closed like online orders (order.revoker).
PAY_SCENARIO_CARD = "SWIPE_CARD"
QR_PAY_SCENARIOS = frozenset({"BSCANQR_PAY", "SCANQR_PAY"})
PAY_SCENARIOS = (PAY_SCENARIO_CARD, "BSCANQR_PAY", "SCANQR_PAY")

# pay_method_id of a terminal order: card brands and wallets.
CARD_BRANDS = ("Visa", "MasterCard", "Amex", "Discover", "JCB", "DinnersClub", "MyDebit", "UnionPay")
WALLETS = ("Alipay+", "Alipay", "WeChatPay")
PAY_METHOD_IDS = CARD_BRANDS + WALLETS

# card_type of a card checkout (the card itself), and of a terminal order (what the terminal accepts).
CARD_CHECKOUT_CARD_TYPES = ("CREDIT", "DEBIT")
TERMINAL_CARD_TYPES = {1: "debit", 2: "credit", 3: "EBT", 4: "gift"}
RECEIPT_PRINT_MODES = {0: "none", 1: "merchant", 2: "customer", 3: "both"}

# Channel options: fields of a create kept with the order (Order.options) and sent with its create call.
TERMINAL_OPTIONS = (
    "card_type",
    "on_screen_tip",
    "on_screen_signature",
    "confirm_on_terminal",
    "reject_when_terminal_offline",
    "receipt_print_mode",
)
CHECKOUT_OPTIONS = ("return_url", "order_detail")
CARD_OPTIONS = ("billing_address", "return_url")
ORDER_OPTIONS = tuple(dict.fromkeys(TERMINAL_OPTIONS + CHECKOUT_OPTIONS + CARD_OPTIONS))


def describe_choices(choices: dict[int, str]) -> str:
    """``{1: "debit", 2: "credit"}`` as ``1 debit, 2 credit``, for help texts."""
    return ", ".join(f"{value} {name}" for value, name in choices.items())
