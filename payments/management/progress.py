"""
Progress for long management commands: a bar on stderr while the command works, left at its final count
(only when stderr is a terminal, so cron jobs and pipes get clean output), one line per item at DEBUG (and on
stdout with ``--verbosity 2``), then the command's closing summary line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


class Progress:
    def __init__(self, *, bar: tqdm, command, logger: logging.Logger):
        self._bar = bar
        self._command = command
        self._logger = logger

    def advance(self, count: int = 1) -> None:
        self._bar.update(count)

    def item(self, line: str, **context) -> None:
        """One item's result: a DEBUG log line always, on stdout too at --verbosity 2 or more."""
        self._logger.debug(line, extra=context)
        if self._command.verbosity >= 2:
            with self._bar.external_write_mode():
                self._command.stdout.write(line)


@contextmanager
def progress(*, command, total: int | None, unit: str, description: str, logger: logging.Logger) -> Iterator[Progress]:
    """
    ``command`` is the running BaseCommand; its ``verbosity`` must be set (from ``options["verbosity"]``).
    Log lines written meanwhile (the gateway client's, for one) are printed above the bar instead of
    through it.
    """
    stream = getattr(command.stderr, "_out", command.stderr)
    with (
        logging_redirect_tqdm(),
        tqdm(total=total, unit=unit, desc=description, file=stream, disable=None, dynamic_ncols=True) as bar,
    ):
        yield Progress(bar=bar, command=command, logger=logger)
