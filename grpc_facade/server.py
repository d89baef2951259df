"""The gRPC server: ``python -m grpc_facade.server`` (configured by environment variables)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from grpc_facade import channels
from grpc_facade.health import PipelineHealth
from grpc_facade.metrics import Metrics, method_label, queue_client
from grpc_facade.pipeline import Pipeline
from grpc_facade.servicers import (
    AgeGenderEstimationServicer,
    DataStorageServicer,
    FaceLandmarkDetectionServicer,
    ImageInputServicer,
)
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tasks.shared import logs, settings

log = logging.getLogger(__name__)

STOP_GRACE = 10  # seconds in-flight requests get to finish once the facade is told to stop
SERVICE_NAMES = [service.full_name for service in pb.DESCRIPTOR.services_by_name.values()]
METHOD_LABELS = [method_label(f"/{service.full_name}/{method.name}")
                 for service in pb.DESCRIPTOR.services_by_name.values() for method in service.methods]


def build_server(config: settings.Settings, metrics: Metrics) -> tuple[grpc.Server, PipelineHealth, int]:
    """A started-ready server with all services, health and reflection, every call counted
    in ``metrics``; returns the bound port."""
    pipeline = Pipeline(
        config, on_sent_again=metrics.runs_sent_again.inc, on_results_dropped=metrics.kept_results_dropped.inc
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.grpc_workers, thread_name_prefix="rpc"),
        interceptors=[metrics.interceptor],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ],
    )
    pb_grpc.add_ImageInputServicer_to_server(ImageInputServicer(pipeline, metrics), server)
    pb_grpc.add_FaceLandmarkDetectionServicer_to_server(FaceLandmarkDetectionServicer(pipeline), server)
    pb_grpc.add_AgeGenderEstimationServicer_to_server(AgeGenderEstimationServicer(pipeline), server)
    pb_grpc.add_DataStorageServicer_to_server(DataStorageServicer(pipeline), server)
    pipeline_health = PipelineHealth(pipeline.store, SERVICE_NAMES)
    health_pb2_grpc.add_HealthServicer_to_server(pipeline_health.servicer, server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    address = f"{config.grpc_host}:{config.grpc_port}"
    credentials = channels.server_credentials(config)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {config.grpc_host}:{config.grpc_port}")
    return server, pipeline_health, port


def serve(config: settings.Settings) -> None:
    """Serve until SIGINT or SIGTERM, then finish in-flight requests (up to ``STOP_GRACE``
    seconds) and exit."""
    metrics = Metrics(queue_client(config.redis_url), METHOD_LABELS)
    server, pipeline_health, port = build_server(config, metrics)
    metrics_server = metrics.serve(config.grpc_host, config.metrics_port) if config.metrics_port else None
    server.start()
    pipeline_health.start()
    tls = " (TLS)" if config.grpc_tls_cert else ""
    log.info("Image Input Service running on %s:%d...%s", config.grpc_host, port, tls)
    if metrics_server is not None:
        log.info("Prometheus metrics on %s:%d/metrics", config.grpc_host, config.metrics_port)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    log.info("Image Input Service stopping")
    pipeline_health.stop()
    server.stop(grace=STOP_GRACE).wait(STOP_GRACE + 1)
    if metrics_server is not None:
        metrics_server.shutdown()
    log.info("Image Input Service stopped")
    logging.shutdown()
    # Requests still waiting for the workers would keep the process alive until their
    # deadlines: their clients are cut off, and their runs go on in the workers.
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m grpc_facade.server",
        description="Serve ImageInput, FaceLandmarkDetection, AgeGenderEstimation and DataStorage "
        "over gRPC, with health and reflection. Configured by environment variables "
        "(GRPC_HOST, GRPC_PORT, METRICS_PORT, REDIS_URL, REQUEST_TIMEOUT, ...; see README).",
    )
    parser.parse_args(argv)
    logs.setup()
    serve(settings.load())


if __name__ == "__main__":
    main()
