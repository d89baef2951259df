"""docker-compose.yaml: valid Compose, and in step with the code it runs. No Docker needed.

1. The file validates against the official Compose specification schema, the copy that
   the pinned ``check-jsonschema`` wheel ships (``vendor.compose-spec``); nothing is
   fetched at test time.
2. The file agrees with the code: one worker per queue of ``celeryconfig.task_routes``,
   only environment variables the code reads, Redis addressed by service name, the
   ports the code listens on, the output folder mounted for the storage worker.

Each check below is a function that returns the problems it finds. The real file must
give none, and ``test_each_check_catches_its_mistake`` breaks a copy of the file once
per check to prove that the check can fail.
"""

from __future__ import annotations

import ast
import copy
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from urllib.parse import urlparse

import grpc
import jsonschema
import pytest
from check_jsonschema.builtin_schemas import get_builtin_schema
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from ruamel.yaml import YAML

import celeryconfig
from tasks import settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yaml"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
REDIS_SERVICE = "redis"
REDIS_HOST_PORT = 6380
REDIS_CONTAINER_PORT = 6379

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


def published_ports(service: dict) -> set[tuple[int | None, int]]:
    """(host port, container port) pairs; host is None when Docker picks it."""
    pairs = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            pairs.add((int(published) if published is not None else None, int(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            pairs.add((None, int(parts[0])))
        else:
            pairs.add((int(parts[-2]) if parts[-2] else None, int(parts[-1])))
    return pairs


def bind_mounts(service: dict) -> set[tuple[str, str]]:
    """(source, target) pairs of the service's volumes."""
    mounts = set()
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts.add((str(entry.get("source", "")), str(entry["target"])))
        else:
            source, _, rest = str(entry).partition(":")
            mounts.add((source, rest.split(":")[0]))
    return mounts


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
    braced = re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text)
    bare = re.findall(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)", text)
    return set(braced) | set(bare)


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


def names_the_code_reads() -> set[str]:
    return names_read_from_environment(ROOT / "tasks" / "settings.py") | (flower_reads() & {"FLOWER_BASIC_AUTH"})


def default_settings() -> settings.Settings:
    """What the code uses when no variable is set."""
    with pytest.MonkeyPatch.context() as patch:
        for name in names_read_from_environment(ROOT / "tasks" / "settings.py"):
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
    known = names_the_code_reads()
    used = {key for service in compose["services"].values() for key in environment(service)}
    used |= interpolated_names(text)
    unknown = sorted(used - known)
    return [f"variables the code never reads: {unknown}"] if unknown else []


def check_redis_by_service_name(compose: Compose) -> list[str]:
    problems = []
    for name, service in app_services(compose).items():
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
    for name, service in app_services(compose).items():
        env = {key: value for key, value in environment(service).items() if value is not None}
        with pytest.MonkeyPatch.context() as patch:
            for variable in names_read_from_environment(ROOT / "tasks" / "settings.py"):
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


def check_output_mount(compose: Compose) -> list[str]:
    storage = compose["services"].get("worker-storage", {})
    output_dir = environment(storage).get("OUTPUT_DIR")
    if not output_dir:
        return ["worker-storage sets no OUTPUT_DIR"]
    mounts = bind_mounts(storage)
    if ("./output", output_dir) not in mounts:
        return [f"worker-storage does not bind ./output to OUTPUT_DIR={output_dir}: {sorted(mounts)}"]
    return []


def check_health_and_order(compose: Compose) -> list[str]:
    services = compose["services"]
    problems = []
    redis_test = services.get(REDIS_SERVICE, {}).get("healthcheck", {}).get("test", [])
    if "redis-cli" not in redis_test or "ping" not in redis_test:
        problems.append(f"redis healthcheck is not `redis-cli ping`: {redis_test}")
    facade_test = " ".join(map(str, services.get("facade", {}).get("healthcheck", {}).get("test", [])))
    if "grpc_health.v1" not in facade_test or f"localhost:{default_settings().grpc_port}" not in facade_test:
        problems.append("facade healthcheck does not ask the gRPC health service on its own port")
    for name, service in app_services(compose).items():
        depends_on = service.get("depends_on") or {}
        condition = depends_on.get(REDIS_SERVICE) if isinstance(depends_on, dict) else None  # a list: only "started"
        if not isinstance(condition, dict) or condition.get("condition") != "service_healthy":
            problems.append(f"{name} does not wait for redis to be healthy")
    return problems


def check_flower_auth_passthrough(compose: Compose) -> list[str]:
    flower_env = environment(compose["services"].get("flower", {}))
    if "FLOWER_BASIC_AUTH" not in flower_env:
        return ["flower does not receive FLOWER_BASIC_AUTH"]
    value = flower_env["FLOWER_BASIC_AUTH"]
    if value is not None and "${FLOWER_BASIC_AUTH" not in value:
        return [f"flower's FLOWER_BASIC_AUTH is fixed in the file ({value!r}), not taken from the host"]
    return []


CHECKS: dict[str, Callable[[Compose], list[str]]] = {
    "workers match routes": check_workers_match_routes,
    "worker commands": check_worker_commands,
    "workers scalable": check_workers_scalable,
    "environment is read": lambda compose: check_environment_is_read(compose, COMPOSE_FILE.read_text()),
    "redis by service name": check_redis_by_service_name,
    "settings take the values": check_settings_take_the_values,
    "ports": check_ports,
    "output mount": check_output_mount,
    "health and order": check_health_and_order,
    "flower auth passthrough": check_flower_auth_passthrough,
}


# ---------------------------------------------------------------------------- schema


def test_schema_is_the_compose_specification(compose_schema: dict) -> None:
    assert compose_schema["title"] == "Compose Specification"
    assert "services" in compose_schema["properties"]


def test_compose_file_validates_against_the_schema(compose: Compose, compose_schema: dict) -> None:
    assert schema_errors(compose, compose_schema) == []


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
    names = names_read_from_environment(ROOT / "tasks" / "settings.py")
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


def _no_redis_healthcheck(d: Compose) -> None:
    d["services"]["redis"]["healthcheck"] = {"test": ["CMD", "true"]}


def _facade_health_elsewhere(d: Compose) -> None:
    d["services"]["facade"]["healthcheck"] = {"test": ["CMD", "true"]}


def _no_wait_for_redis(d: Compose) -> None:
    d["services"]["worker-storage"]["depends_on"] = ["redis"]


def _no_flower_environment(d: Compose) -> None:
    d["services"]["flower"].pop("environment")


def _fixed_flower_password(d: Compose) -> None:
    d["services"]["flower"]["environment"] = {
        **d["services"]["flower"]["environment"], "FLOWER_BASIC_AUTH": "admin:admin"}


MISTAKES = {
    "workers match routes": [_drop_worker, _wrong_queue],
    "worker commands": [_drop_worker, _wrong_queue, _fixed_node_name],
    "workers scalable": [_container_name, _fixed_worker_port],
    "environment is read": [_unknown_variable],
    "redis by service name": [_localhost_redis, _no_redis_url, _redis_host_port_in_url, _list_environment_with_loopback],
    "settings take the values": [_unnormalised_output_dir],
    "ports": [_facade_port, _metrics_port, _metrics_port_moved, _flower_port, _redis_port],
    "output mount": [_no_output_mount, _unnormalised_output_dir],
    "health and order": [_no_redis_healthcheck, _facade_health_elsewhere, _no_wait_for_redis],
    "flower auth passthrough": [_fixed_flower_password, _no_flower_environment],
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

