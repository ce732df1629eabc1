"""Receiving notifications over real HTTP: verify, store every delivery, answer `success` only for valid ones."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode

import requests
from django.urls import reverse

from payments.gateway import signing
from tests.conftest import VECTORS
from tests.factories import MerchantAccountFactory
from tests.webhooks.conftest import GATEWAY_KEY, notification_fields, signed
from webhooks.models import NotificationDelivery, ProcessingStatus, Verification


def _only_delivery() -> NotificationDelivery:
    [delivery] = NotificationDelivery.objects.all()
    return delivery


def test_valid_json_notification_is_stored_then_acknowledged(gateway, notify_account):
    """
    A correctly signed JSON notification is answered HTTP 200 with the plain text `success` and stored
    byte for byte: raw body, content type, source address, headers without Authorization or Cookie,
    parsed fields without `sign`, verified with the current key, fingerprint = sha256 of the sign string,
    and waits as "received" with a next attempt for the sweep.
    """
    fields = notification_fields("ORDER-1", attach='{"table":7}')
    body = json.dumps(signed(fields))

    response = gateway.post(
        body, headers={"Authorization": "Basic c2VjcmV0", "Cookie": "sessionid=abc", "X-Trace": "t-1"}
    )

    assert (response.status_code, response.text, response.headers["Content-Type"]) == (
        200,
        "success",
        "text/plain; charset=utf-8",
    )
    delivery = _only_delivery()
    assert bytes(delivery.raw_body) == body.encode("utf-8")
    assert (delivery.account_id, delivery.account_code) == (notify_account.pk, "default")
    assert (delivery.content_type, delivery.source_address) == ("application/json; charset=utf-8", "127.0.0.1")
    assert (delivery.body_size, delivery.body_truncated) == (len(body.encode("utf-8")), False)
    assert delivery.headers["X-Trace"] == "t-1"
    assert {name.lower() for name in delivery.headers} & {"authorization", "cookie"} == set()
    assert delivery.payload == fields
    assert (delivery.verification, delivery.verified_with) == (Verification.VALID, "current")
    assert delivery.fingerprint == hashlib.sha256(signing.sign_string(fields).encode()).hexdigest()
    assert (delivery.merchant_order_no, delivery.trans_no, delivery.trans_type, delivery.trans_status) == (
        "ORDER-1",
        "TORDER-1",
        "1",
        "2",
    )
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at is not None) == (
        ProcessingStatus.RECEIVED,
        0,
        True,
    )


def test_form_encoded_notification_is_verified_over_its_decoded_values(gateway, notify_account):
    """A form-encoded body verifies over the decoded values, is answered `success` and keeps its raw text."""
    fields = notification_fields("ORDER-2", attach="a b&c=d")
    body = urlencode(signed(fields))

    response = gateway.post(body, content_type="application/x-www-form-urlencoded")

    assert (response.status_code, response.text) == (200, "success")
    delivery = _only_delivery()
    assert (delivery.verification, delivery.payload, bytes(delivery.raw_body)) == (
        Verification.VALID,
        fields,
        body.encode("ascii"),
    )


def test_json_numbers_and_objects_are_verified_over_their_raw_text(gateway, notify_account):
    """
    Values that arrive as JSON numbers, booleans or objects are signed by the gateway as their text in
    the body ("10.50", "true", '{"a":[1,2]}'), so the notification verifies and the payload keeps that text.
    """
    raw_values = {"order_amount": "10.50", "tip_amount": "0", "on_screen_tip": "true", "extra": '{"a":[1,2]}'}
    fields = {**notification_fields("ORDER-3"), **raw_values}
    strings = {key: value for key, value in fields.items() if key not in raw_values}
    unquoted = ", ".join(f'"{key}": {value}' for key, value in raw_values.items())
    body = json.dumps(strings)[:-1] + f', {unquoted}, "sign": "{signing.sign(fields, GATEWAY_KEY)}"}}'
    assert '"order_amount": 10.50, "tip_amount": 0, "on_screen_tip": true, "extra": {"a":[1,2]}' in body

    response = gateway.post(body)

    assert (response.status_code, response.text) == (200, "success")
    delivery = _only_delivery()
    assert (delivery.verification, delivery.payload) == (Verification.VALID, fields)


def test_tampered_notification_is_rejected_and_stored(gateway, notify_account):
    """A body changed after signing (amount raised) gets HTTP 400, never `success`, and is stored as rejected."""
    body = signed(notification_fields("ORDER-4"))
    body["order_amount"] = "1000.00"

    response = gateway.post(json.dumps(body))

    assert (response.status_code, response.text) == (400, "rejected: invalid_signature")
    delivery = _only_delivery()
    assert (delivery.verification, delivery.status, delivery.merchant_order_no) == (
        Verification.INVALID_SIGNATURE,
        ProcessingStatus.REJECTED,
        "ORDER-4",
    )
    assert delivery.next_attempt_at is None


def test_unsigned_notification_is_rejected(gateway, notify_account):
    """A body without `sign` gets HTTP 400 and is stored as unsigned and rejected."""
    response = gateway.post(json.dumps(notification_fields("ORDER-5")))

    assert (response.status_code, response.text) == (400, "rejected: unsigned")
    assert (_only_delivery().verification, _only_delivery().status) == (
        Verification.UNSIGNED,
        ProcessingStatus.REJECTED,
    )


def test_notification_signed_with_another_key_is_rejected(gateway, notify_account):
    """A signature by any key but the account's gateway keys gets HTTP 400 (invalid signature)."""
    response = gateway.notify(notification_fields("ORDER-6"), key=signing.generate_private_key())

    assert (response.status_code, response.text) == (400, "rejected: invalid_signature")
    assert _only_delivery().verification == Verification.INVALID_SIGNATURE


def test_notification_signed_with_the_next_key_is_accepted_during_rotation(gateway, notify_account):
    """During a key rotation a signature by the account's next gateway key is valid and recorded as such."""
    next_key = signing.generate_private_key()
    notify_account.next_gateway_public_key = signing.public_key_b64der(next_key.public_key())
    notify_account.save()

    response = gateway.notify(notification_fields("ORDER-7"), key=next_key)

    assert (response.status_code, response.text) == (200, "success")
    delivery = _only_delivery()
    assert (delivery.verification, delivery.verified_with, delivery.verification_detail) == (
        Verification.VALID,
        "next",
        "verified with the next gateway key",
    )


def test_an_unreadable_next_key_does_not_stop_the_current_key_from_verifying(gateway, notify_account):
    """
    During a rotation with a malformed next key pasted in, a notification signed with the current key is
    still valid: answered `success`, verified with the current key.
    """
    notify_account.next_gateway_public_key = "not-a-key"
    notify_account.save()

    response = gateway.notify(notification_fields("ROT-1"))

    assert (response.status_code, response.text) == (200, "success")
    delivery = _only_delivery()
    assert (delivery.verification, delivery.verified_with, delivery.verification_detail) == (
        Verification.VALID,
        "current",
        "verified with the current gateway key",
    )


def test_the_next_key_verifies_when_the_current_key_is_unreadable(gateway, notify_account):
    """With a malformed current key, a notification signed with the next key is valid and recorded as "next"."""
    next_key = signing.generate_private_key()
    notify_account.gateway_public_key = "not-a-key"
    notify_account.next_gateway_public_key = signing.public_key_b64der(next_key.public_key())
    notify_account.save()

    response = gateway.notify(notification_fields("ROT-2"), key=next_key)

    assert (response.status_code, response.text) == (200, "success")
    assert (_only_delivery().verification, _only_delivery().verified_with) == (Verification.VALID, "next")


def test_verdicts_name_the_gateway_key_that_could_not_be_read(gateway, notify_account):
    """
    With no readable key the delivery gets 503 (key_unavailable, each key's problem in the detail); with a
    readable key that is not the signer's and an unreadable one, 400 (invalid_signature, naming the key
    that could not be tried).
    """
    unreadable = 'The gateway public key is neither base64 DER ("MIIBIjAN...") nor PEM.'
    notify_account.gateway_public_key = "not-a-key"
    notify_account.next_gateway_public_key = "not-a-key-either"
    notify_account.save()
    none_readable = gateway.notify(notification_fields("ROT-3"))
    notify_account.gateway_public_key = signing.public_key_b64der(signing.generate_private_key().public_key())
    notify_account.save()
    wrong_readable = gateway.notify(notification_fields("ROT-3"))

    assert [(none_readable.status_code, none_readable.text), (wrong_readable.status_code, wrong_readable.text)] == [
        (503, "rejected: key_unavailable"),
        (400, "rejected: invalid_signature"),
    ]
    assert list(NotificationDelivery.objects.order_by("id").values_list("verification", "verification_detail")) == [
        (Verification.KEY_UNAVAILABLE, f"current key: {unreadable}; next key: {unreadable}"),
        (
            Verification.INVALID_SIGNATURE,
            "the signature verifies with no gateway key of the account (not tried, unreadable: the next key)",
        ),
    ]


def test_rejected_bodies_are_stored_up_to_4_kib_and_valid_ones_whole(gateway, notify_account):
    """
    Unverified POSTs of about 10 KiB (a bad signature, an unknown account, a malformed body) are stored as
    their first 4096 bytes, flagged truncated, with their real size and without parsed fields; a valid
    notification of the same size (a long attach) is stored whole.
    """
    forged = json.dumps({**notification_fields("BIG-1", attach="x" * 10000), "sign": "AAAA"}).encode()
    stranger = json.dumps(signed(notification_fields("BIG-2", attach="y" * 10000))).encode()
    malformed = b"[" + b"1," * 5000 + b"1"
    valid = json.dumps(signed(notification_fields("BIG-3", attach="z" * 10000))).encode()

    responses = [
        gateway.post(forged),
        gateway.post(stranger, account_code="nosuch"),
        gateway.post(malformed),
        gateway.post(valid),
    ]

    assert [response.status_code for response in responses] == [400, 400, 400, 200]
    stored = [
        (delivery.verification, bytes(delivery.raw_body), delivery.body_truncated, delivery.body_size, delivery.payload)
        for delivery in NotificationDelivery.objects.order_by("id")
    ]
    assert stored[:3] == [
        (Verification.INVALID_SIGNATURE, forged[:4096], True, len(forged), None),
        (Verification.UNKNOWN_ACCOUNT, stranger[:4096], True, len(stranger), None),
        (Verification.MALFORMED, malformed[:4096], True, len(malformed), None),
    ]
    assert stored[3][:4] == (Verification.VALID, valid, False, len(valid))
    assert stored[3][4]["attach"] == "z" * 10000


def test_oversized_notification_gets_413_and_is_stored_truncated(gateway, notify_account, settings):
    """
    A body over CODEPAY_NOTIFICATION_MAX_BYTES gets HTTP 413 and is stored as its first MAX_BYTES bytes,
    flagged truncated, with the announced size; it is never applied.
    """
    settings.CODEPAY_NOTIFICATION_MAX_BYTES = 1024
    body = json.dumps(signed(notification_fields("ORDER-8", attach="x" * 5000))).encode()

    response = gateway.post(body)

    assert (response.status_code, response.text) == (413, "rejected: too_large")
    delivery = _only_delivery()
    assert (bytes(delivery.raw_body), delivery.body_truncated, delivery.body_size) == (body[:1024], True, len(body))
    assert (delivery.verification, delivery.status, delivery.payload) == (
        Verification.TOO_LARGE,
        ProcessingStatus.REJECTED,
        None,
    )


def test_notification_for_an_unknown_account_is_rejected(gateway, notify_account):
    """A POST to /webhooks/codepay/<code>/ for no active account gets HTTP 400 and is stored without an account."""
    response = gateway.notify(notification_fields("ORDER-9"), account_code="nosuch")

    assert (response.status_code, response.text) == (400, "rejected: unknown_account")
    delivery = _only_delivery()
    assert (delivery.account_id, delivery.account_code, delivery.verification) == (
        None,
        "nosuch",
        Verification.UNKNOWN_ACCOUNT,
    )


def test_notification_for_a_further_account_is_verified_with_its_key(gateway, notify_account):
    """/webhooks/codepay/<code>/ verifies with that account's key and checks that the body names that merchant."""
    west = MerchantAccountFactory(
        code="west",
        app_id="wzwest",
        merchant_no="302300000999",
        gateway_public_key=VECTORS["gateway_public_key_b64der"],
    )

    accepted = gateway.notify(
        notification_fields("W-1", app_id="wzwest", merchant_no="302300000999"), account_code="west"
    )
    refused = gateway.notify(notification_fields("W-2"), account_code="west")

    assert (accepted.status_code, accepted.text) == (200, "success")
    assert (refused.status_code, refused.text) == (400, "rejected: account_mismatch")
    verdicts = list(
        NotificationDelivery.objects.order_by("id").values_list("account_id", "merchant_order_no", "verification")
    )
    assert verdicts == [(west.pk, "W-1", Verification.VALID), (west.pk, "W-2", Verification.ACCOUNT_MISMATCH)]


def test_source_outside_the_allowed_networks_is_refused(gateway, notify_account, settings):
    """
    With CODEPAY_NOTIFICATION_ALLOWED_NETWORKS set to CodePay's sources, a genuine notification from
    127.0.0.1 gets HTTP 403 and is stored as source_not_allowed; once 127.0.0.0/8 is allowed it is accepted.
    """
    settings.CODEPAY_NOTIFICATION_ALLOWED_NETWORKS = ["3.135.111.52/32", "18.217.220.157"]
    refused = gateway.notify(notification_fields("ORDER-10"))
    settings.CODEPAY_NOTIFICATION_ALLOWED_NETWORKS = ["3.135.111.52/32", "127.0.0.0/8"]
    accepted = gateway.notify(notification_fields("ORDER-10"))

    assert (refused.status_code, refused.text) == (403, "rejected: source_not_allowed")
    assert (accepted.status_code, accepted.text) == (200, "success")
    assert list(NotificationDelivery.objects.order_by("id").values_list("verification", flat=True)) == [
        Verification.SOURCE_NOT_ALLOWED,
        Verification.VALID,
    ]


def test_malformed_body_is_rejected(gateway, notify_account):
    """A body that is not a flat object (a JSON list, a field twice) gets HTTP 400 and is stored as malformed."""
    as_list = gateway.post("[1, 2]")
    twice = gateway.post('{"sign": "a", "trans_no": "1", "trans_no": "2"}')

    assert [(as_list.status_code, as_list.text), (twice.status_code, twice.text)] == [(400, "rejected: malformed")] * 2
    assert list(NotificationDelivery.objects.values_list("verification", flat=True)) == [Verification.MALFORMED] * 2


def test_only_post_is_accepted(gateway, notify_account):
    """A GET is answered 405 and stores nothing: it is not a delivery."""
    response = requests.get(gateway.url(), timeout=10)

    assert (response.status_code, NotificationDelivery.objects.count()) == (405, 0)


def test_the_trailing_slash_is_optional(gateway, notify_account):
    """A notify_url without its trailing slash is served directly (200 `success`), never redirected."""
    response = requests.post(
        gateway.url().rstrip("/"),
        data=json.dumps(signed(notification_fields("ORDER-11"))),
        allow_redirects=False,
        timeout=10,
    )

    assert (response.status_code, response.text) == (200, "success")
    assert reverse("webhooks:codepay") == "/webhooks/codepay/"
    assert reverse("webhooks:codepay-account", args=["west"]) == "/webhooks/codepay/west/"
