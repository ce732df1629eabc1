"""
Is a notification genuine? Parsing the body, the RSA2 signature, the source address.

docs/protocol.md, "Notifications": the body is a flat object signed by the gateway like a
response, and new fields may be added at any time. So the sign string is built from every field that
arrived except ``sign`` (never from a list of known fields), with the value as the exact text that was
sent: a JSON number ``10.50`` is signed as ``10.50``, which a parse into Decimal and back could change,
so non-string JSON values are taken raw from the body with the gateway client's own helper.

Both JSON and form-encoded bodies are accepted (the gateway accepts both; which one it posts is not
documented). A body whose meaning is ambiguous (not an object, a repeated field) is malformed, never guessed.

During a key rotation the account holds the current and the next gateway key; a signature by either is
accepted and the one that verified is recorded, so an operator can see when the old key is no longer used.
Each key is loaded on its own: a malformed next key pasted during a rotation must not stop the current
one from verifying every genuine notification. Only when no key loads is the verdict "key unavailable"
(answered 503, so the gateway keeps re-posting until an operator fixes the key); a signature that fails
with the keys that did load is "invalid signature", its detail naming the key that could not be tried.

The gateway signs with one key for every merchant, so a genuine notification for merchant A would also
verify at merchant B's URL. When the body names its ``merchant_no`` or ``app_id`` they must be the
account's, or the delivery is refused rather than matched against B's orders.

Source allow-list (``CODEPAY_NOTIFICATION_ALLOWED_NETWORKS``): the address checked is REMOTE_ADDR. Behind a
reverse proxy or load balancer, the proxy must set it to the client address (e.g. gunicorn
``--forwarded-allow-ips`` with a trusted proxy, or a proxy-protocol aware server); ``X-Forwarded-For`` is
never read here, because any client can send it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa

from payments.gateway import signing
from payments.gateway.errors import GatewayConfigurationError

from .models import Verification

logger = logging.getLogger(__name__)

SIGN_FIELD = "sign"
JSON_CONTENT_TYPES = ("application/json", "text/json")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class MalformedBody(ValueError):
    """The body is not a flat JSON object or a form: there is nothing trustworthy to verify."""


@dataclass(frozen=True)
class ParsedNotification:
    """The fields as signed text (``None`` for a JSON null), without ``sign``; and the signature."""

    fields: dict[str, str | None]
    signature: str

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        return "" if value is None else value


@dataclass(frozen=True)
class GatewayKeys:
    """The account's gateway public keys that loaded, by label ("current", "next"), and why the others did not."""

    usable: dict[str, rsa.RSAPublicKey]
    unreadable: dict[str, str]


@dataclass(frozen=True)
class Verdict:
    verification: str
    detail: str = ""
    verified_with: str = ""

    @property
    def valid(self) -> bool:
        return self.verification == Verification.VALID


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"').lower()
    return "utf-8"


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _reject_duplicate_keys(pairs: Sequence[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise MalformedBody("a field appears twice")
    return dict(pairs)


def _parse_json(text: str) -> ParsedNotification:
    try:
        data = json.loads(text, parse_float=Decimal, object_pairs_hook=_reject_duplicate_keys)
    except ValueError as exc:
        if isinstance(exc, MalformedBody):
            raise
        raise MalformedBody("not valid JSON") from None
    except RecursionError:
        # A body nested thousands deep exhausts the parser's recursion: malformed, not a crash.
        raise MalformedBody("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise MalformedBody("JSON body is not an object")
    try:
        raw = signing.raw_top_level_values(text)
    except (ValueError, IndexError, RecursionError):
        raise MalformedBody("JSON body is not a flat object") from None
    fields: dict[str, str | None] = {}
    for key, value in data.items():
        if key == SIGN_FIELD:
            continue
        fields[key] = value if isinstance(value, str) or value is None else raw[key]
    signature = data.get(SIGN_FIELD)
    return ParsedNotification(fields=fields, signature=signature if isinstance(signature, str) else "")


def _parse_form(text: str, charset: str) -> ParsedNotification:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody("not a form-encoded body") from None
    data = _reject_duplicate_keys(pairs)
    # Base64 never contains a space: a space in the signature is a "+" that was not percent-encoded.
    signature = data.pop(SIGN_FIELD, "").replace(" ", "+")
    return ParsedNotification(fields=data, signature=signature)


def notification_parse(body: bytes, content_type: str) -> ParsedNotification:
    """Parse a JSON or form-encoded body; the media type decides, a body without one is sniffed."""
    charset = _charset(content_type)
    try:
        text = body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        raise MalformedBody(f"body is not valid {charset}") from None
    media_type = _media_type(content_type)
    if media_type in JSON_CONTENT_TYPES or media_type.endswith("+json"):
        return _parse_json(text)
    if media_type == FORM_CONTENT_TYPE:
        return _parse_form(text, charset)
    if text.lstrip().startswith("{"):
        return _parse_json(text)
    return _parse_form(text, charset)


def notification_fingerprint(fields: Mapping[str, str | None]) -> str:
    """sha256 of the canonical sign string: equal for every copy of the same message, whatever its encoding."""
    return hashlib.sha256(signing.sign_string(fields).encode("utf-8")).hexdigest()


def gateway_keys_load(texts: Mapping[str, str]) -> GatewayKeys:
    """
    Load each configured key (label -> base64 DER or PEM text) on its own; an empty text is no key.
    Parsed once per distinct set of texts in a process (every delivery needs them; a rotation is new text).
    """
    return _gateway_keys_load(tuple(texts.items()))


@lru_cache(maxsize=32)
def _gateway_keys_load(texts: tuple[tuple[str, str], ...]) -> GatewayKeys:
    usable: dict[str, rsa.RSAPublicKey] = {}
    unreadable: dict[str, str] = {}
    for label, text in texts:
        if not text:
            continue
        try:
            usable[label] = signing.load_public_key(text)
        except GatewayConfigurationError as exc:
            unreadable[label] = exc.message
    return GatewayKeys(usable=usable, unreadable=unreadable)


def notification_verify(parsed: ParsedNotification, *, keys: GatewayKeys, merchant_no: str, app_id: str) -> Verdict:
    """Check the signature with each usable key in turn (current, then next), then that it names this account."""
    if not parsed.signature:
        return Verdict(Verification.UNSIGNED, "no sign field")
    if not keys.usable:
        problems = "; ".join(f"{label} key: {problem}" for label, problem in keys.unreadable.items())
        return Verdict(Verification.KEY_UNAVAILABLE, problems or "the account has no gateway public key")
    verified_with = next(
        (label for label, key in keys.usable.items() if signing.verify(parsed.fields, parsed.signature, key)), ""
    )
    if not verified_with:
        detail = "the signature verifies with no gateway key of the account"
        if keys.unreadable:
            detail += f" (not tried, unreadable: the {' and '.join(keys.unreadable)} key)"
        return Verdict(Verification.INVALID_SIGNATURE, detail)
    for name, expected in (("merchant_no", merchant_no), ("app_id", app_id)):
        sent = parsed.text(name)
        if sent and expected and sent != expected:
            return Verdict(Verification.ACCOUNT_MISMATCH, f"{name} {sent} is not this account's", verified_with)
    return Verdict(Verification.VALID, f"verified with the {verified_with} gateway key", verified_with)


def allowed_networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The configured networks; an unreadable entry is logged and left out (the list still fails closed)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            logger.error("CODEPAY_NOTIFICATION_ALLOWED_NETWORKS entry is not a network", extra={"entry": entry})
    return networks


def source_allowed(address: str | None, entries: Iterable[str]) -> bool:
    """True when no allow-list is configured, or REMOTE_ADDR is inside one of its networks."""
    entries = [entry for entry in entries if entry.strip()]
    if not entries:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in allowed_networks(entries))
