"""grpc_facade/stack.py's plain helpers (the stack itself runs in the integration tests)."""

from __future__ import annotations

import socket
from pathlib import Path

from grpc_facade.stack import free_port, redis_server_argv


def test_private_redis_keeps_nothing_on_disk_and_listens_on_loopback(tmp_path: Path) -> None:
    argv = redis_server_argv(6390, tmp_path)
    assert Path(argv[0]).name == "redis-server"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options == {"--port": "6390", "--bind": "127.0.0.1", "--save": "", "--appendonly": "no", "--dir": str(tmp_path)}
    with_password = redis_server_argv(6390, tmp_path, "s3cret")
    assert with_password[-2:] == ["--requirepass", "s3cret"]


def test_free_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50 and all(1024 <= port < low for port in ports)
    with socket.socket() as listening:
        listening.bind(("", ports[0]))  # still free
        listening.listen()
