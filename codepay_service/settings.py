"""
Settings for the CodePay merchant payment service.

Every value that differs between machines comes from the environment, read here and nowhere else
(twelve-factor). Defaults are safe for production: DEBUG is off, there is no default secret key, and
the security middleware settings pass ``manage.py check --deploy``. ``make run`` and ``make test``
set the few variables a laptop needs.
"""

from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. Set it to a long random string, for example the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "payments",
    "webhooks",
]

MIDDLEWARE = [
    # First, so the request id is on every line and the latency covers the whole stack.
    "codepay_service.observability.RequestObservabilityMiddleware",
    # Next: every error answer on /api/ leaves in the API's error shape, whichever layer made it.
    "codepay_service.middleware.ApiErrorShapeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it answers a locked-out admin login.
    "axes.middleware.AxesMiddleware",
]

# The admin login: after AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair
# is locked out for AXES_COOLOFF_TIME hours, the right password included (django-axes).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_TIME_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Debug pages and error reports hide the variables of frames marked sensitive even with DEBUG on.
DEFAULT_EXCEPTION_REPORTER_FILTER = "codepay_service.errors.SensitiveDataFilter"

ROOT_URLCONF = "codepay_service.urls"
WSGI_APPLICATION = "codepay_service.wsgi.application"
ASGI_APPLICATION = "codepay_service.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/codepay")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default (make run) shares one SQLite file between the web, worker and sandbox
    # processes; WAL and a busy timeout keep concurrent writers waiting instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# Times in the admin to the second (codepay_service/formats/en/formats.py).
FORMAT_MODULE_PATH = ["codepay_service.formats"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security (check --deploy clean unless DEBUG) -------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe health over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Notification bodies are small; anything large is refused before it is read whole.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- REST API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["payments.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["payments.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "codepay_service.openapi.ServiceAutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_THROTTLE_CLASSES": ["payments.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_THROTTLE_RATE", default="600/minute")},
    "EXCEPTION_HANDLER": "codepay_service.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CodePay merchant payment service",
    "DESCRIPTION": "Orders, refunds, authorizations and batches on CodePay, for store systems.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from the installed drf-spectacular-sidecar, so /api/docs/ works with no network.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "codepay_service.openapi.describe_api"],
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "payments.models.OrderStatus",
        "RefundStatusEnum": "payments.models.RefundStatus",
        "OperationStatusEnum": "payments.models.OperationStatus",
    },
    # The outbound events store systems receive; an OpenAPI 3.1 "webhooks" section needs 3.1.
    "OAS_VERSION": "3.1.0",
    "WEBHOOKS": "payments.events.schema.WEBHOOKS",
}
API_KEY_CUSTOM_HEADER = "HTTP_AUTHORIZATION"
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=48)

# Shared by every process in production (CACHE_URL=redis://...), for the API throttle; per process otherwise.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# --- Celery ------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=env.str("REDIS_URL", default="redis://127.0.0.1:6379/0"))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
# Workers log through LOGGING below (JSON in production) instead of replacing the root handlers with Celery's.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Celery's Django fixup closes the database connection after every task unless told to reuse it.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# Every countdown and retry delay stays below the Redis visibility timeout (see codepay_service/tasks.py).
CELERY_MAX_TASK_DELAY_SECONDS = 3000
CELERY_BROKER_FILESYSTEM_FOLDER = env.str("CELERY_BROKER_FILESYSTEM_FOLDER", default="")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _folder = CELERY_BROKER_FILESYSTEM_FOLDER or str(BASE_DIR / ".dev" / "broker")
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": _folder,
        "data_folder_out": _folder,
        "processed_folder": _folder + "-processed",
        "control_folder": _folder + "-control",
        "store_processed": False,
    }

# --- CodePay gateway: the default merchant account ----------------------------------------------------
CODEPAY_BASE_URL = env.str("CODEPAY_BASE_URL", default="https://codepay-open.codepay.me")
CODEPAY_APP_ID = env.str("CODEPAY_APP_ID", default="")
CODEPAY_MERCHANT_NO = env.str("CODEPAY_MERCHANT_NO", default="")
CODEPAY_STORE_NO = env.str("CODEPAY_STORE_NO", default="")
CODEPAY_SIGN_TYPE = env.str("CODEPAY_SIGN_TYPE", default="RSA2")
CODEPAY_PRIVATE_KEY = env.str("CODEPAY_PRIVATE_KEY", multiline=True, default="")
CODEPAY_PRIVATE_KEY_FILE = env.str("CODEPAY_PRIVATE_KEY_FILE", default="")
CODEPAY_GATEWAY_PUBLIC_KEY = env.str("CODEPAY_GATEWAY_PUBLIC_KEY", multiline=True, default="")
CODEPAY_GATEWAY_PUBLIC_KEY_FILE = env.str("CODEPAY_GATEWAY_PUBLIC_KEY_FILE", default="")
CODEPAY_NEXT_GATEWAY_PUBLIC_KEY = env.str("CODEPAY_NEXT_GATEWAY_PUBLIC_KEY", multiline=True, default="")
# Accounts beyond the default keep their secrets in the environment too: a JSON object keyed by account
# code, e.g. {"west": {"private_key_file": "/run/secrets/west.pem", "basic_auth_password": "..."}}.
CODEPAY_ACCOUNT_SECRETS = env.json("CODEPAY_ACCOUNT_SECRETS", default={})
CODEPAY_BASIC_AUTH_USER = env.str("CODEPAY_BASIC_AUTH_USER", default="")
CODEPAY_BASIC_AUTH_PASSWORD = env.str("CODEPAY_BASIC_AUTH_PASSWORD", default="")
CODEPAY_NOTIFY_URL = env.str("CODEPAY_NOTIFY_URL", default="")
# Development only: the sandbox gateway's own signing key (make run generates it into .dev/).
CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE = env.str("CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE", default="")
# Development only: where the sandbox keeps its transactions across restarts (empty: in memory only).
CODEPAY_SANDBOX_STATE_DIR = env.str("CODEPAY_SANDBOX_STATE_DIR", default="")
CODEPAY_CONNECT_TIMEOUT = env.float("CODEPAY_CONNECT_TIMEOUT", default=5.0)
CODEPAY_READ_TIMEOUT = env.float("CODEPAY_READ_TIMEOUT", default=20.0)
# How long a process may use an account or API key it read without reading it again (a revocation elsewhere
# takes effect within this time; in the process that saved it, at once).
CODEPAY_PROCESS_CACHE_SECONDS = env.float("CODEPAY_PROCESS_CACHE_SECONDS", default=5.0)
CODEPAY_MAX_QPS = env.float("CODEPAY_MAX_QPS", default=20.0)
# Threads of one reconciliation pass: a check mostly waits for the gateway (payments.services.reconcile).
CODEPAY_RECONCILE_THREADS = env.int("CODEPAY_RECONCILE_THREADS", default=4)
# Notifications: confirm every final result (closed, paid, cancelled) by a signed query before applying it.
CODEPAY_CONFIRM_NOTIFICATIONS = env.bool("CODEPAY_CONFIRM_NOTIFICATIONS", default=True)
CODEPAY_NOTIFICATION_MAX_BYTES = env.int("CODEPAY_NOTIFICATION_MAX_BYTES", default=65536)
# Empty: accept from any address. CodePay's published sources are 3.135.111.52 and 18.217.220.157.
CODEPAY_NOTIFICATION_ALLOWED_NETWORKS = env.list("CODEPAY_NOTIFICATION_ALLOWED_NETWORKS", default=[])
# A notification may arrive before its order is committed: look again on this schedule, then park it
# as "unmatched" for an operator.
CODEPAY_NOTIFICATION_UNMATCHED_RETRY_DELAYS = env.list(
    "CODEPAY_NOTIFICATION_UNMATCHED_RETRY_DELAYS", cast=int, default=[5, 15, 30, 60, 120, 300, 600, 900]
)
# A failure while applying (gateway unreachable while confirming): back off about two hours, then park as
# "dead". The gateway re-posts for ~12 h and the reconciler queries open orders anyway.
CODEPAY_NOTIFICATION_RETRY_DELAYS = env.list(
    "CODEPAY_NOTIFICATION_RETRY_DELAYS", cast=int, default=[10, 30, 60, 120, 300, 600, 900, 1800, 1800, 1800]
)
# How long a stored delivery is left to its queued task before the sweep takes it over.
CODEPAY_NOTIFICATION_SWEEP_GRACE_SECONDS = env.int("CODEPAY_NOTIFICATION_SWEEP_GRACE_SECONDS", default=120)
# How long a sweep holds a delivery it claimed before another sweep may take it.
CODEPAY_NOTIFICATION_SWEEP_LEASE_SECONDS = env.int("CODEPAY_NOTIFICATION_SWEEP_LEASE_SECONDS", default=300)
# The longest the background publisher of apply tasks waits on the broker (connect, send) before giving the
# delivery to the sweep; the receiver's answer never waits for it.
CODEPAY_NOTIFICATION_PUBLISH_TIMEOUT_SECONDS = env.float("CODEPAY_NOTIFICATION_PUBLISH_TIMEOUT_SECONDS", default=1.0)
# Reconciliation: an order still waiting this long after it expires is closed at the gateway.
CODEPAY_EXPIRY_GRACE_SECONDS = env.int("CODEPAY_EXPIRY_GRACE_SECONDS", default=120)
# An `unknown` create that the gateway still does not know after this long never reached it.
CODEPAY_UNKNOWN_GRACE_SECONDS = env.int("CODEPAY_UNKNOWN_GRACE_SECONDS", default=900)

# JSON lines for log collectors in production; plain text for a person reading `make run`.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT is {LOG_FORMAT!r}; set it to 'json' or 'text'.")

# --- Store-system integration: waiting for an order, outbound events ----------------------------------
# GET /api/v1/orders/{no}/?wait=N: the longest N accepted, and the Redis that carries "this order changed"
# from the process that committed the change to the process holding the wait (empty: the broker's Redis;
# no Redis at all: the wait looks at the database once a second).
ORDER_WAIT_MAX_SECONDS = 60
ORDER_WAIT_REDIS_URL = env.str("ORDER_WAIT_REDIS_URL", default="")
ORDER_WAIT_POLL_SECONDS = env.float("ORDER_WAIT_POLL_SECONDS", default=1.0)
# Database reads of waiting requests running at once per process (each gives its connection back after).
ORDER_WAIT_DATABASE_CONCURRENCY = env.int("ORDER_WAIT_DATABASE_CONCURRENCY", default=4)
EVENTS_CONNECT_TIMEOUT = env.float("EVENTS_CONNECT_TIMEOUT", default=3.0)
EVENTS_READ_TIMEOUT = env.float("EVENTS_READ_TIMEOUT", default=10.0)
# Back-off between attempts of one delivery (the last delay repeats), for EVENTS_RETRY_WINDOW_SECONDS.
EVENTS_RETRY_DELAYS = env.list(
    "EVENTS_RETRY_DELAYS", cast=int, default=[60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200]
)
EVENTS_RETRY_WINDOW_SECONDS = env.int("EVENTS_RETRY_WINDOW_SECONDS", default=3 * 24 * 3600)
# An endpoint failing this long without a success, with at least this many failed attempts, is disabled.
EVENTS_ENDPOINT_DISABLE_AFTER_SECONDS = env.int("EVENTS_ENDPOINT_DISABLE_AFTER_SECONDS", default=3 * 24 * 3600)
EVENTS_ENDPOINT_DISABLE_MIN_FAILURES = env.int("EVENTS_ENDPOINT_DISABLE_MIN_FAILURES", default=10)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "codepay_service.log_format.RequestContextFilter"}},
    "formatters": {
        "text": {
            "()": "codepay_service.log_format.ContextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "codepay_service.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_context"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- /metrics ----------------------------------------------------------------------------------------
# Scrapes must pass every guard that is set: the bearer token, the source network. With neither set,
# /metrics answers 403 unless DEBUG is on (make run).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
