"""
``Authorization: Api-Key <key>`` for store systems.

Keys are djangorestframework-api-key keys (only a hash is stored). An authenticated request carries the
key as ``request.auth``; its account and optional store scope every query the API makes.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from payments.models import ApiKey

KEYWORD = "Api-Key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD or not key.strip():
            raise exceptions.AuthenticationFailed(f"Send the header 'Authorization: {KEYWORD} <key>'.")
        # Imported here: codepay_service.errors loads DRF's settings, which load this module.
        from payments.services.accounts import api_key_verify

        try:
            # Cached per process for a few seconds (payments/services/accounts.py says how revocation stays prompt).
            api_key = api_key_verify(key=key.strip())
        except ApiKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.") from None
        if api_key.has_expired:
            # get_from_key finds revoked keys out, not expired ones: an expired key is refused like a revoked one.
            raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.")
        if not api_key.account.is_active:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return (ApiKeyUser(api_key), api_key)

    def authenticate_header(self, request):
        return KEYWORD


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "payments.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`{KEYWORD} <key>`; create a key with `python manage.py create_api_key`.",
        }


class ApiKeyUser:
    """The caller behind an API key; enough of a user for DRF's permission and throttle machinery."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.pk = self.id = f"api-key:{api_key.pk}"

    def __str__(self) -> str:
        return self.api_key.name
