"""
Liveness (the process answers) and readiness (the database answers and is fully migrated, the broker
answers). No API key: load balancers and orchestrators call them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from codepay_service.celery import app as celery_app

HEALTH_SCHEMA = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(["ok", "unavailable"]),
        "checks": serializers.DictField(child=serializers.CharField(), required=False),
    },
)


class _HealthApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


class LivenessApi(_HealthApi):
    @extend_schema(
        operation_id="health_liveness",
        summary="Liveness",
        description="The process answers. Restart it when this fails.",
        responses={200: HEALTH_SCHEMA},
    )
    def get(self, request):
        return Response({"status": "ok"})


class ReadinessApi(_HealthApi):
    @extend_schema(
        operation_id="health_readiness",
        summary="Readiness",
        description="The database (fully migrated) and the broker answer; send traffic only while this is 200.",
        responses={200: HEALTH_SCHEMA, 503: HEALTH_SCHEMA},
    )
    def get(self, request):
        checks = {"database": _database_check(), "broker": _broker_check()}
        ready = all(value == "ok" for value in checks.values())
        return Response({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


_migrated = False


def _database_check() -> str:
    """The database answers; and until it is seen fully migrated once, no migration is pending."""
    global _migrated
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        if _migrated:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return "ok"
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # any failure means "not ready"; the type is reported, not raised
        return f"unavailable: {type(exc).__name__}"
    if pending:
        return f"unavailable: {len(pending)} migrations not applied"
    # New migrations only arrive with new code, that is a new process: checking once is enough.
    _migrated = True
    return "ok"


def _broker_check() -> str:
    try:
        with celery_app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"
