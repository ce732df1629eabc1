"""
CodePay message signing, verification and card encryption (docs/protocol.md, "Request signing",
"Responses", "Rules: merchant-hosted checkout").

The sign string is every top-level field except ``sign``, with null and empty values dropped, keys
sorted by character code and joined as ``key=value`` with ``&``; values are raw text (no URL-encoding,
no trimming). The same rule signs requests (our key), responses and notifications (the gateway's key),
so one function builds it for all three.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import GatewayConfigurationError

# RSA-OAEP with SHA-1 adds 2 * 20 + 2 bytes of padding to each 256-byte block (RSA-2048).
_CARD_CHUNK_BYTES = 214


def sign_string(fields: Mapping[str, Any]) -> str:
    """The canonical text that is signed: sorted ``key=value`` pairs of non-empty fields, ``sign`` excluded."""
    pairs = []
    for key in sorted(fields):
        value = fields[key]
        if key == "sign" or value is None or value == "":
            continue
        pairs.append(f"{key}={value}")
    return "&".join(pairs)


def raw_top_level_values(body: str) -> dict[str, str]:
    """
    The raw JSON text of each top-level value of ``body``.

    When ``data`` arrives as an object rather than a string, the signature covers its text as sent, so it
    is taken from the body rather than re-serialised (docs/protocol.md, "Responses").
    """
    decoder = json.JSONDecoder()
    raw: dict[str, str] = {}
    index = body.index("{") + 1
    length = len(body)
    while index < length:
        while index < length and body[index] in " \t\r\n,":
            index += 1
        if index >= length or body[index] == "}":
            break
        key, index = decoder.raw_decode(body, index)
        while body[index] in " \t\r\n:":
            index += 1
        start = index
        _, index = decoder.raw_decode(body, index)
        raw[key] = body[start:index]
    return raw


def sign(fields: Mapping[str, Any], private_key: rsa.RSAPrivateKey) -> str:
    signature = private_key.sign(sign_string(fields).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify(fields: Mapping[str, Any], signature: object, public_key: rsa.RSAPublicKey) -> bool:
    """True when ``signature`` (base64) signs ``fields`` under ``public_key``; never raises for bad input."""
    if not signature or not isinstance(signature, str):
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, sign_string(fields).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """Load an app private key given as PKCS#8 or PKCS#1 PEM text."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data.strip() + b"\n", password=None)
    except (ValueError, TypeError) as exc:
        raise GatewayConfigurationError(
            "The app private key is not a readable unencrypted PEM RSA key (PKCS#8 or PKCS#1)."
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GatewayConfigurationError("The app private key is not an RSA key.")
    return key


def load_public_key(text: str | bytes) -> rsa.RSAPublicKey:
    """Load a public key given as base64 X.509 SubjectPublicKeyInfo DER (CodePay's form) or PEM."""
    data = text.encode("ascii") if isinstance(text, str) else text
    data = data.strip()
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data + b"\n")
        else:
            key = serialization.load_der_public_key(base64.b64decode(b"".join(data.split()), validate=True))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise GatewayConfigurationError(
            'The gateway public key is neither base64 DER ("MIIBIjAN...") nor PEM.'
        ) from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise GatewayConfigurationError("The gateway public key is not an RSA key.")
    return key


def public_key_b64der(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


_OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def encrypt_card(card_json: str, public_key: rsa.RSAPublicKey) -> str:
    """Encrypt the card JSON for ``pay.merchant.checkout``: RSA-OAEP-SHA1 in 214-byte chunks, then base64."""
    plaintext = card_json.encode("utf-8")
    blocks = [
        public_key.encrypt(plaintext[i : i + _CARD_CHUNK_BYTES], _OAEP_SHA1)
        for i in range(0, len(plaintext), _CARD_CHUNK_BYTES)
    ]
    return base64.b64encode(b"".join(blocks)).decode("ascii")


def decrypt_card(ciphertext_b64: str, private_key: rsa.RSAPrivateKey) -> str:
    """The gateway's side of :func:`encrypt_card` (used by the sandbox)."""
    raw = base64.b64decode(ciphertext_b64)
    block = private_key.key_size // 8
    return b"".join(private_key.decrypt(raw[i : i + block], _OAEP_SHA1) for i in range(0, len(raw), block)).decode(
        "utf-8"
    )
