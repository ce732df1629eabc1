"""The published CodePay test vectors, reproduced byte for byte."""

import json
from pathlib import Path

import pytest

from payments.gateway import signing

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "test-vectors.json").read_text())


def _key(name):
    return signing.load_private_key(VECTORS[f"{name}_pem"])


@pytest.mark.parametrize("vector", [v for v in VECTORS["vectors"] if "sign_string" in v], ids=lambda v: v["name"])
def test_sign_string_matches_vector(vector):
    """The sign string drops `sign` and empty values, sorts keys and keeps values raw."""
    fields = vector.get("params") or vector["body"]
    assert signing.sign_string(fields) == vector["sign_string"]


@pytest.mark.parametrize("vector", [v for v in VECTORS["vectors"] if "params" in v], ids=lambda v: v["name"])
def test_request_signature_matches_vector(vector):
    """Signing a request with the app key yields the published signature exactly (PKCS#1 v1.5 is deterministic)."""
    assert signing.sign(vector["params"], _key("app_private_key")) == vector["sign"]


@pytest.mark.parametrize("vector", [v for v in VECTORS["vectors"] if "body" in v], ids=lambda v: v["name"])
def test_gateway_signed_body_verifies_only_when_untampered(vector):
    """Responses and notifications verify with the gateway public key; the tampered one does not."""
    public_key = signing.load_public_key(VECTORS["gateway_public_key_b64der"])
    body = vector["body"]
    assert signing.verify(body, body["sign"], public_key) is vector.get("valid", True)
    if vector.get("valid", True):
        assert signing.sign(body, _key("gateway_private_key")) == body["sign"]


def test_public_keys_load_from_base64_der_and_pem():
    """CodePay hands out base64 DER; PEM is accepted too and is the same key."""
    der_key = signing.load_public_key(VECTORS["app_public_key_b64der"])
    pem = _key("app_private_key").public_key()
    assert signing.public_key_b64der(der_key) == VECTORS["app_public_key_b64der"]
    assert signing.public_key_b64der(pem) == VECTORS["app_public_key_b64der"]


def test_published_card_ciphertext_decrypts_to_the_card_json():
    """The vector's ciphertext is RSA-OAEP-SHA1 under the gateway key; it decrypts to the published plaintext."""
    card = VECTORS["card_encryption"]
    assert signing.decrypt_card(card["ciphertext_b64"], _key("gateway_private_key")) == card["plaintext"]


def test_card_encryption_round_trips_across_chunks():
    """A card JSON longer than one 214-byte chunk is encrypted block by block and decrypts whole."""
    gateway_key = _key("gateway_private_key")
    plaintext = json.dumps({"pan": "4111111111111111", "holder": "X" * 300, "cvv": "123", "expiry": "1230"})
    ciphertext = signing.encrypt_card(plaintext, gateway_key.public_key())
    assert len(ciphertext) == len(signing.encrypt_card("x" * 214 * 2, gateway_key.public_key()))
    assert signing.decrypt_card(ciphertext, gateway_key) == plaintext


def test_bad_keys_raise_one_readable_configuration_error():
    """A wrong key names what is wrong without echoing the key."""
    with pytest.raises(signing.GatewayConfigurationError, match="not a readable unencrypted PEM"):
        signing.load_private_key("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----")
    with pytest.raises(signing.GatewayConfigurationError, match="neither base64 DER"):
        signing.load_public_key("not a key")
