"""Client for the CodePay merchant payment service (orders, refunds, waits, events)."""

from codepay_merchant_client.client import MerchantClient, Order, Refund
from codepay_merchant_client.errors import (
    AuthenticationError,
    ConflictError,
    ConnectionFailed,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServiceError,
    SignatureVerificationError,
    UnavailableError,
)
from codepay_merchant_client.events import SIGNATURE_HEADER, construct_event, verify_signature

__all__ = [
    "SIGNATURE_HEADER",
    "AuthenticationError",
    "ConflictError",
    "ConnectionFailed",
    "GatewayError",
    "InvalidRequestError",
    "MerchantClient",
    "NotFoundError",
    "Order",
    "RateLimitError",
    "Refund",
    "ServiceError",
    "SignatureVerificationError",
    "UnavailableError",
    "construct_event",
    "verify_signature",
]
