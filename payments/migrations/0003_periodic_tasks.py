"""
The beat schedule in the database (django-celery-beat): reconciliation, batch close schedules and their
retries, idempotency record cleanup and the notification sweep. Idempotent; ``manage.py setup_schedules``
installs the same table (``payments.tasks.PERIODIC_TASKS``) and can be run again at any time.
"""

from django.db import migrations


def install(apps, schema_editor):
    from payments.tasks import periodic_tasks_install

    periodic_tasks_install(
        interval_model=apps.get_model("django_celery_beat", "IntervalSchedule"),
        periodic_task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
        periodic_tasks_model=apps.get_model("django_celery_beat", "PeriodicTasks"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0002_batch_close_schedule_rules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
