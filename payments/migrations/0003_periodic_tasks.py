"""
Kept in the graph as history; it installs nothing any more.

It used to install the beat schedule by importing the live installer, so what this old migration did
changed (and could break) whenever that code moved on. The schedule is now declared by each app
(``periodic_tasks`` on its AppConfig) and installed after every ``migrate`` by a ``post_migrate`` receiver
(``codepay_service.schedules``) and by ``manage.py setup_schedules``, idempotently; a database migrated
before this change keeps its rows, which that install updates in place.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0002_batch_close_schedule_rules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
