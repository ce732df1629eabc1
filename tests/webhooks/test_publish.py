"""The apply task reaches the broker from a web process, where nothing but the WSGI application is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# What gunicorn does: load the WSGI application (Django set up, no Celery task discovery), then receive.
PUBLISH_AS_A_WEB_PROCESS = """
import base64, json, sys, time

import redis

from codepay_service.wsgi import application  # noqa: F401
from django.conf import settings
from webhooks.services.publish import APPLY_MANY_TASK, apply_task_publish

loaded_before = "webhooks.tasks" in sys.modules
handed = apply_task_publish(int(sys.argv[1]))
broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
deadline = time.monotonic() + 10
found = None
while found is None and time.monotonic() < deadline:
    for raw in broker.lrange("celery", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == APPLY_MANY_TASK:
            found = {"task": message["headers"]["task"], "args": json.loads(base64.b64decode(message["body"]))[0]}
    time.sleep(0.05)
print(json.dumps({"loaded_before": loaded_before, "handed": handed, "found": found}))
"""


def test_a_web_process_publishes_the_apply_task_to_the_broker():
    """Before, the web process looked the task up in a registry only the worker fills: every delivery waited
    for the sweep, and every intake logged a traceback."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "codepay_service.settings"}
    result = subprocess.run(
        [sys.executable, "-c", PUBLISH_AS_A_WEB_PROCESS, "424242"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {
        "loaded_before": False,
        "handed": True,
        "found": {"task": "webhooks.tasks.apply_notifications", "args": [[424242]]},
    }


def test_deliveries_received_together_go_out_sixteen_to_a_message_by_countdown():
    """40 new deliveries and 3 retries due in 5 s: three messages of 16, 16 and 8, and one of the retries."""
    from webhooks.services.publish import TASK_DELIVERIES, _chunks

    batch = [(delivery_id, 0.0) for delivery_id in range(1, 41)] + [(101, 5.0), (102, 5.0), (103, 5.0)]

    chunks = _chunks(batch)

    assert TASK_DELIVERIES == 16
    assert [[delivery_id for delivery_id, _ in chunk] for chunk in chunks] == [
        list(range(1, 17)),
        list(range(17, 33)),
        list(range(33, 41)),
        [101, 102, 103],
    ]
    assert [{countdown for _, countdown in chunk} for chunk in chunks] == [{0.0}, {0.0}, {0.0}, {5.0}]
