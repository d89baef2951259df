"""Load each worker process's models at start, chosen by the queues it consumes."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger, celeryd_init, worker_process_init

from tasks.shared import logs
from tasks import models

log = logging.getLogger(__name__)

_queues: list[str] = []


@celeryd_init.connect
def _remember_queues(options: dict[str, Any] | None = None, **_: Any) -> None:
    """Runs in the main worker process, before the pool forks its children."""
    raw = (options or {}).get("queues") or []
    _queues[:] = raw.split(",") if isinstance(raw, str) else list(raw)


@worker_process_init.connect
def _load_models(**_: Any) -> None:
    """Runs in each pool process: build and warm up the models its queues need.

    A model that cannot load (a missing insightface pack, say) stops the whole worker
    at start, with the reason in its log, instead of failing every task later.
    """
    loaders = [loader for queue in _queues for loader in models.loaders(queue)]
    started = time.perf_counter()
    try:
        for loader in loaders:
            loader()
    except Exception as error:
        log.critical("cannot load the models for queue %s, stopping this worker: %s", ",".join(_queues), error)
        os.kill(os.getppid(), signal.SIGTERM)  # the worker's main process: a warm shutdown
        raise
    if loaders:
        log.info("models for %s ready in %.2fs", ",".join(_queues), time.perf_counter() - started)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger: logging.Logger, **_: Any) -> None:
    """Workers log like the facade: ``LOG_FORMAT=json`` for JSON lines, each with its key."""
    if logs.json_logs():
        logs.apply(logger)
    else:
        for handler in logger.handlers:
            handler.addFilter(logs.KeyFilter())
