"""gRPC transport security, the same way on both sides.

The server uses TLS when ``GRPC_TLS_CERT`` and ``GRPC_TLS_KEY`` are set. Clients use TLS
when ``GRPC_TLS_CA`` (the certificate authority to trust) or ``GRPC_TLS_CERT`` (a
self-signed server certificate, trusted as is) is set; plaintext otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from tasks.shared.settings import Settings


def server_credentials(config: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for the server, or ``None`` for plaintext."""
    if config.grpc_tls_cert is None and config.grpc_tls_key is None:
        return None
    if config.grpc_tls_cert is None or config.grpc_tls_key is None:
        raise ValueError("GRPC_TLS_CERT and GRPC_TLS_KEY must be set together")
    pair = (config.grpc_tls_key.read_bytes(), config.grpc_tls_cert.read_bytes())
    return grpc.ssl_server_credentials([pair])


def channel(target: str, config: Settings, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
    """A channel to the facade: TLS when the configuration names a CA or certificate."""
    trusted = config.grpc_tls_ca or config.grpc_tls_cert
    if trusted is None:
        return grpc.insecure_channel(target, options=list(options))
    credentials = grpc.ssl_channel_credentials(root_certificates=trusted.read_bytes())
    return grpc.secure_channel(target, credentials, options=list(options))
