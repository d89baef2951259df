"""Configuration read from environment variables, with defaults for a single machine.

Every process of the stack (facade, workers, launcher) reads the same variables, so a
worker on another machine only needs the same ``REDIS_URL`` to join. The README's
configuration table lists them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

PROJECT_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T", int, float)


def _env_number(name: str, default: T, kind: Callable[[str], T], what: str) -> T:
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def _env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def _env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name, "").strip()
    return Path(raw).expanduser().resolve() if raw else default


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _env_optional_path(name: str) -> Path | None:
    raw = os.environ.get(name, "").strip()
    return Path(raw).expanduser().resolve() if raw else None


@dataclass(frozen=True)
class Settings:
    """A snapshot of the configuration; build one with :func:`load`."""

    redis_url: str
    output_dir: Path
    images_dir: Path
    grpc_host: str
    grpc_port: int
    grpc_workers: int
    flower_port: int
    metrics_port: int
    image_ttl: int
    result_ttl: int
    kept_results_max: int
    after_run_ttl: int
    request_timeout: float
    visibility_timeout: int
    lost_message_check: float
    redis_memory_limit: float
    landmark_concurrency: int
    agegender_concurrency: int
    storage_concurrency: int
    worker_concurrency: int
    max_message_bytes: int
    max_image_pixels: int
    ort_threads: int
    detect_max_side: int
    detect_threshold: float
    small_faces_max_side: int
    landmark_backend: str
    agegender_backend: str
    landmark_points: int
    insightface_home: Path
    insightface_pack: str
    annotate: bool
    agegender_flip: bool
    agegender_bf16: bool
    detect_bf16: bool
    min_gender_confidence: float
    grpc_tls_cert: Path | None
    grpc_tls_key: Path | None
    grpc_tls_ca: Path | None

    def concurrency(self, queue: str) -> int:
        """Pool processes of the worker that consumes ``queue`` (a stage added through
        ``STAGE_PLUGINS``: ``WORKER_CONCURRENCY``, else 1)."""
        return {
            "landmark": self.landmark_concurrency,
            "agegender": self.agegender_concurrency,
            "storage": self.storage_concurrency,
        }.get(queue, self.worker_concurrency or 1)


def load() -> Settings:
    """Read the environment now (tests and the launcher change it between calls)."""
    # WORKER_CONCURRENCY, when set, is the default of all three per-queue values. Without
    # it: two landmark processes (detection is the longest stage), one age/gender, one storage.
    every_queue = _env_int("WORKER_CONCURRENCY", 0)
    return Settings(
        redis_url=os.environ.get("REDIS_URL", "").strip() or "redis://localhost:6379/0",
        output_dir=_env_path("OUTPUT_DIR", PROJECT_ROOT / "output"),
        images_dir=_env_path("IMAGES_DIR", PROJECT_ROOT / "images"),
        grpc_host=os.environ.get("GRPC_HOST", "").strip() or "[::]",
        grpc_port=_env_int("GRPC_PORT", 50051),
        grpc_workers=_env_int("GRPC_WORKERS", 16),
        flower_port=_env_int("FLOWER_PORT", 5555),
        metrics_port=_env_int("METRICS_PORT", 9464),
        image_ttl=_env_int("IMAGE_TTL", 3600),
        result_ttl=_env_int("RESULT_TTL", 86400),
        # Answers kept are bounded by count too, so that Redis is bounded without a maxmemory.
        kept_results_max=_env_int("KEPT_RESULTS_MAX", 100_000),
        after_run_ttl=_env_int("AFTER_RUN_TTL", 60),
        request_timeout=_env_float("REQUEST_TIMEOUT", 60.0),
        # Longer than the slowest task, or that task runs twice.
        visibility_timeout=_env_int("VISIBILITY_TIMEOUT", 20),
        lost_message_check=_env_float("LOST_MESSAGE_CHECK", 5.0),
        # Room for the runs under way: a Redis at its maxmemory refuses their results and acks.
        redis_memory_limit=_env_float("REDIS_MEMORY_LIMIT", 0.9),
        landmark_concurrency=_env_int("LANDMARK_CONCURRENCY", every_queue or 2),
        agegender_concurrency=_env_int("AGEGENDER_CONCURRENCY", every_queue or 1),
        storage_concurrency=_env_int("STORAGE_CONCURRENCY", every_queue or 1),
        worker_concurrency=every_queue,
        max_message_bytes=_env_int("MAX_MESSAGE_BYTES", 32 * 1024 * 1024),
        max_image_pixels=_env_int("MAX_IMAGE_PIXELS", 50_000_000),
        ort_threads=_env_int("ORT_THREADS", min(2, len(os.sched_getaffinity(0)))),
        detect_max_side=_env_int("DETECT_MAX_SIDE", 640),
        detect_threshold=_env_float("DETECT_THRESHOLD", 0.5),
        small_faces_max_side=_env_int("SMALL_FACES_MAX_SIDE", 1920),
        landmark_backend=os.environ.get("LANDMARK_BACKEND", "").strip() or "embedded",
        agegender_backend=os.environ.get("AGEGENDER_BACKEND", "").strip() or "embedded",
        landmark_points=_env_int("LANDMARK_POINTS", 5),
        insightface_home=_env_path("INSIGHTFACE_HOME", Path("~/.insightface").expanduser()),
        insightface_pack=os.environ.get("INSIGHTFACE_PACK", "").strip() or "buffalo_l",
        annotate=_env_bool("ANNOTATE", False),
        agegender_flip=_env_bool("AGEGENDER_FLIP", False),
        agegender_bf16=_env_bool("AGEGENDER_BF16", True),
        detect_bf16=_env_bool("DETECT_BF16", False),
        min_gender_confidence=_env_float("MIN_GENDER_CONFIDENCE", 0.0),
        grpc_tls_cert=_env_optional_path("GRPC_TLS_CERT"),
        grpc_tls_key=_env_optional_path("GRPC_TLS_KEY"),
        grpc_tls_ca=_env_optional_path("GRPC_TLS_CA"),
    )
