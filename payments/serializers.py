"""
Input and output shapes of the REST API. Validation of form only (types, lengths, the currency's decimal
places, what each channel needs); the rules of the business live in the services.

Card data: the ``card`` object is validated here and handed to the service as a ``CardDetails`` that
lives in memory only. It is never part of a representation, an error message or a stored record.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
from collections.abc import Mapping
from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payments.gateway import vocabulary
from payments.gateway.client import CardDetails
from payments.gateway.money import (
    MAX_SIGNIFICANT_DIGITS,
    AmountError,
    CurrencyError,
    amount_check_maximum,
    amount_maximum,
    format_amount,
    parse_amount,
    validate_currency,
)
from payments.models import (
    BatchClose,
    Channel,
    Order,
    OrderOperation,
    Refund,
    RefundStatus,
    TransType,
)
from payments.state_machine import ORDER_PAID_STATUSES

MERCHANT_ORDER_NO_HELP = (
    f"Up to {vocabulary.MERCHANT_ORDER_NO_MAX_LENGTH} {vocabulary.MERCHANT_ORDER_NO_CHARACTERS}; unique per "
    "merchant account. "
    "Generated when absent."
)
MAX_EXPIRES_IN = 7 * 24 * 3600

# Fields of the order representation that only the service writes.
READ_ONLY_ORDER_FIELDS = (
    "status",
    "trans_no",
    "refunded_amount",
    "captured_amount",
    "authorized_amount",
    "paid_amount",
    "paid_at",
    "refundable_amount",
    "failure_code",
    "failure_message",
    "pay_url",
    "redirect_url_3dsecure",
    "terminal_online_status",
    "gateway_code",
    "gateway_message",
    "expires_at",
    "created_at",
    "updated_at",
    "refunds",
)


MAX_NESTED_DEPTH = 8
MAX_NESTED_BYTES = 16_384


def validate_nested_object(value: dict) -> None:
    """
    A free-form object (order_detail, billing_address) that is sent to the gateway as a JSON string and
    stored: text without NUL characters (the parser refuses invalid Unicode), nesting and size bounded.
    """

    def walk(node, depth):
        if depth > MAX_NESTED_DEPTH:
            raise serializers.ValidationError(f"Nest objects at most {MAX_NESTED_DEPTH} levels deep.")
        if isinstance(node, dict):
            for key, item in node.items():
                walk(key, depth + 1)
                walk(item, depth + 1)
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)
        elif isinstance(node, str) and "\x00" in node:
            raise serializers.ValidationError("Text may not contain NUL characters.")

    walk(value, 0)
    if len(json.dumps(value, ensure_ascii=False).encode("utf-8")) > MAX_NESTED_BYTES:
        raise serializers.ValidationError(f"At most {MAX_NESTED_BYTES} bytes of JSON.")


def validate_merchant_order_no(value: str) -> str:
    if not vocabulary.MERCHANT_ORDER_NO_PATTERN.fullmatch(value):
        raise serializers.ValidationError(
            f"Use 1 to {vocabulary.MERCHANT_ORDER_NO_MAX_LENGTH} characters: "
            f"{vocabulary.MERCHANT_ORDER_NO_CHARACTERS} only (the gateway's rule)."
        )
    return value


_bound_fields = threading.local()


class FieldsBoundOnce:
    """
    Serializer fields built and bound once per serializer class and thread, instead of for every instance.

    Why: DRF builds a serializer's fields anew for every instance (from the model's metadata for a
    ``ModelSerializer``, by deep copy of the declared ones otherwise) and binds each to it. For an order
    created through the API, building the input's fields and the answer's cost a third of the request's CPU
    (docs/benchmarks.md). What they hold depends only on the class, and nothing here keeps per-request state
    on a field: validation and representation take the data as arguments, and the ``validate`` methods that
    read ``initial_data`` or ``context`` run on the request's own serializer, not on its fields. So each
    thread keeps one bound set per class, bound to a template instance of that class, and every instance
    of the class in that thread uses it. Per thread, so that no two requests ever share a field at once.
    """

    @property
    def fields(self):
        by_class = _bound_fields.__dict__.setdefault("by_class", {})
        fields = by_class.get(type(self))
        if fields is None:
            template = type(self)()
            fields = by_class[type(self)] = super(FieldsBoundOnce, template).fields  # type: ignore[misc]
        return fields


class StrictInputSerializer(FieldsBoundOnce, serializers.Serializer):
    """
    A request body that takes only its declared fields: an unknown one is a 400 naming it, with the
    closest known name, instead of being dropped (``tip_ammount`` would create an order without a tip).
    """

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            known = [name for name, field in self.fields.items() if not field.read_only]
            unknown = sorted(set(data) - set(known))
            if unknown:
                raise serializers.ValidationError({name: [_unknown_field_message(name, known)] for name in unknown})
        return super().to_internal_value(data)


def _unknown_field_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"Unknown field; did you mean '{close[0]}'?"
    return f"Unknown field; this request takes: {', '.join(known) or 'no fields'}."


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
        "maxLength": 40,
        "example": "12.34",
        "description": f"Major units as a string; at most {MAX_SIGNIFICANT_DIGITS} digits down to the currency's minor "
        f"unit ({amount_maximum('USD')} USD, {amount_maximum('JPY')} JPY, {amount_maximum('BHD')} BHD), "
        "for each amount and for each sum the service computes (amount + tip + cashback, increments).",
    }
)
class AmountInput(serializers.Field):
    """An amount sent as a string ("12.34"); parsed to Decimal once the currency is known."""

    default_error_messages = {"float": 'Send amounts as strings such as "12.34", not JSON numbers.'}

    def to_internal_value(self, data):
        if isinstance(data, float):
            self.fail("float")
        if not isinstance(data, (str, int)) or isinstance(data, bool):
            raise serializers.ValidationError('Send the amount as a string such as "12.34".')
        return str(data).strip()

    def to_representation(self, value):
        return str(value)


@extend_schema_field(OpenApiTypes.STR)
class MoneyField(serializers.Field):
    """An amount rendered as a string with the row's currency digits ("34.50", "200" for JPY)."""

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        assert self.source is not None  # bound to its parent by now
        return getattr(instance, self.source), instance.currency

    def to_representation(self, value):
        amount, currency = value
        return None if amount is None else format_amount(Decimal(amount), currency)


def parse_money_fields(attrs: dict, currency: str, names: tuple[str, ...], *, allow_zero: bool = False) -> dict:
    """Turn the named raw amounts into Decimals for ``currency``; errors are reported per field."""
    errors = {}
    for name in names:
        if name not in attrs or attrs[name] is None:
            continue
        try:
            amount = parse_amount(attrs[name], currency)
        except AmountError as exc:
            errors[name] = [str(exc)]
            continue
        if amount < 0 or (amount == 0 and not allow_zero):
            errors[name] = ["Must be greater than zero." if not allow_zero else "Must not be negative."]
            continue
        attrs[name] = amount
    if errors:
        raise serializers.ValidationError(errors)
    return attrs


class CardInputSerializer(StrictInputSerializer):
    pan = serializers.RegexField(
        r"^\d{12,19}$", error_messages={"invalid": "12 to 19 digits, no spaces."}, write_only=True
    )
    holder = serializers.CharField(max_length=64, write_only=True)
    cvv = serializers.RegexField(r"^\d{3,4}$", error_messages={"invalid": "3 or 4 digits."}, write_only=True)
    expiry = serializers.RegexField(
        r"^(0[1-9]|1[0-2])\d{2}$", error_messages={"invalid": "MMYY, e.g. 1230."}, write_only=True
    )
    card_type = serializers.ChoiceField(choices=vocabulary.CARD_CHECKOUT_CARD_TYPES, default="CREDIT", write_only=True)

    def validate_pan(self, value: str) -> str:
        digits = [int(d) for d in value]
        checksum = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
        if checksum % 10:
            raise serializers.ValidationError("Not a valid card number (check digit).")
        return value


class OrderCreateSerializer(StrictInputSerializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    amount = AmountInput()
    currency = serializers.CharField(max_length=3, help_text="ISO 4217, e.g. USD.")
    description = serializers.CharField(max_length=128)
    merchant_order_no = serializers.CharField(max_length=64, required=False, help_text=MERCHANT_ORDER_NO_HELP)
    attach = serializers.CharField(max_length=128, required=False, allow_blank=True)
    expires_in = serializers.IntegerField(min_value=30, max_value=MAX_EXPIRES_IN, default=300)
    store_no = serializers.CharField(max_length=32, required=False, allow_blank=True)
    # channel "terminal"
    terminal_sn = serializers.CharField(max_length=32, required=False)
    trans_type = serializers.ChoiceField(choices=TransType.choices, default=TransType.SALE)
    tip_amount = AmountInput(required=False)
    cashback_amount = AmountInput(required=False)
    pay_scenario = serializers.ChoiceField(choices=vocabulary.PAY_SCENARIOS, required=False)
    pay_method_id = serializers.ChoiceField(choices=vocabulary.PAY_METHOD_IDS, required=False)
    card_type = serializers.ChoiceField(
        choices=list(vocabulary.TERMINAL_CARD_TYPES),
        required=False,
        help_text=f"{vocabulary.describe_choices(vocabulary.TERMINAL_CARD_TYPES)}.",
    )
    on_screen_tip = serializers.BooleanField(required=False)
    on_screen_signature = serializers.BooleanField(required=False)
    confirm_on_terminal = serializers.BooleanField(required=False)
    reject_when_terminal_offline = serializers.BooleanField(required=False)
    receipt_print_mode = serializers.ChoiceField(
        choices=list(vocabulary.RECEIPT_PRINT_MODES),
        required=False,
        help_text=f"{vocabulary.describe_choices(vocabulary.RECEIPT_PRINT_MODES)}.",
    )
    # channel "checkout" and "card"
    return_url = serializers.URLField(max_length=256, required=False)
    order_detail = serializers.DictField(
        required=False,
        validators=[validate_nested_object],
        help_text="Items, shipping, billing, payment options, theme.",
    )
    # channel "card"
    card = CardInputSerializer(required=False, write_only=True)
    billing_address = serializers.DictField(
        required=False,
        validators=[validate_nested_object],
        help_text=(
            "Required for channel 'card' (the gateway requires it): name, country, province, city, address1, "
            "address2, zip, phone."
        ),
    )

    TERMINAL_ONLY = (
        "terminal_sn",
        "tip_amount",
        "cashback_amount",
        "pay_scenario",
        "pay_method_id",
        *vocabulary.TERMINAL_OPTIONS,
    )
    CHANNEL_FIELDS = {
        Channel.TERMINAL: set(TERMINAL_ONLY) | {"trans_type"},
        Channel.CHECKOUT: set(vocabulary.CHECKOUT_OPTIONS),
        Channel.CARD: {"card", *vocabulary.CARD_OPTIONS},
    }

    def to_internal_value(self, data):
        if isinstance(data, dict):
            read_only = sorted(set(data) & set(READ_ONLY_ORDER_FIELDS))
            if read_only:
                raise serializers.ValidationError(
                    {name: ["Read-only: set by the service, not by clients."] for name in read_only}
                )
        return super().to_internal_value(data)

    def validate_merchant_order_no(self, value):
        return validate_merchant_order_no(value)

    def validate_currency(self, value):
        try:
            return validate_currency(value)
        except CurrencyError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        channel = attrs["channel"]
        other_channels = set().union(*(fields for ch, fields in self.CHANNEL_FIELDS.items() if ch != channel))
        misplaced = sorted((set(self.initial_data) & other_channels) - self.CHANNEL_FIELDS[channel])
        if misplaced:
            raise serializers.ValidationError({name: [f"Not used by channel '{channel}'."] for name in misplaced})
        if channel == Channel.TERMINAL and not attrs.get("terminal_sn"):
            raise serializers.ValidationError({"terminal_sn": ["Required for channel 'terminal'."]})
        if channel == Channel.CARD and not attrs.get("card"):
            raise serializers.ValidationError({"card": ["Required for channel 'card': pan, holder, cvv, expiry."]})
        if channel == Channel.CARD and not attrs.get("billing_address"):
            raise serializers.ValidationError(
                {"billing_address": ["Required for channel 'card': an object with the cardholder's billing address."]}
            )
        if channel != Channel.TERMINAL and attrs.get("trans_type", TransType.SALE) != TransType.SALE:
            raise serializers.ValidationError({"trans_type": ["Only channel 'terminal' takes a trans_type."]})
        parse_money_fields(attrs, attrs["currency"], ("amount",))
        parse_money_fields(attrs, attrs["currency"], ("tip_amount", "cashback_amount"), allow_zero=True)
        total = attrs["amount"] + attrs.get("tip_amount", 0) + attrs.get("cashback_amount", 0)
        try:
            amount_check_maximum(total, attrs["currency"], what="amount + tip_amount + cashback_amount")
        except AmountError as exc:
            raise serializers.ValidationError({"amount": [str(exc)]}) from None
        cashback = attrs.get("trans_type") == TransType.CASHBACK
        if cashback and not attrs.get("cashback_amount"):
            raise serializers.ValidationError(
                {"cashback_amount": ["Required for trans_type 'cashback', greater than zero."]}
            )
        if not cashback and attrs.get("cashback_amount"):
            raise serializers.ValidationError(
                {"cashback_amount": ["Only trans_type 'cashback' takes a cashback_amount."]}
            )
        return attrs

    def card_details(self) -> CardDetails | None:
        card = self.validated_data.get("card")
        return CardDetails(**card) if card else None


class RefundCreateSerializer(StrictInputSerializer):
    amount = AmountInput()
    reason = serializers.CharField(max_length=64)
    merchant_order_no = serializers.CharField(max_length=64, required=False, help_text=MERCHANT_ORDER_NO_HELP)

    def validate_merchant_order_no(self, value):
        return validate_merchant_order_no(value)

    def validate(self, attrs):
        return parse_money_fields(attrs, self.context["currency"], ("amount",))


class AmountSerializer(StrictInputSerializer):
    amount = AmountInput()

    def validate(self, attrs):
        return parse_money_fields(attrs, self.context["currency"], ("amount",))


class TipSerializer(StrictInputSerializer):
    tip_amount = AmountInput()

    def validate(self, attrs):
        return parse_money_fields(attrs, self.context["currency"], ("tip_amount",), allow_zero=True)


class RefundSerializer(FieldsBoundOnce, serializers.ModelSerializer):
    orig_merchant_order_no = serializers.CharField(source="order.merchant_order_no", read_only=True)
    amount = MoneyField()

    class Meta:
        model = Refund
        fields = [
            "merchant_order_no",
            "orig_merchant_order_no",
            "trans_no",
            "status",
            "amount",
            "currency",
            "reason",
            "gateway_code",
            "gateway_message",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OperationSerializer(FieldsBoundOnce, serializers.ModelSerializer):
    amount = serializers.SerializerMethodField()

    class Meta:
        model = OrderOperation
        fields = [
            "kind",
            "merchant_order_no",
            "amount",
            "status",
            "trans_no",
            "gateway_code",
            "gateway_message",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {"type": "string", "nullable": True, "description": "Empty (null) for a void, close or revoke."}
    )
    def get_amount(self, operation) -> str | None:
        return None if operation.amount is None else format_amount(operation.amount, operation.order.currency)


class OrderSerializer(FieldsBoundOnce, serializers.ModelSerializer):
    amount = MoneyField()
    tip_amount = MoneyField()
    cashback_amount = MoneyField()
    refunded_amount = MoneyField()
    captured_amount = MoneyField(help_text="What the capture took; an authorization is captured once.")
    authorized_amount = MoneyField(help_text="What the authorization holds: its amount plus increments.")
    paid_amount = MoneyField(help_text="What the customer paid (captured amount plus tip, for an authorization).")
    refundable_amount = serializers.SerializerMethodField(
        help_text="What can still be refunded: paid less every refund that has not failed; 0 unless succeeded."
    )
    discount_bpc = MoneyField(help_text="Discount the gateway reports as borne by the payment channel.")
    discount_bmopc = MoneyField(help_text="Discount the gateway reports as borne by the merchant.")
    trans_fee_c = MoneyField(help_text="Fee the gateway reports the customer paid.")
    # Text, not format "uri": empty for the channels and states that have none.
    pay_url = serializers.CharField(
        read_only=True, help_text="The hosted checkout page (channel checkout); empty otherwise."
    )
    redirect_url_3dsecure = serializers.CharField(
        read_only=True, help_text="Where to send the customer for 3-D Secure (channel card), if asked; empty otherwise."
    )
    refunds = RefundSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "merchant_order_no",
            "trans_no",
            "channel",
            "trans_type",
            "status",
            "amount",
            "tip_amount",
            "cashback_amount",
            "currency",
            "paid_amount",
            "paid_at",
            "authorized_amount",
            "captured_amount",
            "refunded_amount",
            "refundable_amount",
            "discount_bpc",
            "discount_bmopc",
            "trans_fee_c",
            "description",
            "attach",
            "store_no",
            "terminal_sn",
            "pay_url",
            "redirect_url_3dsecure",
            "terminal_online_status",
            "pay_method_id",
            "gateway_code",
            "gateway_message",
            "failure_code",
            "failure_message",
            "expires_at",
            "created_at",
            "updated_at",
            "refunds",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_refundable_amount(self, order) -> str:
        # From the prefetched refunds, so a list costs no query per order.
        if order.status not in ORDER_PAID_STATUSES:
            return format_amount(Decimal("0"), order.currency)
        reserved = sum(
            (refund.amount for refund in order.refunds.all() if refund.status != RefundStatus.FAILED), Decimal("0")
        )
        return format_amount(order.paid_amount - reserved, order.currency)


class OrderDetailSerializer(OrderSerializer):
    operations = OperationSerializer(many=True, read_only=True)

    class Meta(OrderSerializer.Meta):
        fields = [*OrderSerializer.Meta.fields, "operations"]
        read_only_fields = fields


class EmptyInputSerializer(StrictInputSerializer):
    """An action that takes no body: ``{}`` or nothing; any field is unknown."""


class BatchCloseInputSerializer(StrictInputSerializer):
    store_no = serializers.CharField(max_length=32, required=False, allow_blank=True)
    terminal_sn_list = serializers.ListField(child=serializers.CharField(max_length=32), required=False, max_length=100)


@extend_schema_field(OpenApiTypes.STR)
class GatewayAmountField(serializers.Field):
    """An amount the gateway reported without a currency (batch totals): its plain decimal text, "12.34"."""

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value):
        amount = Decimal(value).normalize()
        if amount == amount.to_integral():
            return f"{amount.quantize(Decimal(1)):f}"  # "200", not "2E+2"
        exponent = amount.as_tuple().exponent
        assert isinstance(exponent, int)  # a finite amount: Decimal(value) of a gateway figure
        if -exponent < 2:
            amount = amount.quantize(Decimal("0.01"))  # "12.30", not "12.3"
        return f"{amount:f}"


class BatchCloseSerializer(FieldsBoundOnce, serializers.ModelSerializer):
    total_amount = GatewayAmountField(allow_null=True)

    class Meta:
        model = BatchClose
        fields = [
            "id",
            "trigger",
            "store_no",
            "terminal_sn_list",
            "status",
            "attempts",
            "count",
            "total_amount",
            "gateway_code",
            "gateway_message",
            "business_date",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OpenBatchSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    total_amount = GatewayAmountField(allow_null=True)
    store_no = serializers.CharField(allow_blank=True)
    terminal_sn = serializers.CharField(allow_blank=True)


class ErrorSerializer(serializers.Serializer):
    """``{"error": {"code", "message", "details"}}``: every error the API answers has this shape."""

    class ErrorBody(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()
        details = serializers.DictField()

    error = ErrorBody()


def wait_seconds(query_params) -> int:
    """``?wait=`` on an order: whole seconds, 0 to ORDER_WAIT_MAX_SECONDS; 0 when absent."""
    from django.conf import settings

    from codepay_service.errors import ValidationFailed

    raw = query_params.get("wait")
    if raw is None:
        return 0
    limit = settings.ORDER_WAIT_MAX_SECONDS
    if not re.fullmatch(r"[0-9]{1,3}", raw) or int(raw) > limit:
        raise ValidationFailed(details={"wait": [f"A whole number of seconds from 0 to {limit}, e.g. wait=30."]})
    return int(raw)
