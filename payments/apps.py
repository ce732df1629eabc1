from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_default_account(sender, **kwargs):
    """After each migrate (every release), the default account's row shows what the CODEPAY_* settings say."""
    from django.conf import settings

    from payments.services.accounts import merchant_account_sync_default

    if settings.CODEPAY_APP_ID and settings.CODEPAY_MERCHANT_NO:
        merchant_account_sync_default()


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self):
        post_migrate.connect(_sync_default_account, sender=self)
        # Outbound events live in their own package: every worker must know their tasks, the admin their pages.
        from payments.events import admin, tasks  # noqa: F401
