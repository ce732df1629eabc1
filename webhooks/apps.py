from django.apps import AppConfig
from django.db.models.signals import post_migrate

from codepay_service.schedules import PeriodicTaskSpec, periodic_tasks_install_after_migrate


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "CodePay notifications"
    # This app's part of the beat schedule (codepay_service.schedules installs it after each migrate).
    periodic_tasks = (
        PeriodicTaskSpec(
            "codepay: apply due notifications",
            "webhooks.tasks.apply_due_notifications",
            30,
            30,
            "Apply stored gateway notifications that are due (retries of earlier failures included).",
        ),
    )

    def ready(self) -> None:
        post_migrate.connect(periodic_tasks_install_after_migrate, sender=self)
        from payments.order_page import order_timeline_provider_register

        from . import checks  # noqa: F401  (registers the settings checks)
        from .selectors import order_notification_entries

        # payments never imports webhooks: the order page learns about deliveries from this registration.
        order_timeline_provider_register(order_notification_entries)
