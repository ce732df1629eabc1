"""
The ASGI entry point: the ``waits`` process (uvicorn) that serves ``GET /api/v1/orders/{no}/?wait=``
(payments.services.waits). Django's ASGI handler runs each request's sync work on a thread of its own,
so persistent connections would pile up per request: they are off here, as Django advises for ASGI.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codepay_service.settings")
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
application = get_asgi_application()
