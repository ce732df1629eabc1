"""
Settings gunicorn reads from the working directory on its own; the Procfile, the image and
docker-compose pass the rest on the command line.

Why ``gc.freeze()`` once a worker has loaded the application: Django, DRF and their modules leave a few
hundred thousand long-lived objects, and every full garbage collection walks all of them again while the
worker's threads wait. Frozen, they are left out of collections (docs/benchmarks.md).
"""

import gc


def post_worker_init(worker):
    gc.freeze()
