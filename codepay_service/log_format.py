"""
Log lines that carry their context, as JSON (production) or plain text (``make run``).

A call passes its context in ``extra=`` (merchant_order_no, psn, store_no...). What belongs to the whole
request (its id, the account and store of its API key, the order in its URL) is bound once by
``codepay_service.request_context`` and added to every line logged while the request runs, so a line
from deep inside a service can be found by the request id a store system quotes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# The current request's fields; a new dict per request (never mutated in place, so threads do not share one).
# The default is read-only, so no request can fill in a dict that every other request would then see.
log_context: ContextVar[Mapping[str, str]] = ContextVar("codepay_log_context", default=MappingProxyType({}))


def log_context_bind(**fields: str) -> None:
    """Add fields to every line logged from here to the end of the current request; empty values are skipped."""
    log_context.set({**log_context.get(), **{name: value for name, value in fields.items() if value}})


class RequestContextFilter(logging.Filter):
    """Copies the bound request fields onto each record, leaving any field the call passed itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in log_context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class ContextFormatter(logging.Formatter):
    """Plain text: the message, then the context fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}
        if context:
            line += " " + " ".join(f"{key}={value!r}" for key, value in sorted(context.items()))
        return line


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, then the context fields."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args, **kwargs)
