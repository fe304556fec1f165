"""Logging through the host's ``log`` import.

Inside a component each line goes to the host's log, tagged with the
plugin's name; on plain CPython it goes to stderr. Keyword arguments become
structured fields: ``log.info("dropped", reason="bot")``.
"""

import sys

TRACE, DEBUG, INFO, WARN, ERROR = "trace", "debug", "info", "warn", "error"


def _stderr_sink(level, message, fields):
    extra = "".join(f" {k}={v}" for k, v in fields)
    print(f"[{level}] {message}{extra}", file=sys.stderr)


_sink = _stderr_sink


def set_sink(sink):
    """Routes log lines to ``sink(level: str, message: str, fields: list[tuple[str, str]])``.
    The component entry point points it at the host import."""
    global _sink
    _sink = sink


def log(level, message, **fields):
    _sink(level, str(message), [(str(k), str(v)) for k, v in fields.items()])


def trace(message, **fields):
    log(TRACE, message, **fields)


def debug(message, **fields):
    log(DEBUG, message, **fields)


def info(message, **fields):
    log(INFO, message, **fields)


def warn(message, **fields):
    log(WARN, message, **fields)


def error(message, **fields):
    log(ERROR, message, **fields)
