"""
The notification receiver's URLs: ``/webhooks/codepay/`` for the default account and
``/webhooks/codepay/<account_code>/`` for further accounts (the notify_url each account's orders carry).

The trailing slash is optional: a notify_url configured without it must not be answered with a redirect,
which the gateway would not follow with its POST (so every notification would be lost).
"""

from django.urls import path

from . import views

app_name = "webhooks"

urlpatterns = [
    path("codepay/", views.codepay_notification, name="codepay"),
    path("codepay/<slug:account_code>/", views.codepay_notification, name="codepay-account"),
    path("codepay", views.codepay_notification),
    path("codepay/<slug:account_code>", views.codepay_notification),
]
