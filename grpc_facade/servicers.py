"""The four gRPC services: each method maps its request to ``Pipeline`` and back.

Errors map to status codes in one place, ``_status_on_error``:
bad image or key -> INVALID_ARGUMENT, Redis or broker down -> UNAVAILABLE, Redis
full -> RESOURCE_EXHAUSTED, deadline passed -> DEADLINE_EXCEEDED, anything else -> INTERNAL.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import celery.exceptions
import grpc
import kombu.exceptions

from grpc_facade import messages
from grpc_facade.metrics import Metrics
from grpc_facade.pipeline import Pipeline, RedisFull
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks.shared import logs
from tasks.shared.imaging import ImageError
from tasks.shared.output_files import InvalidKey
from tasks.shared.redis_store import FULL, UNREACHABLE

log = logging.getLogger(__name__)

_NO_DEADLINE = 10**6  # grpc reports a huge remaining time when the client set none


@contextlib.contextmanager
def _status_on_error(context: grpc.ServicerContext, what: str) -> Iterator[None]:
    logs.request_key.set("")  # threads are reused: forget the previous request's key
    try:
        yield
    except (ImageError, InvalidKey) as error:
        log.warning("%s rejected: %s", what, error)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    except RedisFull as error:
        log.error("%s refused: %s", what, error)
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
    except (FULL, *UNREACHABLE, kombu.exceptions.OperationalError) as error:
        if _redis_full(error):  # kombu wraps what Redis refused in an OperationalError
            log.error("%s: Redis is full: %s", what, error)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"Redis is full, try again later: {error}")
        log.error("%s: Redis unavailable: %s", what, error)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis is unavailable: {error}")
    except celery.exceptions.TimeoutError:
        log.error("%s: no result before the deadline", what)
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the workers did not answer before the deadline")
    except Exception as error:
        log.exception("%s failed", what)
        context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


def _redis_full(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was raised while handling, Redis refusing a write at its maxmemory."""
    while error is not None:
        if isinstance(error, FULL):
            return True
        error = error.__cause__ or error.__context__
    return False


def _timeout(context: grpc.ServicerContext, pipeline: Pipeline) -> float:
    """Seconds to wait for the workers: the client's deadline if it set one, else REQUEST_TIMEOUT."""
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return pipeline.config.request_timeout
    return max(0.05, remaining - 0.05)


class ImageInputServicer(pb_grpc.ImageInputServicer):
    def __init__(self, pipeline: Pipeline, metrics: Metrics) -> None:
        self.pipeline = pipeline
        self.metrics = metrics

    def ProcessImage(self, request: pb.ImageRequest, context: grpc.ServicerContext) -> pb.CombinedResponse:
        started = time.perf_counter()
        with _status_on_error(context, "ProcessImage"):
            outcome, cached = self.pipeline.process(
                request.image_data,
                _timeout(context, self.pipeline),
                recompute=request.recompute,
                annotate=request.annotate,
            )
            response = messages.combined_response(outcome, time.perf_counter() - started, cached)
            if not cached:
                self.metrics.observe_stages(response)
            tag = response.redis_key[:12]
            log.info("Face Landmark Detection responded: %s [%s]", response.landmark_response.status, tag)
            log.info("Age Gender Estimation responded: %s [%s]", response.age_gender_response.status, tag)
            log.info("Data Storage responded: %s [%s]", response.storage_response.status, tag)
            return response

    def GetResult(self, request: pb.ResultRequest, context: grpc.ServicerContext) -> pb.CombinedResponse:
        started = time.perf_counter()
        with _status_on_error(context, "GetResult"):
            outcome = self.pipeline.stored_outcome(request.redis_key, _timeout(context, self.pipeline))
        if outcome is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no stored result for {request.redis_key}")
        return messages.combined_response(outcome, time.perf_counter() - started, cached=True)


class FaceLandmarkDetectionServicer(pb_grpc.FaceLandmarkDetectionServicer):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def DetectLandmarks(self, request: pb.LandmarkRequest, context: grpc.ServicerContext) -> pb.LandmarkResponse:
        with _status_on_error(context, "DetectLandmarks"):
            key, result = self.pipeline.single_stage(
                "landmark", request.image_data, _timeout(context, self.pipeline)
            )
            log.info("Face Landmark Detection responded: %s [%s]", result["status"], key[:12])
            return messages.landmark_response(key, result)


class AgeGenderEstimationServicer(pb_grpc.AgeGenderEstimationServicer):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def EstimateAgeGender(self, request: pb.AgeGenderRequest, context: grpc.ServicerContext) -> pb.AgeGenderResponse:
        with _status_on_error(context, "EstimateAgeGender"):
            key, result = self.pipeline.single_stage(
                "agegender", request.image_data, _timeout(context, self.pipeline)
            )
            log.info("Age Gender Estimation responded: %s [%s]", result["status"], key[:12])
            return messages.age_gender_response(key, result)


class DataStorageServicer(pb_grpc.DataStorageServicer):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def StoreData(self, request: pb.StorageRequest, context: grpc.ServicerContext) -> pb.StorageResponse:
        with _status_on_error(context, "StoreData"):
            key, outcome = self.pipeline.store_only(
                request.image_data, _timeout(context, self.pipeline)
            )
            log.info("Data Storage responded: %s [%s]", outcome["storage"]["status"], key[:12])
            return messages.storage_response(key, outcome["storage"])
