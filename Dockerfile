# The service's image: the web API (default command), the Celery worker and beat all run from it.
# Runtime dependencies only (requirements.txt); the test tools and the tests stay out. Static files,
# including the Swagger UI that /api/docs/ serves, are collected at build time.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STATIC_ROOT=/app/staticfiles \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/codepay/metrics
RUN groupadd --system --gid 10001 codepay \
    && useradd --system --uid 10001 --gid codepay --home-dir /app --no-create-home --shell /usr/sbin/nologin codepay \
    && mkdir -p "$PROMETHEUS_MULTIPROC_DIR" \
    && chown codepay:codepay "$PROMETHEUS_MULTIPROC_DIR"
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The worker and beat run the same image with another command (docker-compose.yml); the health check is the
# web service's, so it is declared there.
# Owned by root and read-only to the service user: the code cannot be changed by the process running it.
COPY manage.py gunicorn.conf.py ./
COPY codepay_service ./codepay_service
COPY payments ./payments
COPY webhooks ./webhooks
# A throwaway key: collectstatic needs settings to load, never a secret.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0
USER codepay
EXPOSE 8000
CMD ["gunicorn", "codepay_service.wsgi:application", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", \
     "--workers", "2", "--threads", "16", "--timeout", "60", "--graceful-timeout", "30"]
