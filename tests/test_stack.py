"""grpc_facade/stack.py's plain helpers (the stack itself runs in the integration tests)."""

from __future__ import annotations

from pathlib import Path

from grpc_facade.stack import redis_server_argv


def test_private_redis_keeps_nothing_on_disk_and_listens_on_loopback(tmp_path: Path) -> None:
    argv = redis_server_argv(6390, tmp_path)
    assert Path(argv[0]).name == "redis-server"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options == {"--port": "6390", "--bind": "127.0.0.1", "--save": "", "--appendonly": "no", "--dir": str(tmp_path)}
    with_password = redis_server_argv(6390, tmp_path, "s3cret")
    assert with_password[-2:] == ["--requirepass", "s3cret"]
