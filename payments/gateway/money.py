"""
Amounts on the wire: ``Decimal`` in, fixed-point text out, never float.

The number of minor digits of each currency comes from Babel's copy of the CLDR currency data
(USD 2, JPY 0, BHD 3), not from a hand-written table. CodePay takes amounts in major units
(docs/protocol.md, "Rules": "1" USD is one dollar) formatted to those digits ("34.50", "200").
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel.numbers import get_currency_precision, list_currencies


class CurrencyError(ValueError):
    pass


class AmountError(ValueError):
    pass


@lru_cache(maxsize=None)
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def validate_currency(currency: str) -> str:
    code = (currency or "").upper()
    if len(code) != 3 or code not in _known_currencies():
        raise CurrencyError(f"'{currency}' is not an ISO 4217 currency code (for example USD, EUR, JPY).")
    return code


def minor_digits(currency: str) -> int:
    return get_currency_precision(validate_currency(currency))


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_digits(currency))


# Plain ASCII decimal notation: no exponents, separators or other scripts' digits; at most
# MAX_INTEGER_DIGITS before the point (what the database columns hold).
MAX_INTEGER_DIGITS = 15
_AMOUNT_RE = re.compile(r"-?[0-9]{1,%d}(\.[0-9]+)?" % MAX_INTEGER_DIGITS)


def parse_amount(value: object, currency: str) -> Decimal:
    """Parse an amount given as text or Decimal, refusing floats and more decimals than the currency has."""
    if isinstance(value, float):
        raise AmountError("Amounts must be sent as strings such as \"12.34\", not as floating-point numbers.")
    if isinstance(value, bool) or value is None:
        raise AmountError("An amount is required, as a string such as \"12.34\".")
    text = str(value).strip()
    if not _AMOUNT_RE.fullmatch(text):
        raise AmountError(
            f"Write the amount as plain digits with an optional decimal point, at most {MAX_INTEGER_DIGITS} digits "
            "before it, such as \"12.34\"."
        )
    amount = Decimal(text)
    digits = minor_digits(currency)
    if amount != amount.quantize(quantum(currency), rounding=ROUND_HALF_UP):
        raise AmountError(f"{currency.upper()} amounts have at most {digits} decimal places; got '{value}'.")
    return amount.quantize(quantum(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Bring an exact amount to the currency's digits; refuses to round away money."""
    exact = amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)
    if exact != amount:
        raise AmountError(f"{amount} has more decimal places than {currency.upper()} allows.")
    return exact


def format_amount(amount: Decimal, currency: str) -> str:
    if not isinstance(amount, Decimal):
        raise AmountError(f"Amounts are Decimal, got {type(amount).__name__}.")
    return f"{quantize(amount, currency):f}"
