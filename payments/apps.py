from django.apps import AppConfig
from django.db.models.signals import post_migrate


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

    def ready(self):
        post_migrate.connect(_sync_default_account, sender=self)
        # Any sender: webhooks' permissions are created on its own post_migrate, after this app's.
        post_migrate.connect(_ensure_operator_group)
        # Outbound events live in their own package: every worker must know their tasks, the admin their pages.
        from payments.events import admin, tasks  # noqa: F401
