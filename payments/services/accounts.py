"""
Merchant accounts and the gateway client each one speaks through.

The default account is described by the ``CODEPAY_*`` settings; further accounts live in the database
with their secrets in ``CODEPAY_ACCOUNT_SECRETS`` (both read from the environment by settings.py).
Keys are parsed once per account version and the client is cached, so a request does not re-read PEM.

Why accounts and API keys are cached per process: every API request resolves its key and every
notification its account, and a database round trip for each cost more than the rest of the intake.
Each process keeps what it read for at most ``CODEPAY_PROCESS_CACHE_SECONDS`` (5 s by default); a change
saved in this process clears its copy at once (signals), and other processes see it within that time.
So a revoked key or a deactivated account is refused everywhere within seconds. An API key is matched by
its prefix and confirmed by a constant-time comparison of the whole key's sha256 with the one the cache
stored after the full (slow) hash check, so a wrong key with a known prefix is still refused; an expiry
date is compared on every request, since it needs no query.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import cast

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from codepay_service.errors import Misconfigured, NotFound, ValidationFailed
from codepay_service.instruments import GATEWAY_CALL_SECONDS
from codepay_service.rows import row_insert
from payments.gateway import signing
from payments.gateway.client import CallRecord, CodePayClient
from payments.gateway.errors import GatewayConfigurationError
from payments.models import ApiKey, GatewayCall, MerchantAccount

_clients: dict[tuple[object, ...], CodePayClient] = {}
_clients_lock = threading.Lock()


class _ProcessCache:
    """A small per-process map whose entries expire after ``CODEPAY_PROCESS_CACHE_SECONDS``; thread-safe."""

    def __init__(self, max_entries: int = 1024):
        self._entries: dict = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= settings.CODEPAY_PROCESS_CACHE_SECONDS:
            return None
        return entry[1]

    def put(self, key, value) -> None:
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_accounts = _ProcessCache()
_api_keys = _ProcessCache()


def _setting_or_file(value: str, path: str, name: str) -> str:
    if value:
        return value
    if path:
        try:
            return _read_key_file(path, Path(path).stat().st_mtime_ns)
        except OSError as exc:
            raise Misconfigured(f"{name}_FILE points at {path}, which cannot be read ({exc.strerror}).") from None
    return ""


@lru_cache(maxsize=16)
def _read_key_file(path: str, modified_ns: int) -> str:
    """A key file's text, read again only when the file changes (every API call resolves the account's keys)."""
    return Path(path).read_text()


def merchant_account_sync_default() -> MerchantAccount:
    """Create or update the default account from the CODEPAY_* settings."""
    missing = [name for name in ("CODEPAY_APP_ID", "CODEPAY_MERCHANT_NO") if not getattr(settings, name)]
    if missing:
        raise Misconfigured(f"Set {' and '.join(missing)} to describe the default CodePay merchant account.")
    configured = merchant_account_effective(MerchantAccount(code=MerchantAccount.DEFAULT_CODE))
    fields = ("app_id", "merchant_no", "default_store_no", "sign_type", "gateway_public_key", "next_gateway_public_key")
    with transaction.atomic():
        account, _ = MerchantAccount.objects.select_for_update().update_or_create(
            code=MerchantAccount.DEFAULT_CODE,
            defaults={"name": "Default", **{name: getattr(configured, name) for name in fields}},
        )
    return account


def merchant_account_get(*, code: str) -> MerchantAccount:
    """The active account with this code, from this process's cache when read within the last seconds."""
    account = _accounts.get(code)
    if account is not None:
        return account
    account = MerchantAccount.objects.filter(code=code, is_active=True).first()
    if account is None and code == MerchantAccount.DEFAULT_CODE and settings.CODEPAY_APP_ID:
        account = merchant_account_sync_default()
    if account is None:
        raise NotFound(f"No active merchant account '{code}'.")
    _accounts.put(code, account)
    return account


def api_key_verify(*, key: str) -> ApiKey:
    """
    The usable API key this plain key belongs to, with its account loaded; raises ApiKey.DoesNotExist.
    Checked against the database at most every few seconds per process (see the module docstring).
    """
    prefix = key.partition(".")[0]
    digest = hashlib.sha256(key.encode()).digest()
    cached = _api_keys.get(prefix)
    if cached is not None and hmac.compare_digest(cached[0], digest):
        return cached[1]
    api_key = ApiKey.objects.select_related("account").get(prefix=prefix, revoked=False)
    if not api_key.is_valid(key):
        raise ApiKey.DoesNotExist
    _api_keys.put(prefix, (digest, api_key))
    return api_key


def process_caches_clear(**kwargs) -> None:
    """Forget every account and API key this process has cached (connected to their save and delete)."""
    _accounts.clear()
    _api_keys.clear()


for _model in (MerchantAccount, ApiKey):
    post_save.connect(process_caches_clear, sender=_model, dispatch_uid=f"process-caches-{_model.__name__}-save")
    post_delete.connect(process_caches_clear, sender=_model, dispatch_uid=f"process-caches-{_model.__name__}-delete")


def _account_secrets(account: MerchantAccount) -> dict[str, str]:
    if account.code == MerchantAccount.DEFAULT_CODE:
        return {
            "private_key": _setting_or_file(
                settings.CODEPAY_PRIVATE_KEY, settings.CODEPAY_PRIVATE_KEY_FILE, "CODEPAY_PRIVATE_KEY"
            ),
            "basic_auth_user": settings.CODEPAY_BASIC_AUTH_USER,
            "basic_auth_password": settings.CODEPAY_BASIC_AUTH_PASSWORD,
        }
    secrets = settings.CODEPAY_ACCOUNT_SECRETS.get(account.code, {})
    return {
        "private_key": _setting_or_file(
            secrets.get("private_key", ""),
            secrets.get("private_key_file", ""),
            f"CODEPAY_ACCOUNT_SECRETS[{account.code}].private_key",
        ),
        "basic_auth_user": secrets.get("basic_auth_user", ""),
        "basic_auth_password": secrets.get("basic_auth_password", ""),
    }


def merchant_account_effective(account: MerchantAccount) -> MerchantAccount:
    """
    The account as it is configured now. The default account is whatever the CODEPAY_* settings say at
    this moment, so a key rotation or a new store number takes effect with the restart that brings the new
    environment, whether or not its database row was synced since.
    """
    if account.code != MerchantAccount.DEFAULT_CODE or not settings.CODEPAY_APP_ID:
        return account
    effective = copy.copy(account)
    effective.app_id = settings.CODEPAY_APP_ID
    effective.merchant_no = settings.CODEPAY_MERCHANT_NO or account.merchant_no
    effective.default_store_no = settings.CODEPAY_STORE_NO
    effective.sign_type = settings.CODEPAY_SIGN_TYPE
    effective.gateway_public_key = _setting_or_file(
        settings.CODEPAY_GATEWAY_PUBLIC_KEY, settings.CODEPAY_GATEWAY_PUBLIC_KEY_FILE, "CODEPAY_GATEWAY_PUBLIC_KEY"
    )
    effective.next_gateway_public_key = settings.CODEPAY_NEXT_GATEWAY_PUBLIC_KEY
    return effective


def _record_gateway_call(account_id: int, record: CallRecord) -> None:
    GATEWAY_CALL_SECONDS.labels(method=record.method, outcome=record.outcome).observe(record.duration_ms / 1000)
    row_insert(
        GatewayCall(
            account_id=account_id,
            method=record.method,
            merchant_order_no=record.merchant_order_no,
            outcome=record.outcome,
            http_status=record.http_status,
            gateway_code=record.gateway_code[:16],
            gateway_message=record.gateway_message[:255],
            psn=record.psn,
            duration_ms=record.duration_ms,
            request=record.request,
            response=record.response,
            created_at=record.started_at,
        )
    )


def gateway_client_for(account: MerchantAccount, *, throttle=None) -> CodePayClient:
    """The account's client; every call it makes is recorded as a GatewayCall. Raises Misconfigured."""
    account = merchant_account_effective(account)
    cache_key = (
        account.pk,
        account.updated_at.isoformat(),
        account.app_id,
        account.merchant_no,
        account.sign_type,
        account.gateway_public_key,
        settings.CODEPAY_BASE_URL,
    )
    with _clients_lock:
        client = _clients.get(cache_key)
    if client is None:
        # Built under the lock: loading a private key costs milliseconds of CPU, and a new process's
        # threads all ask at once.
        with _clients_lock:
            client = _clients.get(cache_key)
            if client is None:
                client = _clients[cache_key] = _build_client(account)
    if throttle is None:
        return client
    return client.with_throttle(throttle)


def _build_client(account: MerchantAccount) -> CodePayClient:
    secrets = _account_secrets(account)
    try:
        private_key = signing.load_private_key(secrets["private_key"]) if secrets["private_key"] else None
        public_key = account.gateway_public_key
        return CodePayClient(
            base_url=settings.CODEPAY_BASE_URL,
            app_id=account.app_id,
            merchant_no=account.merchant_no,
            sign_type=account.sign_type,
            private_key=private_key,
            gateway_public_key=signing.load_public_key(public_key) if public_key else None,
            basic_auth=(secrets["basic_auth_user"], secrets["basic_auth_password"]),
            notify_url=_notify_url(account),
            connect_timeout=settings.CODEPAY_CONNECT_TIMEOUT,
            read_timeout=settings.CODEPAY_READ_TIMEOUT,
            on_call=lambda record: _record_gateway_call(account.pk, record),
        )
    except GatewayConfigurationError as exc:
        raise Misconfigured(f"Merchant account '{account.code}': {exc.message}") from None


def _notify_url(account: MerchantAccount) -> str:
    base = settings.CODEPAY_NOTIFY_URL
    if not base or account.code == MerchantAccount.DEFAULT_CODE:
        return base
    # Further accounts get their own receiver path so their notifications verify with their own key.
    return f"{base.rstrip('/')}/{account.code}/"


def store_no_resolve(*, account: MerchantAccount, api_key: ApiKey | None, requested: str = "") -> str:
    """
    The store a request acts for: a store-bound key's own store (naming another is refused), else the
    requested one, else the account's default store.
    """
    if api_key is not None and api_key.store_no:
        if requested and requested != api_key.store_no:
            raise ValidationFailed(
                details={"store_no": [f"This API key is bound to store {api_key.store_no}; omit store_no or use it."]}
            )
        return api_key.store_no
    return requested or merchant_account_effective(account).default_store_no


def api_key_create(*, name: str, account: MerchantAccount, store_no: str = "") -> tuple[ApiKey, str]:
    """A new API key; the plain key is returned once and only its hash is stored."""
    # The manager is ApiKey's own, so the key is an ApiKey; the library types it as the abstract base.
    key, plain = ApiKey.objects.create_key(name=name, account=account, store_no=store_no)
    return cast(ApiKey, key), plain


def gateway_clients_reset() -> None:
    """Forget cached clients, accounts and keys (after the gateway settings change, e.g. in tests)."""
    with _clients_lock:
        _clients.clear()
    process_caches_clear()
