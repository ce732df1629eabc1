"""
The service's event metrics: request and gateway call latencies, conflicts, failed batch closes.

They are observed where the event happens, in whichever process that is: a gunicorn worker, a Celery
worker, a management command. prometheus-client's multiprocess mode adds them up across processes: each
process writes its values to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums the
directory. Deriving them from stored rows at scrape time instead would mean scanning every gateway call
ever recorded on each scrape (a histogram is cumulative), and a failed batch close that later succeeds
would make a counter go backwards. Without the variable (``make run``, tests) each process counts for itself.

Values that describe the state of the database (orders by status, the ``unknown`` queue, the reconcile
backlog, notification lag) are not here: they are read from the database at scrape time
(``payments.metrics``, ``webhooks.metrics``), so every process sees the same truth.
"""

from __future__ import annotations

import os
import socket

from prometheus_client import Counter, Histogram, values

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Files are named after the process. Containers sharing one directory (web and worker) each number their
    # processes from 1, so the host name is part of the name: two "pid 7" never write the same file.
    _HOST = socket.gethostname()
    values.ValueClass = values.MultiProcessValue(lambda: f"{_HOST}_{os.getpid()}")

HTTP_REQUEST_SECONDS = Histogram(
    "codepay_http_request_seconds",
    "Time to answer an HTTP request, by route pattern, method and status code.",
    ["route", "method", "status"],
)
GATEWAY_CALL_SECONDS = Histogram(
    "codepay_gateway_call_seconds",
    "Time of one call to CodePay, by gateway method and outcome (as recorded in the gateway call log).",
    ["method", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0),
)
CONFLICTS = Counter(
    "codepay_conflicts",
    "Gateway answers that disagree with our order or refund (amount, currency, over-refund), by source.",
    ["source"],
)
BATCH_CLOSE_FAILURES = Counter(
    "codepay_batch_close_failures",
    "Batch close attempts that did not succeed, by resulting status (failed, unknown).",
    ["status"],
)
