"""One log setup for every process of the stack (facade, workers, launcher, client).

``LOG_FORMAT=text`` (default): ``2026-01-01 12:00:00,000 - INFO - message``.
``LOG_FORMAT=json``: one JSON object per line with ``time``, ``level``, ``logger``,
``message`` and, on every line that belongs to a request, ``key`` (the image's SHA-256).
"""

from __future__ import annotations

import contextvars
import logging
import os
import re

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(key)s"

# The key of the request this thread (or task) is working on, for every log line.
request_key: contextvars.ContextVar[str] = contextvars.ContextVar("request_key", default="")

_KEY = re.compile(r"[0-9a-f]{64}")


def _current_task_key() -> str:
    """The key argument of the Celery task running in this process, if any."""
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a requirement
        return ""
    task = current_task
    args = getattr(getattr(task, "request", None), "args", None) or ()
    return next((a for a in args if isinstance(a, str) and _KEY.fullmatch(a)), "")


def _key_in_arguments(record: logging.LogRecord) -> str:
    """A key among the values of the log call (Celery's "Task ... received" lines carry
    the task's arguments there)."""
    values = record.args.values() if isinstance(record.args, dict) else (record.args or ())
    for value in values:
        found = _KEY.search(value) if isinstance(value, str) else None
        if found:
            return found.group(0)
    return ""


class KeyFilter(logging.Filter):
    """Adds ``record.key``: the request's image key, or ``""`` outside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "key", ""):
            record.key = request_key.get() or _current_task_key() or _key_in_arguments(record)
        return True


def json_logs() -> bool:
    return os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"


def formatter() -> logging.Formatter:
    if json_logs():
        return JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})
    return logging.Formatter(TEXT_FORMAT)


def apply(logger: logging.Logger) -> None:
    """Give every handler of ``logger`` our format and key filter (used for Celery's loggers)."""
    for handler in logger.handlers:
        handler.setFormatter(formatter())
        if not any(isinstance(f, KeyFilter) for f in handler.filters):
            handler.addFilter(KeyFilter())


def setup(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    apply(logging.getLogger())
