from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "CodePay notifications"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the settings checks)
