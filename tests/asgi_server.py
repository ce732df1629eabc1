"""The service under uvicorn (the ``waits`` process of the Procfile), in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from django.conf import settings


@contextmanager
def asgi_server() -> Iterator[str]:
    """Serve ``codepay_service.asgi`` on a free local port; yields its base URL."""
    # As in the waits process (codepay_service/asgi.py): no persistent connections under ASGI.
    database = settings.DATABASES["default"]
    conn_max_age, database["CONN_MAX_AGE"] = database["CONN_MAX_AGE"], 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        "codepay_service.asgi:application", lifespan="off", log_level="warning", backlog=2048, timeout_keep_alive=75
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        database["CONN_MAX_AGE"] = conn_max_age
