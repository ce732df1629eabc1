import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codepay_service.settings")

app = Celery("codepay_service")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
