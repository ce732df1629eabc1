"""
What an operator sees of each request: one log line, its latency in ``/metrics``, and an id to find both.

The id comes from the caller's ``X-Request-ID`` when it is a plausible id (a load balancer or the store
system set it, so their logs and ours join up), otherwise it is generated; either way it is answered in the
response's ``X-Request-ID`` and is on every log line written while the request runs. Request and response
bodies are never logged: they may carry card data.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import time
import uuid

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from codepay_service.instruments import HTTP_REQUEST_SECONDS
from codepay_service.log_format import log_context, log_context_bind

logger = logging.getLogger("codepay_service.request")

REQUEST_ID_HEADER = "X-Request-ID"
# Letters, digits and . _ : - up to 128 characters: UUIDs, trace ids, load balancer ids. Anything else
# (spaces, quotes, newlines that could forge a log line) is replaced by a fresh id.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes and scrapes arrive every few seconds; their lines are kept at DEBUG.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_for(header_value: str | None) -> str:
    if header_value and REQUEST_ID_RE.match(header_value):
        return header_value
    return uuid.uuid4().hex


class RequestObservabilityMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        token = log_context.set({"request_id": request_id})
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            duration = time.perf_counter() - started
            response[REQUEST_ID_HEADER] = request_id
            self._record(request, response, duration)
            return response
        finally:
            log_context.reset(token)

    def process_view(self, request, view_func, view_args, view_kwargs):
        log_context_bind(merchant_order_no=view_kwargs.get("merchant_order_no", ""))

    @staticmethod
    def _record(request, response, duration: float) -> None:
        match = request.resolver_match
        # The route pattern, never the raw path: one series per endpoint, not per order number.
        route = "/" + match.route if match is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUEST_SECONDS.labels(route=route, method=method, status=str(response.status_code)).observe(duration)

        api_key = getattr(request, "auth", None)
        account = getattr(getattr(api_key, "account", None), "code", "")
        data = getattr(response, "data", None)
        merchant_order_no = data.get("merchant_order_no", "") if isinstance(data, dict) else ""
        log_context_bind(
            account=account,
            store_no=getattr(api_key, "store_no", "") or "",
            merchant_order_no=log_context.get().get("merchant_order_no") or merchant_order_no,
        )
        logger.log(
            logging.DEBUG if request.path in QUIET_PATHS else logging.INFO,
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(duration * 1000, 1),
            },
        )


# --- /metrics --------------------------------------------------------------------------------------


def _scrape_allowed(request) -> bool:
    """Each configured guard must pass; with none configured, only a DEBUG (development) server answers."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return settings.DEBUG
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return False
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        if not any(address in ipaddress.ip_network(network, strict=False) for network in networks):
            return False
    return True


class _Scrape:
    """The sources of one scrape, read in order; ``generate_latest`` only needs ``collect()``."""

    def __init__(self, *sources):
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


def metrics_view(request):
    if not _scrape_allowed(request):
        return HttpResponseForbidden(
            "Send 'Authorization: Bearer <METRICS_TOKEN>' from a network in METRICS_ALLOWED_NETWORKS.\n",
            content_type="text/plain",
        )
    # Imported here: the collectors read the payments and webhooks models, which wiring must not load early.
    from payments.metrics import PaymentsCollector
    from webhooks.metrics import NotificationLagCollector

    multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    events = MultiProcessCollector(None, path=multiprocess_dir) if multiprocess_dir else REGISTRY
    body = generate_latest(_Scrape(events, PaymentsCollector(), NotificationLagCollector()))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
