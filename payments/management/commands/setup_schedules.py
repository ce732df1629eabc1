"""``manage.py setup_schedules``: install the beat schedule every app declares in the database; safe to run again."""

from django.core.management.base import BaseCommand
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from codepay_service.schedules import periodic_tasks_declared, periodic_tasks_install


class Command(BaseCommand):
    help = "Create or update the periodic tasks (reconciliation, batch schedules, retries, cleanup, notifications)."

    def handle(self, *args, **options):
        for name, created in periodic_tasks_install(
            specs=periodic_tasks_declared(),
            interval_model=IntervalSchedule,
            periodic_task_model=PeriodicTask,
            periodic_tasks_model=PeriodicTasks,
        ):
            self.stdout.write(f"{'created' if created else 'updated'}: {name}")
