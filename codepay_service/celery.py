import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codepay_service.settings")

app = Celery("codepay_service")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_unusable_database_connections(**kwargs) -> None:
    """Drop a database connection that failed (or outlived DATABASE_CONN_MAX_AGE) around every task.

    Django does this around every web request. Celery's Django fixup, with ``CELERY_DB_REUSE_MAX`` set,
    keeps connections for that many tasks without looking at them, so a connection the server dropped
    (a database restart or failover, ``pg_terminate_backend``) would fail every task of that worker
    process until then. A healthy connection is kept, so reuse still saves the connects.
    """
    from django.db import close_old_connections

    close_old_connections()
