"""Celery tasks of the ``storage`` queue, the workers that hold ``OUTPUT_DIR``: the graph's
last task, which writes ``output/``, and the reading back of a result from there."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from tasks import app
from tasks.shared import graph, logs, settings
from tasks.annotate import draw
from tasks.shared.imaging import JPEG_MAGIC, as_jpeg, decode_image, encode_jpeg
from tasks.shared.document import build_document
from tasks.shared.output_files import (
    annotated_name, annotated_path, atomic_write, output_names, read_outcome, write_outputs,
)
from tasks.shared.document import FAILURE, SUCCESS
from tasks.shared.redis_store import ImageStore
from tasks.worker_io import RETRY_POLICY, RETRYABLE, image_store

log = logging.getLogger(__name__)


def store_outputs(
    key: str, images: ImageStore, config: settings.Settings, run_id: str, annotate: bool = False
) -> dict[str, Any]:
    """Merge the stage results stored for ``key`` and write ``<key>.json`` and ``<key>.jpg``
    (and ``<key>.annotated.jpg`` when ``annotate`` or ``ANNOTATE=1``).

    Returns ``{"document": ..., "storage": {status, error, runtime, json_path, image_path}}``
    (file names relative to ``OUTPUT_DIR``). When everything succeeded it keeps that outcome
    in Redis under ``<key>:result``, and the image and stage results of run ``run_id`` expire
    within ``AFTER_RUN_TTL``. A storage failure (image expired, folder not writable) is
    reported, not raised: the image stays in Redis until it expires, so the request can be retried.
    """
    started = time.perf_counter()
    json_name, image_name = output_names(key)
    document = build_document(
        key,
        image_name,
        images.get_stage_result(key, graph.DETECTION),
        {name: images.get_stage_result(key, name) for name in graph.PER_FACE},
    )
    status, error, drawn = SUCCESS, "", ""
    try:
        data = images.get_image(key)
        if annotate or config.annotate:
            picture = decode_image(data, config.max_image_pixels)  # decoded once for both files
            drawn_path = annotated_path(config.output_dir, key)
            atomic_write(drawn_path, encode_jpeg(draw(picture, document["faces"]), quality=90))
            drawn = annotated_name(key)
            jpeg = data if data.startswith(JPEG_MAGIC) else encode_jpeg(picture)
        else:
            jpeg = as_jpeg(data, config.max_image_pixels)
        write_outputs(config.output_dir, key, document, jpeg)
    except RETRYABLE:
        raise
    except Exception as exc:
        log.exception("[%s] storage failed", key[:12])
        status, error = FAILURE, f"{type(exc).__name__}: {exc}"
    storage = {
        "status": status,
        "error": error,
        "runtime": time.perf_counter() - started,
        "json_path": json_name if status == SUCCESS else "",
        "image_path": image_name if status == SUCCESS else "",
        "annotated_path": drawn if status == SUCCESS else "",
    }
    log.info("[%s] storage: %s, Runtime: %.3f", key[:12], status, storage["runtime"])
    outcome = {"document": document, "storage": storage}
    if status == SUCCESS and document["status"] == SUCCESS:
        images.put_outcome(key, outcome)  # later requests for these bytes answer from it
        images.expire_run_inputs(key, run_id, (graph.DETECTION, *graph.PER_FACE), config.after_run_ttl)
    return outcome


@app.task(name="tasks.storage.store_results", bind=True, **RETRY_POLICY)
def store_results(
    task: Task, stage_summaries: list[dict[str, Any]] | dict[str, Any], key: str, annotate: bool = False
) -> dict[str, Any]:
    """The graph's last task, whose id is the run's: ``stage_summaries`` are what the
    stages before it returned (unused: the full results are read from Redis under their
    documented keys)."""
    logs.request_key.set(key)
    return store_outputs(key, image_store(), settings.load(), task.request.id, annotate)


@app.task(name="tasks.storage.read_result")
def read_result(key: str) -> dict[str, Any] | None:
    """The outcome of ``key`` from this worker's ``OUTPUT_DIR``, or None: how a facade
    without that folder answers ``GetResult`` once Redis no longer keeps the answer."""
    return read_outcome(settings.load().output_dir, key)
