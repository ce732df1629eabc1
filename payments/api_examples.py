"""Request and response examples shown in the API docs; values as the sandbox answers them."""

from drf_spectacular.utils import OpenApiExample

ORDER_NO = "POS-1001"

_ORDER = {
    "merchant_order_no": ORDER_NO,
    "trans_no": "2024022808515100001",
    "channel": "terminal",
    "trans_type": "sale",
    "status": "succeeded",
    "amount": "12.34",
    "tip_amount": "2.00",
    "cashback_amount": "0.00",
    "currency": "USD",
    "refunded_amount": "0.00",
    "captured_amount": "0.00",
    "authorized_amount": "0.00",
    "description": "Coffee and cake",
    "attach": "",
    "store_no": "4021000008",
    "terminal_sn": "WPYB002248000865",
    "pay_url": "",
    "redirect_url_3dsecure": "",
    "terminal_online_status": "online",
    "pay_method_id": "Visa",
    "gateway_code": "0",
    "gateway_message": "success",
    "expires_at": "2024-02-28T08:56:40Z",
    "created_at": "2024-02-28T08:51:40Z",
    "updated_at": "2024-02-28T08:51:52Z",
    "refunds": [],
}
_REFUND = {
    "merchant_order_no": "RF-1001-1",
    "orig_merchant_order_no": ORDER_NO,
    "trans_no": "2024022809120300002",
    "status": "succeeded",
    "amount": "4.00",
    "currency": "USD",
    "reason": "Returned a cake",
    "gateway_code": "0",
    "gateway_message": "success",
    "created_at": "2024-02-28T09:12:03Z",
    "updated_at": "2024-02-28T09:12:04Z",
}

ORDER_CREATE_REQUESTS = [
    OpenApiExample(
        "Terminal sale",
        request_only=True,
        description="Push a sale to a card terminal; the customer taps or inserts the card there.",
        value={
            "channel": "terminal",
            "merchant_order_no": ORDER_NO,
            "amount": "12.34",
            "tip_amount": "2.00",
            "currency": "USD",
            "description": "Coffee and cake",
            "terminal_sn": "WPYB002248000865",
        },
    ),
    OpenApiExample(
        "Terminal pre-authorization",
        request_only=True,
        description="Hold an amount (hotel, rental); capture it later with `capture`.",
        value={
            "channel": "terminal",
            "trans_type": "auth",
            "amount": "150.00",
            "currency": "USD",
            "description": "Room 12 deposit",
            "terminal_sn": "WPYB002248000865",
        },
    ),
    OpenApiExample(
        "Hosted checkout",
        request_only=True,
        description="Answers a `pay_url` to send the customer to; they come back to `return_url`.",
        value={
            "channel": "checkout",
            "amount": "150.34",
            "currency": "USD",
            "description": "Phone",
            "return_url": "https://shop.example.com/return",
            "order_detail": {"items": [{"name": "Phone", "quantity": 1, "price": "150.34"}]},
        },
    ),
    OpenApiExample(
        "Card details",
        request_only=True,
        description="Card data you collected. It is sent to CodePay encrypted and never stored or logged here.",
        value={
            "channel": "card",
            "amount": "34.50",
            "currency": "USD",
            "description": "Shoes",
            "card": {"pan": "4111111111111111", "holder": "JANE DOE", "cvv": "123", "expiry": "1230"},
            "billing_address": {"name": "Jane Doe", "country": "US", "zip": "10001"},
        },
    ),
]

ORDER_PENDING = OpenApiExample(
    "Waiting on the terminal",
    response_only=True,
    status_codes=["201"],
    value={
        **_ORDER,
        "status": "pending",
        "pay_method_id": "",
        "gateway_message": "success",
        "updated_at": "2024-02-28T08:51:40Z",
    },
)
ORDER_SUCCEEDED = OpenApiExample("Paid", response_only=True, status_codes=["200"], value=_ORDER)
ORDER_REFUNDED = OpenApiExample(
    "Paid, partly refunded",
    response_only=True,
    status_codes=["200"],
    value={**_ORDER, "refunded_amount": "4.00", "refunds": [_REFUND]},
)
ORDER_UNKNOWN = OpenApiExample(
    "Answer lost",
    response_only=True,
    status_codes=["202"],
    description="CodePay's answer did not arrive; the service looks the order up. Read it again later.",
    value={
        **_ORDER,
        "status": "unknown",
        "trans_no": "",
        "pay_method_id": "",
        "gateway_code": "",
        "gateway_message": "",
    },
)
ORDER_LIST = OpenApiExample(
    "One page",
    response_only=True,
    status_codes=["200"],
    value={"next": "https://pay.example.com/api/v1/orders/?cursor=cD0yMDI0", "previous": None, "results": [_ORDER]},
)

REFUND_CREATE_REQUEST = OpenApiExample(
    "Part of the amount",
    request_only=True,
    value={"amount": "4.00", "reason": "Returned a cake", "merchant_order_no": "RF-1001-1"},
)
REFUND_SUCCEEDED = OpenApiExample("Refunded", response_only=True, status_codes=["201", "200"], value=_REFUND)

AMOUNT_REQUEST = OpenApiExample("Amount", request_only=True, value={"amount": "120.00"})
TIP_REQUEST = OpenApiExample("Tip", request_only=True, value={"tip_amount": "3.00"})

BATCH_CLOSE_REQUEST = OpenApiExample(
    "One store's terminal",
    request_only=True,
    value={"store_no": "4021000008", "terminal_sn_list": ["WPYB002248000865"]},
)
BATCH_CLOSED = OpenApiExample(
    "Closed",
    response_only=True,
    status_codes=["201"],
    value={
        "id": 42,
        "trigger": "api",
        "store_no": "4021000008",
        "terminal_sn_list": ["WPYB002248000865"],
        "status": "succeeded",
        "attempts": 1,
        "count": 37,
        "total_amount": "1268.40",
        "gateway_code": "0",
        "gateway_message": "success",
        "business_date": None,
        "created_at": "2024-02-28T23:00:02Z",
        "updated_at": "2024-02-28T23:00:03Z",
    },
)
OPEN_BATCH = OpenApiExample(
    "Open batch",
    response_only=True,
    status_codes=["200"],
    value={"count": 12, "total_amount": "402.15", "store_no": "4021000008", "terminal_sn": "WPYB002248000865"},
)


def _error(name: str, *, status: str, code: str, message: str, details: dict) -> OpenApiExample:
    return OpenApiExample(
        name,
        response_only=True,
        status_codes=[status],
        value={"error": {"code": code, "message": message, "details": details}},
    )


INVALID_FIELDS = _error(
    "Invalid field",
    status="400",
    code="invalid_request",
    message="The request has invalid fields; see details.",
    details={"amount": ["USD amounts have at most 2 decimal places; got '12.345'."]},
)
STATE_CONFLICT = _error(
    "Not allowed in this state",
    status="409",
    code="state_conflict",
    message="Only a paid order can be refunded; this one is pending.",
    details={},
)
