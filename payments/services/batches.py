"""Batch closes: on demand (API, command, admin) and by schedule, each recorded with the gateway's answer."""

from __future__ import annotations

from datetime import date

from django.db import transaction

from codepay_service.errors import GatewayRefused, GatewayUnavailable, Misconfigured
from payments.gateway.errors import GatewayConfigurationError, GatewayDeclined, GatewayOutcomeUnknown, GatewayRequestNotSent
from payments.gateway.results import BatchSummary
from payments.models import ApiKey, BatchClose, BatchCloseSchedule, BatchCloseStatus, MerchantAccount
from payments.services.accounts import gateway_client_for


def batch_open_summary(*, account: MerchantAccount, store_no: str = "", terminal_sn_list: list[str] | None = None) -> BatchSummary:
    try:
        return gateway_client_for(account).get_open_batch(store_no=store_no, terminal_sn_list=terminal_sn_list)
    except GatewayDeclined as exc:
        raise GatewayRefused(f"CodePay refused: [{exc.code}] {exc.message}", details={"gateway_code": exc.code, "gateway_message": exc.message}) from None
    except (GatewayOutcomeUnknown, GatewayRequestNotSent) as exc:
        raise GatewayUnavailable(f"CodePay did not answer ({exc.message}).") from None
    except GatewayConfigurationError as exc:
        raise Misconfigured(exc.message) from None


def batch_close(
    *,
    account: MerchantAccount,
    trigger: str,
    store_no: str = "",
    terminal_sn_list: list[str] | None = None,
    api_key: ApiKey | None = None,
    schedule: BatchCloseSchedule | None = None,
    business_date: date | None = None,
) -> BatchClose:
    """Record a batch close and perform it; the record keeps the gateway's answer whatever it was."""
    batch = BatchClose.objects.create(
        account=account,
        trigger=trigger,
        store_no=store_no,
        terminal_sn_list=terminal_sn_list or [],
        api_key=api_key,
        schedule=schedule,
        business_date=business_date,
    )
    return batch_close_attempt(batch=batch)


def batch_close_attempt(*, batch: BatchClose) -> BatchClose:
    """Send (or resend) a recorded batch close. Closing an already closed batch is harmless at the gateway."""
    with transaction.atomic():
        batch = BatchClose.objects.select_for_update().get(pk=batch.pk)
        if batch.status == BatchCloseStatus.SUCCEEDED:
            return batch
        batch.attempts += 1
        batch.save(update_fields=["attempts", "updated_at"])
    try:
        summary = gateway_client_for(batch.account).close_batch_for_terminals(
            store_no=batch.store_no, terminal_sn_list=batch.terminal_sn_list or None
        )
    except GatewayDeclined as exc:
        batch.status, batch.gateway_code, batch.gateway_message = BatchCloseStatus.FAILED, exc.code, exc.message[:255]
    except (GatewayOutcomeUnknown, GatewayRequestNotSent, GatewayConfigurationError) as exc:
        batch.status, batch.gateway_message = (
            BatchCloseStatus.UNKNOWN if isinstance(exc, GatewayOutcomeUnknown) else BatchCloseStatus.FAILED,
            exc.message[:255],
        )
    else:
        batch.status, batch.gateway_code, batch.gateway_message = BatchCloseStatus.SUCCEEDED, "0", "success"
        batch.count, batch.total_amount, batch.response = summary.count, summary.total_amount, summary.data
    batch.save()
    return batch
