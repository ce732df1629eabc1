"""Log lines that carry their context: the ``extra=`` fields a call passes are appended as key=value."""

import logging

_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}
        if context:
            line += " " + " ".join(f"{key}={value!r}" for key, value in sorted(context.items()))
        return line
