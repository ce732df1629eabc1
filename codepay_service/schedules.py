"""
The beat schedule in the database (django-celery-beat), declared by each app and installed here.

Each app's config lists its own periodic tasks in ``periodic_tasks`` (a tuple of ``PeriodicTaskSpec``), so
an app schedules only tasks it owns and no app names another's. ``periodic_tasks_install`` writes them,
idempotently; it runs after every ``migrate`` (``post_migrate``, which each app connects for itself) and on
``manage.py setup_schedules``. Migrations never import this code: a migration is frozen history, and live
code it imported would change what an old migration does (or break it) as the code moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import AppConfig, apps
from django.utils import timezone


@dataclass(frozen=True)
class PeriodicTaskSpec:
    name: str
    task: str
    every_seconds: int
    # A run still queued after this long is dropped: the next one is on its way.
    expire_seconds: int
    description: str


def periodic_tasks_declared(*, app_configs: list[AppConfig] | None = None) -> list[PeriodicTaskSpec]:
    """The periodic tasks the given apps (every installed app by default) declare, in INSTALLED_APPS order."""
    configs = apps.get_app_configs() if app_configs is None else app_configs
    return [spec for config in configs for spec in getattr(config, "periodic_tasks", ())]


def periodic_tasks_install(
    *, specs: list[PeriodicTaskSpec], interval_model: Any, periodic_task_model: Any, periodic_tasks_model: Any
) -> list[tuple[str, bool]]:
    """
    Create or update the given periodic tasks; answers (name, created) pairs. Takes the model classes so
    ``post_migrate`` can pass the models of the migrated state. An operator's ``enabled`` choice on an
    existing task is kept.
    """
    results = []
    for spec in specs:
        interval = interval_model.objects.filter(every=spec.every_seconds, period="seconds").order_by(
            "pk"
        ).first() or interval_model.objects.create(every=spec.every_seconds, period="seconds")
        _, created = periodic_task_model.objects.update_or_create(
            name=spec.name,
            defaults={
                "task": spec.task,
                "interval": interval,
                "crontab": None,
                "solar": None,
                "clocked": None,
                "one_off": False,
                "expire_seconds": spec.expire_seconds,
                "expires": None,
                "description": spec.description,
            },
            create_defaults={
                "task": spec.task,
                "interval": interval,
                "expire_seconds": spec.expire_seconds,
                "description": spec.description,
                "enabled": True,
            },
        )
        results.append((spec.name, created))
    # django-celery-beat's scheduler reloads its schedule when this timestamp moves.
    periodic_tasks_model.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
    return results


def periodic_tasks_install_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    """
    ``post_migrate`` receiver an app connects with itself as sender: installs that app's periodic tasks
    with the models of the migrated state (``migrate`` passes them as ``apps``; the live registry
    otherwise). Skipped when django-celery-beat's tables are not in that state (a migrate back to before them).
    """
    specs = list(getattr(sender, "periodic_tasks", ()))
    if not specs:
        return
    registry = kwargs.get("apps") or apps
    try:
        models = {
            "interval_model": registry.get_model("django_celery_beat", "IntervalSchedule"),
            "periodic_task_model": registry.get_model("django_celery_beat", "PeriodicTask"),
            "periodic_tasks_model": registry.get_model("django_celery_beat", "PeriodicTasks"),
        }
    except LookupError:
        return
    periodic_tasks_install(specs=specs, **models)
