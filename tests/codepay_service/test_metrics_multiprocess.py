"""Event metrics add up across processes (gunicorn workers, Celery workers) in multiprocess mode."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

OBSERVE = """
from codepay_service.instruments import GATEWAY_CALL_SECONDS
GATEWAY_CALL_SECONDS.labels(method="order.query", outcome="ok").observe(0.2)
"""
READ = """
import json, os
from prometheus_client.multiprocess import MultiProcessCollector
samples = {
    sample.name: sample.value
    for family in MultiProcessCollector(None, path=os.environ["PROMETHEUS_MULTIPROC_DIR"]).collect()
    for sample in family.samples
    if sample.labels.get("method") == "order.query" and sample.labels.get("le") in (None, "0.25")
}
print(json.dumps(samples))
"""


def run(code: str, directory: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout


def test_gateway_calls_observed_in_two_processes_are_summed_by_a_third(tmp_path):
    """Two processes each observe one 0.2 s call; a scrape from a third sees two calls, 0.4 s, both <= 0.25 s."""
    run(OBSERVE, tmp_path)
    run(OBSERVE, tmp_path)

    samples = json.loads(run(READ, tmp_path))

    assert samples["codepay_gateway_call_seconds_count"] == 2
    assert round(samples["codepay_gateway_call_seconds_sum"], 6) == 0.4
    assert samples["codepay_gateway_call_seconds_bucket"] == 2
    # One file per process, named after host and pid, so containers sharing the directory never collide.
    files = sorted(path.name for path in tmp_path.iterdir())
    assert len(files) == 2
    assert all(name.startswith(f"histogram_{socket.gethostname()}_") for name in files)
