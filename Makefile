# Two commands set everything up on a fresh machine with nothing but Python:
#   make run   the whole service on an embedded default (SQLite, filesystem broker, built-in sandbox)
#   make test  the whole suite against PostgreSQL and Redis (127.0.0.1 defaults, overridable)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SANDBOX_PORT ?= 8010

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/codepay
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?= tests

.PHONY: install run manage test check bench chaos clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

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
	CODEPAY_NOTIFY_URL=http://$(HOST):$(PORT)/webhooks/codepay/

run: install
	mkdir -p $(DEV)
	test -s $(DEV)/secret_key || $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))' > $(DEV)/secret_key
	$(DEV_ENV) $(BIN)/python manage.py devserver --host $(HOST) --port $(PORT) --sandbox-port $(SANDBOX_PORT)

# Any manage.py command against the `make run` database, e.g. make manage ARGS=createsuperuser
manage: install
	$(DEV_ENV) $(BIN)/python manage.py $(ARGS)

test: install
	DJANGO_SECRET_KEY=test-only-not-secret DJANGO_DEBUG=0 DJANGO_SECURE_SSL_REDIRECT=0 \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_REDIS_URL)} \
	$(BIN)/python -m pytest -c tests/pytest.ini --rootdir . $(PYTEST_ARGS)

check: install
	DJANGO_SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
	DJANGO_ALLOWED_HOSTS=pay.example.com $(BIN)/python manage.py check --deploy --fail-level WARNING

BENCH_ENV = DJANGO_SECRET_KEY=bench-only-not-secret DJANGO_SECURE_SSL_REDIRECT=0 \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_REDIS_URL)}

# Measured figures, not timed tests: a reconciliation pass over 10,000 orders, notification intake latency.
bench: install
	$(BENCH_ENV) $(BIN)/python tests/benchmarks/bench_reconcile.py
	$(BENCH_ENV) $(BIN)/python tests/benchmarks/bench_webhook.py

# Every fault at once: 1,000 orders through the Procfile's processes, the sandbox, a Redis of its own and
# a database of its own (DATABASE_URL's name + _chaos), then every order checked against the sandbox.
CHAOS_ARGS ?= --orders 1000
chaos: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .dev staticfiles
