"""gRPC over TLS: with GRPC_TLS_CERT and GRPC_TLS_KEY the facade speaks only TLS."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from grpc_facade.stack import Stack
from proto import image_processing_pb2 as pb
from proto import image_processing_pb2_grpc as pb_grpc
from tests.conftest import private_stack


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Iterator[Stack]:
    cert, key = certificate
    with private_stack(tmp_path_factory.mktemp("tls-stack"), GRPC_TLS_CERT=str(cert), GRPC_TLS_KEY=str(key)) as stack:
        yield stack


def test_tls_client_is_served(tls_stack: Stack, certificate: tuple[Path, Path], astronaut_bytes: bytes) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate[0].read_bytes())
    with grpc.secure_channel(tls_stack.grpc_target, credentials) as channel:
        response = pb_grpc.ImageInputStub(channel).ProcessImage(pb.ImageRequest(image_data=astronaut_bytes), timeout=60)
    assert response.status == "Success" and len(response.faces) == 1


def test_plaintext_client_is_refused(tls_stack: Stack, astronaut_bytes: bytes) -> None:
    with grpc.insecure_channel(tls_stack.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            pb_grpc.ImageInputStub(channel).ProcessImage(pb.ImageRequest(image_data=astronaut_bytes), timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
