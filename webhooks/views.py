"""
The notification receiver's HTTP endpoint: read the body within bounds, hand it to the service, answer.

CodePay's callbacks come from 3.135.111.52 and 18.217.220.157 (docs/protocol.md, "Notifications");
``CODEPAY_NOTIFICATION_ALLOWED_NETWORKS`` can restrict the endpoint to them (empty: any source). The
address checked is REMOTE_ADDR: behind a reverse proxy, the proxy must set it to the real client address;
``X-Forwarded-For`` is not trusted here, because any client can send one.

No API key, no session, no CSRF token: the gateway authenticates by its RSA2 signature, which the
service checks. The body is read straight from the request stream and never more than
``CODEPAY_NOTIFICATION_MAX_BYTES`` + 1 bytes of it, so an oversized body costs a bounded read.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.models import MerchantAccount

from . import conf
from .services import notification_receive

# The largest size the delivery row can hold; an absurd Content-Length is recorded as this.
MAX_RECORDED_SIZE = 2**31 - 1


@csrf_exempt
@require_POST
def codepay_notification(request: HttpRequest, account_code: str = MerchantAccount.DEFAULT_CODE) -> HttpResponse:
    limit = conf.max_body_bytes()
    try:
        declared = max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        declared = 0
    body = request.read(limit + 1)
    truncated = declared > limit or len(body) > limit
    result = notification_receive(
        account_code=account_code,
        body=body[:limit],
        body_size=min(max(declared, len(body)), MAX_RECORDED_SIZE),
        body_truncated=truncated,
        content_type=request.META.get("CONTENT_TYPE", ""),
        headers=dict(request.headers),
        source_address=request.META.get("REMOTE_ADDR"),
    )
    return HttpResponse(result.body, status=result.http_status, content_type="text/plain; charset=utf-8")
