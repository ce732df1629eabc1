"""System checks for the notification receiver's settings (run by ``manage.py check`` and at startup)."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.checks import Error, register


@register()
def allowed_networks_check(app_configs, **kwargs) -> list[Error]:
    """Every CODEPAY_NOTIFICATION_ALLOWED_NETWORKS entry must be an address or a CIDR network."""
    errors = []
    for entry in getattr(settings, "CODEPAY_NOTIFICATION_ALLOWED_NETWORKS", []) or []:
        try:
            ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            errors.append(
                Error(
                    f"CODEPAY_NOTIFICATION_ALLOWED_NETWORKS entry {entry!r} is not an IP address or CIDR network.",
                    hint=(
                        "CodePay posts from 3.135.111.52 and 18.217.220.157, e.g. '3.135.111.52/32,18.217.220.157/32'."
                    ),
                    id="webhooks.E001",
                )
            )
    return errors
