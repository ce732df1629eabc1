"""
Amounts on the wire: ``Decimal`` in, fixed-point text out, never float.

The number of minor digits of each currency comes from Babel's copy of the CLDR currency data
(USD 2, JPY 0, BHD 3), not from a hand-written table. CodePay takes amounts in major units
(docs/protocol.md, "Rules": "1" USD is one dollar) formatted to those digits ("34.50", "200").
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import cache

from babel.numbers import get_currency_precision, list_currencies


class CurrencyError(ValueError):
    pass


class AmountError(ValueError):
    pass


@cache
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


# Bounds, once for every amount and every sum the service computes (paid = amount + tip + cashback,
# authorized + increments, captures, refunds): at most MAX_SIGNIFICANT_DIGITS digits counted down to the
# currency's minor unit, so 9,999,999,999.99 USD, 999,999,999,999 JPY, 999,999,999.999 BHD. Twelve digits
# plus up to three decimals is fifteen significant digits, what SQLite stores exactly (it keeps decimals as
# 64-bit floats; the embedded `make run` database) and what the money columns are sized for.
MAX_SIGNIFICANT_DIGITS = 12
# Plain ASCII decimal notation: no exponents, separators or other scripts' digits. The length bound only
# keeps absurd strings out of the regex and Decimal; the maximum is checked on the value.
_MAX_AMOUNT_TEXT = 40
_AMOUNT_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def amount_maximum(currency: str) -> Decimal:
    """The largest amount, and the largest sum of amounts, the service accepts in ``currency``."""
    return Decimal(10**MAX_SIGNIFICANT_DIGITS - 1).scaleb(-minor_digits(currency))


def amount_check_maximum(amount: Decimal, currency: str, *, what: str = "The amount") -> Decimal:
    """``amount`` unchanged, or AmountError when it (a value or a sum) exceeds the currency's maximum."""
    maximum = amount_maximum(currency)
    if amount > maximum:
        raise AmountError(
            f"{what} may be at most {maximum:f} {currency.upper()}; got {amount.quantize(quantum(currency)):f}."
        )
    return amount


def parse_amount(value: object, currency: str) -> Decimal:
    """Parse an amount given as text or Decimal, refusing floats, more decimals than the currency has and
    anything above ``amount_maximum``."""
    if isinstance(value, float):
        raise AmountError('Amounts must be sent as strings such as "12.34", not as floating-point numbers.')
    if isinstance(value, bool) or value is None:
        raise AmountError('An amount is required, as a string such as "12.34".')
    text = str(value).strip()
    if len(text) > _MAX_AMOUNT_TEXT or not _AMOUNT_RE.fullmatch(text):
        raise AmountError(
            f"Write the amount as plain digits with an optional decimal point, at most "
            f'{amount_maximum(currency):f} {currency.upper()}, such as "12.34".'
        )
    amount = Decimal(text)
    digits = minor_digits(currency)
    if amount != amount.quantize(quantum(currency), rounding=ROUND_HALF_UP):
        raise AmountError(f"{currency.upper()} amounts have at most {digits} decimal places; got '{value}'.")
    return amount_check_maximum(amount.quantize(quantum(currency)), currency)


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
