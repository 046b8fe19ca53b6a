"""Structured logging for the library, without touching the application's own set-up.

Every tomasulo logger wraps a standard-library logger under ``tomasulo.`` with structlog
processors of its own, so the application's structlog configuration is left alone and Python's
logging decides levels and handlers. Lines carry the run id (and task id) as bound fields; they
render for people on a terminal and as JSON otherwise.

>>> from tomasulo import configure_logging
>>> configure_logging("INFO")        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["bound_context", "configure_logging", "get_logger"]


def bound_context(**fields: Any) -> Any:
    """Bind fields (``run_id=...``) to every tomasulo log line written in this task and its children."""
    return structlog.contextvars.bound_contextvars(**fields)


_console = structlog.dev.ConsoleRenderer(colors=False)
_json = structlog.processors.JSONRenderer(sort_keys=True)


def _render(logger: Any, method: str, event: dict[str, Any]) -> str:
    """People get aligned columns on a terminal; machines get one JSON object per line."""
    stream = sys.stderr
    for handler in logging.getLogger("tomasulo").handlers:
        s = getattr(handler, "stream", None)
        if s is not None:
            stream = s
            break
    tty = getattr(stream, "isatty", lambda: False)()
    return str(_console(logger, method, event) if tty else _json(logger, method, event))


_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    _render,
]


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger over ``logging.getLogger(name)``; bind ``run_id``/``task_id`` on it."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return logger


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged, so a live view that redirects
    standard error (rich's ``Live``) prints log lines above itself instead of tearing through."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: int | str = "INFO", stream: TextIO | None = None) -> None:
    """Send tomasulo's logs at ``level`` and above to ``stream`` (by default standard error, as it
    is at each line: the current ``sys.stderr``)."""
    root = logging.getLogger("tomasulo")
    for old in list(root.handlers):
        if getattr(old, "_tomasulo", False):
            root.removeHandler(old)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._tomasulo = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    root.propagate = False
