"""
The intake baseline: a bare Django application whose one view inserts the raw body and answers ``success``.

Served by ``bench_stack.py`` with the Procfile's gunicorn settings (``tests.benchmarks.bare_app:application``),
against the same database, so the ratio against the service's receiver measures only what the service
adds: verification, parsing, the account, the delivery row, the hand-off to the worker. Settings, URLs and
the WSGI entry point live in this one module (``DJANGO_SETTINGS_MODULE=tests.benchmarks.bare_app``).
"""

from __future__ import annotations

import os

import environ
from django.db import connection
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

TABLE = "bench_bare_delivery"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, received_at timestamptz NOT NULL, "
    "body bytea NOT NULL)"
)

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = __name__
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
USE_TZ = True
# The same connection settings as the service (codepay_service/settings.py).
DATABASES = {"default": environ.Env().db_url("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DATABASE_CONN_MAX_AGE", "60"))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True


@csrf_exempt
def receive(request):
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (received_at, body) VALUES (now(), %s)", [request.body])
    return HttpResponse("success", content_type="text/plain; charset=utf-8")


urlpatterns = [path("notify/", receive)]


def _application():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", __name__)
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def application(environ_, start_response):
    global _app
    try:
        app = _app
    except NameError:
        app = _app = _application()
    return app(environ_, start_response)
