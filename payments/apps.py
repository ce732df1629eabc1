from django.apps import AppConfig
from django.db.models.signals import post_migrate

from codepay_service.schedules import PeriodicTaskSpec, periodic_tasks_install_after_migrate


def _sync_default_account(sender, **kwargs):
    """After each migrate (every release), the default account's row shows what the CODEPAY_* settings say."""
    from django.conf import settings

    from payments.services.accounts import merchant_account_sync_default

    if settings.CODEPAY_APP_ID and settings.CODEPAY_MERCHANT_NO:
        merchant_account_sync_default()


def _ensure_operator_group(sender, **kwargs):
    """After the permissions of an operator app exist (post_migrate of that app), the group holds them."""
    from payments.services.operators import OPERATOR_APP_LABELS, operator_group_ensure

    if sender.label in OPERATOR_APP_LABELS:
        operator_group_ensure()


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    # This app's part of the beat schedule (codepay_service.schedules installs it after each migrate).
    periodic_tasks = (
        PeriodicTaskSpec(
            "codepay: reconcile due orders and refunds",
            "payments.tasks.reconcile_due",
            10,
            10,
            "Ask the gateway about every open order and refund whose next check is due.",
        ),
        PeriodicTaskSpec(
            "codepay: run due batch close schedules",
            "payments.tasks.run_due_batch_schedules",
            60,
            60,
            "Close each store's terminal batches once per business day at its local time.",
        ),
        PeriodicTaskSpec(
            "codepay: retry failed batch closes",
            "payments.tasks.retry_due_batch_closes",
            60,
            60,
            "Send again the batch closes that failed, with back-off and a bounded number of attempts.",
        ),
        PeriodicTaskSpec(
            "codepay: purge expired idempotency records",
            "payments.tasks.purge_expired_idempotency_records",
            3600,
            600,
            "Delete stored Idempotency-Key answers past their expiry.",
        ),
        PeriodicTaskSpec(
            "codepay: send due outbound events",
            "payments.events.tasks.send_due_event_deliveries",
            15,
            15,
            "Send store systems the events that are due: retries with back-off, and any whose queued send was lost.",
        ),
    )

    def ready(self):
        post_migrate.connect(periodic_tasks_install_after_migrate, sender=self)
        post_migrate.connect(_sync_default_account, sender=self)
        # Any sender: webhooks' permissions are created on its own post_migrate, after this app's.
        post_migrate.connect(_ensure_operator_group)
        # Outbound events live in their own package: every worker must know their tasks, the admin their pages.
        from payments.events import admin, tasks  # noqa: F401
