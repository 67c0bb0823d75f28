"""The whole platform on loopback for development: `python -m deepfake_devstack.stack up|down|status` (`make up`).

`up` starts Redis, the S3 server, Triton (when a model is installed in the model repository's cpu variant), the
gateway, the Celery workers (one pool for the pipeline queues, so a job's stages run back to back in one process,
and one for webhooks), beat, and Prometheus scraping them all, then returns and leaves them running. It creates a
development tenant with a fresh API key (var/stack/tenants.json holds only its hash) and prints the key and the
gateway URL. Pids, ports and logs go to var/stack/ (ignored), with `var/stack/env`, a shell-sourceable file of the
variables the services read plus DEEPFAKE_GATEWAY_URL, DEEPFAKE_API_URL and DEEPFAKE_API_KEY for clients; `down`
stops everything by pid. The project's own services are data (`SERVICES`): adjust their commands there.

From Python (what `make demo` does):

    env = Stack(StackPaths(folder)).up()          # the same env, DEEPFAKE_GATEWAY_URL and DEEPFAKE_API_KEY included
    client = DeepfakeClient(env["DEEPFAKE_GATEWAY_URL"], env["DEEPFAKE_API_KEY"])
    ...
    stop_recorded(StackPaths(folder))
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from deepfake_jobs.tenants import hash_api_key, new_api_key

from deepfake_devstack.binaries import REPO_ROOT, MissingProgramError
from deepfake_devstack.ports import LOOPBACK, preferred_or_free_port
from deepfake_devstack.process import (
    ServerProcess,
    ServerStartError,
    http_get_ok,
    pid_is_alive,
    process_start_ticks,
    terminate_process_group,
)
from deepfake_devstack.prometheus_server import PrometheusServer
from deepfake_devstack.promtool import PromtoolError, check_config
from deepfake_devstack.redis_server import RedisServer
from deepfake_devstack.s3_server import S3Server

DEFAULT_STACK_DIR = REPO_ROOT / "var" / "stack"
PROMETHEUS_TEMPLATE = REPO_ROOT / "infra" / "prometheus" / "prometheus-local.yml"
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
CPU_MODEL_REPOSITORY = MODEL_REPOSITORY / "cpu"
GPU_MODEL_REPOSITORY = MODEL_REPOSITORY / "gpu"
MODEL_NAME = "deepfake_detector"
DEV_TENANT = "dev"
DEV_TENANT_LIMITS = {"rate_limit_per_minute": 6000, "max_concurrent_jobs": 200}
S3_BUCKET = "deepfake"
CELERY_APP = "deepfake_worker.celery_app:app"

#: Preferred ports of the infrastructure (a taken port falls back to a free one).
REDIS_PORT = 6379
S3_PORT = 9000
PROMETHEUS_PORT = 9090
# Triton's own defaults (8000-8002) would clash with the gateway's 8000.
TRITON_PORTS = {"http": 8100, "grpc": 8101, "metrics": 8102}

#: CPU niceness of the worker pools: the gateway shares this machine's cores with them, and a saturated pool must
#: not stretch the API's answers (two A/B runs of loadtests/bench_service.py on 2 cores also busy with other work:
#: submit p99 at 100/s 70 -> 63 ms and 124 -> 39 ms, photo and clip latencies unchanged). Deployments give the
#: gateway its own CPU requests instead.
WORKER_NICE = 5

#: Pool processes of the pipeline worker: one job at a time uses every CPU (threads inside each stage), and a
#: second process overlaps one job's network and storage waits with another job's computing.
PIPELINE_CONCURRENCY = 2

#: Variables added to every service's environment (and to var/stack/env), e.g. {"DEEPFAKE_FETCH_ALLOWLIST": "..."}.
EXTRA_ENV: dict[str, str] = {}


@dataclass(frozen=True)
class ServiceSpec:
    """One of the platform's own processes, as data.

    `command` and `env` values are templates: `{python}` is this interpreter, `{port}` and the other names in
    `ports` are the ports the stack picked, `{data_dir}` is the service's own folder under var/stack/data.
    """

    name: str
    module: str  # importable, or the service is skipped (its package is not installed yet)
    command: tuple[str, ...]
    ports: Mapping[str, int] = field(default_factory=dict)  # name -> preferred port
    ready_path: str | None = None  # GET http://127.0.0.1:{port}{ready_path} answers 2xx once ready
    scrape_job: str | None = None  # Prometheus job scraping http://127.0.0.1:{port}/metrics
    scrape_labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 90.0


def worker_spec(group: str, metrics_port: int, concurrency: int = 1, queues: Sequence[str] = ()) -> ServiceSpec:
    """One Celery worker (prefork pool of `concurrency` processes) consuming `queues` (default: the queue named
    `group`), with its own metrics port."""
    return ServiceSpec(
        name=f"worker-{group}",
        module="deepfake_worker.celery_app",
        command=(
            "{python}",
            "-m",
            "celery",
            f"--app={CELERY_APP}",
            "worker",
            f"--queues={','.join(queues or (group,))}",
            f"--concurrency={concurrency}",
            f"--hostname={group}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ),  # fmt: skip
        ports={"port": metrics_port},
        ready_path="/metrics",
        scrape_job="deepfake-worker",
        scrape_labels={"queue_group": group},
        env={
            "DEEPFAKE_METRICS_PORT": "{port}",
            "DEEPFAKE_METRICS_HOST": LOOPBACK,
            "DEEPFAKE_PROCESS_NICE": str(WORKER_NICE),
        },
    )


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="gateway",
        module="deepfake_gateway.main",
        command=(
            "{python}",
            "-m",
            "uvicorn",
            "deepfake_gateway.main:app",
            "--host",
            LOOPBACK,
            "--port",
            "{port}",
            "--no-server-header",
        ),  # fmt: skip
        ports={"port": 8000, "grpc_port": 50051},
        ready_path="/healthz",
        scrape_job="deepfake-gateway",
        env={"DEEPFAKE_HTTP_PORT": "{port}", "DEEPFAKE_GRPC_PORT": "{grpc_port}", "DEEPFAKE_GRPC_HOST": LOOPBACK},
    ),
    # One pool on every pipeline queue: a job's stages run back to back in one process (the workers' fast path),
    # its pool processes share the CPUs (deepfake_worker.runtime); webhooks wait on the network, apart.
    worker_spec("pipeline", 9100, concurrency=PIPELINE_CONCURRENCY, queues=("preprocess", "inference", "explain")),
    worker_spec("webhooks", 9103),
    ServiceSpec(
        name="beat",
        module="deepfake_worker.celery_app",
        command=(
            "{python}",
            "-m",
            "celery",
            f"--app={CELERY_APP}",
            "beat",
            "--schedule={data_dir}/celerybeat-schedule",
            "--pidfile=",
            "--loglevel=INFO",
        ),  # fmt: skip
    ),
)

INFRASTRUCTURE = ("redis", "s3", "triton", "prometheus")


class StackError(RuntimeError):
    """The stack could not be started; the message says which service failed and why."""

    code = "stack_failed"


class CommandServer(ServerProcess):
    """A ServiceSpec made concrete: its command, environment and readiness check with the ports filled in."""

    def __init__(
        self, spec: ServiceSpec, ports: Mapping[str, int], data_dir: Path, env: Mapping[str, str], log_path: Path
    ) -> None:
        super().__init__(log_path=log_path, startup_timeout_s=spec.startup_timeout_s)
        self.name = spec.name
        self.spec = spec
        self.ports = dict(ports)
        self.data_dir = data_dir
        self._values = {"python": sys.executable, "data_dir": str(data_dir), **{k: str(v) for k, v in ports.items()}}
        self._env = {**env, **{key: value.format(**self._values) for key, value in spec.env.items()}}
        self._started_at = 0.0

    @property
    def url(self) -> str:
        port = self.ports.get("port")
        return f"http://{LOOPBACK}:{port}" if port else "(no port)"

    def command(self) -> Sequence[str]:
        return [part.format(**self._values) for part in self.spec.command]

    def environment(self) -> Mapping[str, str]:
        return self._env

    def working_directory(self) -> Path:
        return REPO_ROOT

    def listen_ports(self) -> Sequence[int]:
        return list(self.ports.values())

    def start(self) -> CommandServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._started_at = time.monotonic()
        return super().start()

    def is_ready(self) -> bool:
        if self.spec.ready_path is None:
            # Nothing to ask: ready once it has survived its first second (import errors show up by then).
            return time.monotonic() - self._started_at > 1.0
        return http_get_ok(f"{self.url}{self.spec.ready_path}")


# --- Prometheus config ---


def render_prometheus_config(
    template: Mapping[str, Any],
    targets: Mapping[str, Sequence[tuple[str, Mapping[str, str]]]],
    rules_dir: Path,
) -> dict[str, Any]:
    """The local config with each job's targets replaced by `targets[job]` ([(host:port, labels)]).

    Jobs without targets are dropped (their service did not start); rule files become absolute paths under
    `rules_dir`, since the rendered file lives elsewhere than the template.
    """
    config = json.loads(json.dumps(template))  # a deep copy of plain data
    config["rule_files"] = [str(rules_dir / Path(path).name) for path in config.get("rule_files", [])]
    scrape_configs = []
    for job in config.get("scrape_configs", []):
        job_targets = targets.get(job["job_name"], ())
        if not job_targets:
            continue
        job["static_configs"] = [
            {"targets": [address], **({"labels": dict(labels)} if labels else {})} for address, labels in job_targets
        ]
        scrape_configs.append(job)
    config["scrape_configs"] = scrape_configs
    return config


# --- state on disk ---


@dataclass
class StackPaths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def env(self) -> Path:
        return self.root / "env"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def prometheus_config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def multiproc(self) -> Path:
        return self.root / "prometheus-multiproc"

    @property
    def tenants(self) -> Path:
        return self.root / "tenants.json"


def read_state(paths: StackPaths) -> dict[str, Any]:
    if not paths.state.is_file():
        return {"services": {}}
    return json.loads(paths.state.read_text())


def write_state(paths: StackPaths, state: Mapping[str, Any]) -> None:
    temporary = paths.state.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(paths.state)


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """`KEY=value` lines, shell-quoted: `set -a; . var/stack/env; set +a` exports them. Owner-only: it holds the
    development tenant's API key."""
    lines = ["# Written by `python -m deepfake_devstack.stack up`; source it with: set -a; . var/stack/env; set +a"]
    lines += [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n")


def write_dev_tenant(path: Path, tenant_id: str = DEV_TENANT) -> str:
    """A tenants file with one development tenant and a fresh API key; returns the key (the file has its hash)."""
    api_key = new_api_key()
    document = {"tenants": [{"id": tenant_id, "api_key_sha256": hash_api_key(api_key), **DEV_TENANT_LIMITS}]}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return api_key


def parse_env_file(path: Path) -> dict[str, str]:
    """The variables of an env file written by `write_env_file`."""
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


# --- up ---


def installed_triton_model(repository: Path = CPU_MODEL_REPOSITORY) -> Path | None:
    """The newest version folder of the cpu variant (`repository` = its folder) that holds a model, or None."""
    model_dir = repository / MODEL_NAME
    versions = [p for p in model_dir.glob("[0-9]*") if p.is_dir() and (p / "model.onnx").is_file()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def triton_server_class() -> tuple[type[ServerProcess] | None, str]:
    """TritonServer from deepfake_devstack.triton_server (the Triton helper's module), or None and why not."""
    try:
        module = importlib.import_module("deepfake_devstack.triton_server")
    except ImportError as error:
        return None, f"deepfake_devstack.triton_server cannot be imported ({error})"
    return module.TritonServer, ""


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


class Stack:
    """Starts the services in order, records each one as it comes up, and stops them all on the first failure.

    `model_repository` is the root of a Triton model repository (its `cpu` variant is served by Triton when a
    model is installed there, and its `gpu` variant is where in-process onnxruntime looks for the model).
    """

    def __init__(
        self,
        paths: StackPaths,
        only: set[str] | None = None,
        out: TextIO = sys.stdout,
        model_repository: Path = MODEL_REPOSITORY,
    ) -> None:
        self.paths = paths
        self.only = only
        self.out = out
        self.model_repository = Path(model_repository).resolve()
        self.state: dict[str, Any] = {"services": {}, "skipped": {}}
        self.scrape_targets: dict[str, list[tuple[str, dict[str, str]]]] = {}

    def wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def skip(self, name: str, reason: str) -> None:
        self.state["skipped"][name] = reason
        self.say(f"  {name:<18} skipped: {reason}")

    def record(
        self, server: ServerProcess, ports: Mapping[str, int], scrape: tuple[str, dict[str, str]] | None
    ) -> None:
        assert server.pid is not None
        self.state["services"][server.name] = {
            "pid": server.pid,
            "start_ticks": process_start_ticks(server.pid),
            "url": server.url,
            "ports": dict(ports),
            "log": str(server.log_path),
        }
        write_state(self.paths, self.state)
        if scrape is not None:
            job, labels = scrape
            port = ports.get("metrics", ports.get("port"))
            self.scrape_targets.setdefault(job, []).append((f"{LOOPBACK}:{port}", labels))
        self.say(f"  {server.name:<18} {server.url}  (pid {server.pid}, log {server.log_path})")

    def log_path(self, name: str) -> Path:
        return self.paths.logs / f"{name}.log"

    @property
    def cpu_model_repository(self) -> Path:
        return self.model_repository / "cpu"

    def up(self) -> dict[str, str]:
        """Start everything; returns the environment written to var/stack/env: the services' variables, plus
        DEEPFAKE_GATEWAY_URL, DEEPFAKE_API_URL and DEEPFAKE_API_KEY (the development tenant) for clients."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.logs.mkdir(exist_ok=True)
        shutil.rmtree(self.paths.multiproc, ignore_errors=True)  # prometheus_client wants it empty at start
        self.paths.multiproc.mkdir()
        write_state(self.paths, self.state)
        api_key = write_dev_tenant(self.paths.tenants)
        env = {"DEEPFAKE_ENVIRONMENT": "development", "DEEPFAKE_TENANTS_FILE": str(self.paths.tenants), **EXTRA_ENV}
        if self.wanted("redis"):
            env.update(self.start_redis())
        if self.wanted("s3"):
            env.update(self.start_s3())
        env.update(self.start_triton() if self.wanted("triton") else {})
        env.setdefault("DEEPFAKE_INFERENCE_BACKEND", "onnxruntime")
        env["DEEPFAKE_MODEL_REPOSITORY"] = str(self.model_repository / "gpu")
        shell_multiproc = self.paths.multiproc / "shell"
        shell_multiproc.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(shell_multiproc)
        for spec in SERVICES:
            if self.wanted(spec.name):
                env.update(self.start_service(spec, env))
        if self.wanted("prometheus"):
            env.update(self.start_prometheus())
        if "DEEPFAKE_GATEWAY_URL" in env:
            env["DEEPFAKE_API_URL"] = env["DEEPFAKE_GATEWAY_URL"]  # what the deepfake_client CLI reads
        env["DEEPFAKE_API_KEY"] = api_key
        write_env_file(self.paths.env, env)
        self.state["env"] = {key: value for key, value in env.items() if key != "DEEPFAKE_API_KEY"}
        write_state(self.paths, self.state)
        return env

    def start_redis(self) -> dict[str, str]:
        server = RedisServer(  # with the append-only file, as compose and the chart run it
            preferred_or_free_port(REDIS_PORT),
            appendonly=True,
            data_dir=self.paths.data / "redis",
            log_path=self.log_path("redis"),
        ).start()
        self.record(server, {"port": server.port}, None)
        return {"DEEPFAKE_REDIS_URL": server.url}

    def start_s3(self) -> dict[str, str]:
        server = S3Server(  # moto keeps its objects across restarts by replaying its request log
            preferred_or_free_port(S3_PORT), replay_dir=self.paths.data / "s3", log_path=self.log_path("s3")
        ).start()
        self.record(server, {"port": server.port}, None)
        server.ensure_bucket(S3_BUCKET)
        return {
            "DEEPFAKE_S3_ENDPOINT": server.url,
            "DEEPFAKE_S3_ACCESS_KEY": server.access_key,
            "DEEPFAKE_S3_SECRET_KEY": server.secret_key,
            "DEEPFAKE_S3_BUCKET": S3_BUCKET,
            "DEEPFAKE_S3_REGION": "us-east-1",
        }

    def start_triton(self) -> dict[str, str]:
        triton_class, reason = triton_server_class()
        if triton_class is None:
            self.skip("triton", f"{reason}; inference runs in the workers with onnxruntime")
            return {}
        if installed_triton_model(self.cpu_model_repository) is None:
            self.skip(
                "triton",
                f"no model installed in {_shown(self.cpu_model_repository)}/{MODEL_NAME} "
                "(python -m deepfake_core.serving.model_repository install MODEL.onnx, or `make model`); "
                "inference runs in the workers with onnxruntime",
            )
            return {}
        ports = {name: preferred_or_free_port(port) for name, port in TRITON_PORTS.items()}
        server = triton_class(
            self.cpu_model_repository,
            http_port=ports["http"],
            grpc_port=ports["grpc"],
            metrics_port=ports["metrics"],
            log_path=self.log_path("triton"),
            startup_timeout_s=180.0,
        )
        server.start()
        self.record(server, ports, ("triton", {}))
        return {"DEEPFAKE_INFERENCE_BACKEND": "triton", "DEEPFAKE_TRITON_URL": f"{LOOPBACK}:{ports['grpc']}"}

    def start_service(self, spec: ServiceSpec, env: Mapping[str, str]) -> dict[str, str]:
        if not module_available(spec.module):
            self.skip(spec.name, f"{spec.module} is not installed")
            return {}
        ports = {name: preferred_or_free_port(port) for name, port in spec.ports.items()}
        multiproc = self.paths.multiproc / spec.name
        multiproc.mkdir()
        service_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
        server = CommandServer(spec, ports, self.paths.data / spec.name, service_env, self.log_path(spec.name))
        server.start()
        self.record(server, ports, (spec.scrape_job, dict(spec.scrape_labels)) if spec.scrape_job else None)
        if spec.name == "gateway":
            return {
                "DEEPFAKE_GATEWAY_URL": server.url,
                "DEEPFAKE_GATEWAY_GRPC": f"{LOOPBACK}:{ports['grpc_port']}",
            }
        return {}

    def start_prometheus(self) -> dict[str, str]:
        port = preferred_or_free_port(PROMETHEUS_PORT)
        self.scrape_targets.setdefault("prometheus", []).append((f"{LOOPBACK}:{port}", {}))
        template = yaml.safe_load(PROMETHEUS_TEMPLATE.read_text())
        config = render_prometheus_config(template, self.scrape_targets, PROMETHEUS_TEMPLATE.parent / "rules")
        self.paths.prometheus_config.write_text(yaml.safe_dump(config, sort_keys=False))
        check_config(self.paths.prometheus_config)
        server = PrometheusServer(
            self.paths.prometheus_config,
            port,
            data_dir=self.paths.data / "prometheus",
            log_path=self.log_path("prometheus"),
        ).start()
        self.record(server, {"port": port}, None)
        return {"DEEPFAKE_PROMETHEUS_URL": server.url}


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (shorter messages)."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def stop_recorded(paths: StackPaths, out: TextIO = sys.stdout) -> int:
    """Stop every recorded service, last started first; the number stopped."""
    state = read_state(paths)
    stopped = 0
    for name, entry in reversed(list(state.get("services", {}).items())):
        if terminate_process_group(entry["pid"], entry.get("start_ticks")):
            stopped += 1
            print(f"  {name:<18} stopped (pid {entry['pid']})", file=out)
    with contextlib.suppress(FileNotFoundError):
        paths.state.unlink()
    return stopped


def service_status(entry: Mapping[str, Any]) -> str:
    if not pid_is_alive(entry["pid"], entry.get("start_ticks")):
        return "down"
    return "running"


# --- command line ---


def command_up(paths: StackPaths, only: set[str] | None, model_repository: Path = MODEL_REPOSITORY) -> int:
    state = read_state(paths)
    alive = [name for name, entry in state.get("services", {}).items() if service_status(entry) == "running"]
    if alive:
        print(f"The stack is already up ({', '.join(alive)}); `make down` stops it.")
        return command_status(paths)
    print(f"Starting the local stack in {paths.root}:")
    stack = Stack(paths, only, model_repository=model_repository)
    try:
        env = stack.up()
    except (ServerStartError, MissingProgramError, PromtoolError, StackError) as error:
        print(f"error: {error}", file=sys.stderr)
        print("Stopping what had started.", file=sys.stderr)
        stop_recorded(paths, out=sys.stderr)
        return 1
    print(f"Up. Environment: {paths.env}  (set -a; . {paths.env}; set +a)")
    if "DEEPFAKE_GATEWAY_URL" in env:
        print(f"Gateway:  {env['DEEPFAKE_GATEWAY_URL']}  (API docs at /docs)")
        print(f"Console:  {env['DEEPFAKE_GATEWAY_URL']}/console  (sign in with the API key below)")
        print(f"API key:  {env['DEEPFAKE_API_KEY']}  (development tenant '{DEV_TENANT}'; a new one each `up`)")
        print("Try:      set -a; . var/stack/env; set +a; python -m deepfake_client.cli photo.jpg --wait")
    return 0


def command_down(paths: StackPaths) -> int:
    if not paths.state.is_file():
        print("The local stack is not running.")
        return 0
    stopped = stop_recorded(paths)
    print(f"Stopped {stopped} service(s); logs stay in {paths.logs}.")
    return 0


def command_status(paths: StackPaths) -> int:
    state = read_state(paths)
    services = state.get("services", {})
    if not services:
        print("The local stack is not running.")
        return 3
    all_running = True
    for name, entry in services.items():
        status = service_status(entry)
        all_running = all_running and status == "running"
        print(f"  {name:<18} {status:<8} {entry['url']}  (pid {entry['pid']})")
    for name, reason in state.get("skipped", {}).items():
        print(f"  {name:<18} skipped  {reason}")
    return 0 if all_running else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepfake_devstack.stack", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--stack-dir",
        type=Path,
        default=Path(os.environ.get("DEEPFAKE_STACK_DIR", DEFAULT_STACK_DIR)),
        help="where pids, logs and the env file go (default: var/stack)",
    )
    known = [*INFRASTRUCTURE[:3], *(spec.name for spec in SERVICES), INFRASTRUCTURE[3]]
    parser.add_argument("--services", default="", help=f"comma-separated subset to start (of: {', '.join(known)})")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=Path(os.environ.get("DEEPFAKE_STACK_MODEL_REPOSITORY", MODEL_REPOSITORY)),
        help="Triton model repository root; Triton serves its cpu variant when a model is installed there "
        "(default: $DEEPFAKE_STACK_MODEL_REPOSITORY, else model_repository/)",
    )
    args = parser.parse_args(argv)
    paths = StackPaths(args.stack_dir.resolve())
    only = {name.strip() for name in args.services.split(",") if name.strip()} or None
    unknown = sorted((only or set()) - set(known))
    if unknown:
        parser.error(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.action == "up":
        return command_up(paths, only, args.model_repository)
    if args.action == "down":
        return command_down(paths)
    return command_status(paths)


if __name__ == "__main__":
    sys.exit(main())
