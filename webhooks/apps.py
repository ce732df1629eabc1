from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "CodePay notifications"

    def ready(self) -> None:
        from payments.order_page import order_timeline_provider_register

        from . import checks  # noqa: F401  (registers the settings checks)
        from .selectors import order_notification_entries

        # payments never imports webhooks: the order page learns about deliveries from this registration.
        order_timeline_provider_register(order_notification_entries)
