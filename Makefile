# Two commands set everything up on a fresh machine with nothing but Python:
#   make run   the whole service on an embedded default (SQLite, filesystem broker, built-in sandbox)
#   make test  the whole suite against PostgreSQL and Redis (127.0.0.1 defaults, overridable)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make run` remembers the addresses it served on, so `make manage` (reconcile, close_batches...) talks to
# the same sandbox and builds the same notify URL; HOST=... PORT=... on the command line still win.
-include .dev/ports.mk
HOST ?= 127.0.0.1
PORT ?= 8000
SANDBOX_PORT ?= 8010

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/codepay
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?= tests

.PHONY: install install-dev run manage test lint check bench bench-memory bench-wait chaos clean

# Two sets, both pinned: requirements.txt is what the service runs on (and all the image holds);
# requirements-dev.txt adds the test tools. `make run` needs the first, `make test` both.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(BIN)/.installed: requirements.txt clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e clients/python
	touch $@

$(BIN)/.installed-dev: requirements.txt requirements-dev.txt clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e clients/python
	touch $(BIN)/.installed $@

install: $(BIN)/.installed

install-dev: $(BIN)/.installed-dev

DEV := $(CURDIR)/.dev
DEV_ENV = DJANGO_DEBUG=1 DJANGO_SECRET_KEY=$$(cat $(DEV)/secret_key) DJANGO_SECURE_SSL_REDIRECT=0 \
	DATABASE_URL=sqlite:///$(DEV)/db.sqlite3 CELERY_BROKER_URL=filesystem:// \
	CELERY_BROKER_FILESYSTEM_FOLDER=$(DEV)/broker \
	CODEPAY_BASE_URL=http://127.0.0.1:$(SANDBOX_PORT) CODEPAY_APP_ID=wzdev0000000000001 \
	CODEPAY_MERCHANT_NO=302300000001 CODEPAY_STORE_NO=4021000001 \
	CODEPAY_PRIVATE_KEY_FILE=$(DEV)/app_private_key.pem \
	CODEPAY_GATEWAY_PUBLIC_KEY_FILE=$(DEV)/gateway_public_key.txt \
	CODEPAY_SANDBOX_GATEWAY_PRIVATE_KEY_FILE=$(DEV)/gateway_private_key.pem CODEPAY_SANDBOX_STATE_DIR=$(DEV)/sandbox \
	CODEPAY_BASIC_AUTH_USER=dev CODEPAY_BASIC_AUTH_PASSWORD=dev-password \
	CODEPAY_NOTIFY_URL=http://$(HOST):$(PORT)/webhooks/codepay/ PROMETHEUS_MULTIPROC_DIR=$(DEV)/metrics

# Web, worker and commands add up their /metrics counters in .dev/metrics; each `make run` starts from zero.
run: install
	mkdir -p $(DEV)
	test -s $(DEV)/secret_key || $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))' > $(DEV)/secret_key
	printf 'HOST ?= %s\nPORT ?= %s\nSANDBOX_PORT ?= %s\n' '$(HOST)' '$(PORT)' '$(SANDBOX_PORT)' > $(DEV)/ports.mk
	rm -rf $(DEV)/metrics && mkdir -p $(DEV)/metrics
	$(DEV_ENV) $(BIN)/python manage.py devserver --host $(HOST) --port $(PORT) --sandbox-port $(SANDBOX_PORT)

# Any manage.py command against the `make run` database, e.g. make manage ARGS=createsuperuser
manage: install
	mkdir -p $(DEV)/metrics
	$(DEV_ENV) $(BIN)/python manage.py $(ARGS)

test: install-dev
	DJANGO_SECRET_KEY=test-only-not-secret DJANGO_DEBUG=0 DJANGO_SECURE_SSL_REDIRECT=0 \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_REDIS_URL)} \
	$(BIN)/python -m pytest -c tests/pytest.ini --rootdir . $(PYTEST_ARGS)

# Style and types: the formatter's verdict, the lint rules and mypy, all configured in pyproject.toml. mypy
# loads the settings (django-stubs), which need a secret key and a database URL it never connects to.
LINT_PATHS := codepay_service payments webhooks
lint: install-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	DJANGO_SECRET_KEY=lint-only-not-secret DJANGO_DEBUG=0 DJANGO_SECURE_SSL_REDIRECT=0 \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_REDIS_URL)} \
	$(BIN)/mypy $(LINT_PATHS)

check: install
	DJANGO_SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
	DJANGO_ALLOWED_HOSTS=pay.example.com $(BIN)/python manage.py check --deploy --fail-level WARNING

BENCH_ENV = DJANGO_SECRET_KEY=bench-only-not-secret DJANGO_SECURE_SSL_REDIRECT=0 \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_REDIS_URL)}

# Measured figures, not timed tests: the Procfile's processes side by side with the bare stack (a raw signed
# client, a bare insert view), every ratio printed and written to docs/benchmarks.md. Ports from BENCH_PORT_BASE.
# Then intake again beside 200 clients waiting on orders (bench-wait).
bench: install-dev
	$(BENCH_ENV) $(BIN)/python tests/benchmarks/bench_stack.py $(BENCH_ARGS)
	$(BENCH_ENV) $(BIN)/python tests/benchmarks/bench_wait.py

# Web and worker RSS after 10,000 and 100,000 intakes (about ten minutes on 2 cores).
bench-memory: install-dev
	$(BENCH_ENV) BENCH_COMMAND="make bench-memory" $(BIN)/python tests/benchmarks/bench_stack.py --only memory --memory 10000 100000 --drain-seconds 300 --section "make bench-memory"

# 200 clients waiting on orders (?wait=) under uvicorn while notification intake is measured next to them.
bench-wait: install-dev
	$(BENCH_ENV) $(BIN)/python tests/benchmarks/bench_wait.py

# Every fault at once: 1,000 orders through the Procfile's processes, the sandbox, a Redis of its own and
# a database of its own (DATABASE_URL's name + _chaos), then every order checked against the sandbox.
CHAOS_ARGS ?= --orders 1000
chaos: install-dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .dev staticfiles
