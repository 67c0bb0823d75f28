"""The compose stack (infra/compose), read without Docker: valid against the Compose specification's JSON schema,
every service the platform needs with what it mounts present in the repository, the settings the services build
from its environment accepted, Redis persistent, Triton on a GPU behind a profile, workers given time to finish a
task, and its Prometheus config, rules and Grafana provisioning the same as everywhere else."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deepfake_devstack import promtool
from deepfake_devstack.binaries import REPO_ROOT

from tests.infra.conftest import CHART_DIR, PROMETHEUS_DIR

COMPOSE_DIR = REPO_ROOT / "infra" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
GRAFANA_DIR = REPO_ROOT / "infra" / "grafana"
# The Compose specification's schema ships inside the docker-compose 1.x wheel (compose/config/compose_spec.json);
# fetched once into the ignored cache, like the test media.
SCHEMA = Path(__file__).with_name("schemas") / "compose_spec.json"  # from the docker-compose 1.29.2 wheel
WORKER_QUEUES = {"worker-preprocess": "preprocess", "worker-inference": "inference",
                 "worker-explain": "explain", "worker-webhooks": "webhooks"}  # fmt: skip


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def interpolate(value: str) -> str:
    """Compose's ${NAME:-default} with nothing set in the environment: the defaults the file documents."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda match: match.group(1) or "", value)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    return {name: interpolate(str(value)) for name, value in service.get("environment", {}).items()}


def duration_s(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(number) * units[unit] for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text))


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    """The Compose specification's schema, vendored (tests/infra/schemas/README.md): no download, no skip."""
    return json.loads(SCHEMA.read_text())


def schema_errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    # That schema (2021) predates the top-level `name` (the project name), which Compose v2 reads.
    document = {key: value for key, value in document.items() if key != "name"}
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)]


def test_the_file_follows_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    assert schema_errors(compose_schema, compose()) == []


def test_the_schema_check_catches_a_misspelt_key(compose_schema: dict[str, Any]) -> None:
    document = compose()
    document["services"]["redis"]["stop_grace_perod"] = "1m"
    assert any("stop_grace_perod" in error for error in schema_errors(compose_schema, document))


def test_the_platform_is_all_there() -> None:
    assert set(services()) == {
        "redis", "minio", "triton", "gateway", *WORKER_QUEUES, "beat", "prometheus", "grafana",
    }  # fmt: skip
    assert compose()["name"] == "deepfake"


def test_what_the_services_mount_and_build_exists() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                used.add(source)
        if "build" in service:
            context = COMPOSE_DIR / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for dependency in service.get("depends_on", {}):
            assert dependency in services() and "profiles" not in services()[dependency], (name, dependency)
    assert used == declared, "every named volume is declared and used"


def test_redis_keeps_its_data_in_an_append_only_file() -> None:
    redis = services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") and not volume.startswith(".") for volume in redis["volumes"])


def test_triton_runs_on_a_gpu_only_with_its_profile() -> None:
    chart_values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    triton = services()["triton"]
    assert triton["profiles"] == ["gpu"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "entrypoint" not in triton and triton["command"][0] == "tritonserver", "NVIDIA's entrypoint stays"
    base = (REPO_ROOT / triton["build"]["dockerfile"]).read_text()
    assert f"tritonserver:{chart_values['triton']['image']['tag']}" in base, "the chart's Triton release"
    config = (REPO_ROOT / "model_repository" / "gpu" / "deepfake_detector" / "config.pbtxt").read_text()
    cache_path = re.search(r'key: "trt_engine_cache_path" value: "([^"]+)"', config).group(1)  # type: ignore[union-attr]
    mounts = [volume.split(":") for volume in triton["volumes"]]
    assert any(cache_path.startswith(target + "/") and not source.startswith(".") for source, target, *_ in mounts)
    assert [target for _, target, *_ in mounts if target == "/models"], "the gpu model repository"


def test_services_accept_the_settings_the_stack_gives_them() -> None:
    from deepfake_gateway.settings import GatewaySettings
    from deepfake_jobs.queues import task_routes
    from deepfake_jobs.tenants import TenantRegistry
    from deepfake_worker.settings import WorkerSettings

    def fields(environment: dict[str, str]) -> dict[str, str]:
        return {name.removeprefix("DEEPFAKE_").lower(): value for name, value in environment.items()}

    gateway_env = environment_of(services()["gateway"])
    tenants_file = COMPOSE_DIR / "tenants.dev.yaml"
    gateway = GatewaySettings(**{**fields(gateway_env), "tenants_file": tenants_file})
    assert gateway.inference_backend == "onnxruntime", "CPU unless DEEPFAKE_INFERENCE_BACKEND=triton is set"
    documented_key = re.search(r"dfk_[\w-]+", tenants_file.read_text()).group(0)  # type: ignore[union-attr]
    tenant = TenantRegistry.from_file(tenants_file).authenticate(documented_key)
    assert tenant is not None and tenant.id == "dev", "the key the file documents opens the API"
    for name, queue in WORKER_QUEUES.items():
        service = services()[name]
        settings = WorkerSettings(**fields(environment_of(service)))
        command = service["command"]
        assert f"--queues={queue}" in command
        assert duration_s(service["stop_grace_period"]) > settings.job_time_limit_s, f"{name} is killed mid-task"
    consumed = set(WORKER_QUEUES.values())
    assert set(settings.queues) <= consumed
    assert {route["queue"] for route in task_routes(settings).values()} <= consumed
    assert "beat" in services()["beat"]["command"]


def test_prometheus_scrapes_the_stack_with_the_shared_rules(tmp_path: Path, system_programs: object) -> None:
    prometheus = services()["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"])
    assert (COMPOSE_DIR / "../prometheus/rules").resolve() == (PROMETHEUS_DIR / "rules").resolve()
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "deepfake-gateway", "deepfake-worker", "triton"}, "the rules' job names"
    gateway_port = services()["gateway"]["ports"][0].split(":")[-1]
    assert jobs["deepfake-gateway"]["static_configs"][0]["targets"] == [f"gateway:{gateway_port}"]
    workers = {group["labels"]["queue_group"]: group["targets"] for group in jobs["deepfake-worker"]["static_configs"]}
    assert workers == {queue: [f"{name}:9100"] for name, queue in WORKER_QUEUES.items()}
    assert jobs["triton"]["dns_sd_configs"][0]["names"] == ["triton"]
    container_rules = mounts["../prometheus/rules"]
    config["rule_files"] = [
        str(PROMETHEUS_DIR / "rules" / Path(path).relative_to(container_rules)) for path in config["rule_files"]
    ]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    assert "2 rule files found" in promtool.check_config(checked)


def test_grafana_reads_prometheus_and_the_one_dashboard_folder() -> None:
    grafana = services()["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("."))
    assert (COMPOSE_DIR / "../grafana/dashboards").resolve() == (GRAFANA_DIR / "dashboards").resolve()
    assert (CHART_DIR / "files" / "dashboards").resolve() == (GRAFANA_DIR / "dashboards").resolve()
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    prometheus_port = services()["prometheus"]["ports"][0].split(":")[-1]
    assert source["url"] == f"http://prometheus:{prometheus_port}" and source["isDefault"] is True
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "deepfake.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["../grafana/dashboards"]
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
