"""Logging, configured once at start: structlog events, one per line, to stdout.

JSON lines when stdout is not a terminal (journald, files, tests), console rendering on a
terminal. The standard-library loggers of paramiko, pyftpdlib and watchdog go through the
same renderer so every line has one shape.
"""

import logging
import sys

import structlog

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
]

# Chatty libraries: their DEBUG/INFO lines repeat what our own events say, or leak details.
# paramiko logs a failed connection as a traceback, one ERROR line per traceback line, for
# anything a stranger sends (no banner, a bad packet): the SFTP server logs each ending as one
# rate-limited `connection.closed` event of its own instead, so paramiko is silenced.
# python-gnupg logs gpg's status lines as warnings ("potential problem"); a run's reason says what failed.
_LIBRARY_LEVELS = {
    "paramiko": logging.CRITICAL + 1, "pyftpdlib": logging.WARNING, "watchdog": logging.WARNING,
    "gnupg": logging.CRITICAL + 1,
}  # fmt: skip


def configure_logging(level: str = "info", stream=None, observers=()) -> None:
    """JSON lines when `stream` (stdout by default) is not a terminal, console lines when it is.
    `observers` are processors that see every event (the metrics count them)."""
    stream = stream or sys.stdout
    renderer = (
        structlog.processors.JSONRenderer() if not stream.isatty() else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            *observers,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, library_level in _LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(max(library_level, root.level))
