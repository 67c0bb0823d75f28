"""The training team's experiment services, read without Docker or a cluster: the MLflow server in compose
(infra/compose/experiments.yml, beside the platform's file) and in the chart (`mlflow` values), each of one MLflow
release with the training client, its database and its artifacts in the platform's object store, and the retrain
CronJob logging to it."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest
import yaml
from deepfake_devstack.binaries import REPO_ROOT

from tests.infra.conftest import CHART_DIR, NAMESPACE, RELEASE, Render
from tests.infra.test_compose import COMPOSE_DIR, compose_schema, interpolate, schema_errors, services  # noqa: F401

EXPERIMENTS_FILE = COMPOSE_DIR / "experiments.yml"
MLFLOW_VALUES = yaml.safe_load((CHART_DIR / "ci" / "mlflow-values.yaml").read_text())
MLFLOW_NAME = f"{RELEASE}-deepfake-platform-mlflow"


def experiments() -> dict[str, Any]:
    return yaml.safe_load(EXPERIMENTS_FILE.read_text())


def client_release() -> str:
    """The MLflow release of the training client (the lock's mlflow-skinny)."""
    lock = (REPO_ROOT / "requirements" / "dev.lock").read_text()
    match = re.search(r"^mlflow-skinny==([\w.]+)$", lock, re.MULTILINE)
    assert match, "requirements/dev.lock pins no mlflow-skinny"
    return match.group(1)


def flags(command: list[str]) -> dict[str, str]:
    return dict(argument.removeprefix("--").split("=", 1) for argument in command if "=" in argument)


def test_the_compose_file_follows_the_specification(compose_schema: dict[str, Any]) -> None:  # noqa: F811
    assert schema_errors(compose_schema, experiments()) == []


def test_compose_mlflow_keeps_runs_in_postgres_and_artifacts_in_the_platforms_minio() -> None:
    added = experiments()["services"]
    platform = services()
    assert not set(added) & set(platform), "the experiment services add to the platform, never replace a service"
    for name, service in added.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in added or dependency in platform, (name, dependency)
    mlflow, database, bucket = added["mlflow"], added["mlflow-db"], added["mlflow-bucket"]
    arguments = {name: interpolate(value) for name, value in flags(mlflow["command"]).items()}
    environment = {name: interpolate(str(value)) for name, value in mlflow["environment"].items()}
    minio = {name: interpolate(str(value)) for name, value in platform["minio"]["environment"].items()}
    db = {name: interpolate(str(value)) for name, value in database["environment"].items()}
    expected_uri = (
        f"postgresql+psycopg2://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@mlflow-db:5432/{db['POSTGRES_DB']}"
    )
    assert arguments["backend-store-uri"] == expected_uri
    assert "--serve-artifacts" in mlflow["command"], "clients reach artifacts through the server, not S3"
    artifact_bucket = arguments["artifacts-destination"].removeprefix("s3://").split("/")[0]
    assert f"platform/{artifact_bucket}" in " ".join(bucket["command"]), "the artifacts' bucket is created"
    assert environment["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert (environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"],
    )  # fmt: skip
    assert interpolate(mlflow["image"]).endswith(f":v{client_release()}-full"), "server and client of one release"
    assert set(experiments()["volumes"]) == {v.split(":")[0] for s in added.values() for v in s.get("volumes", [])}


def test_the_chart_runs_mlflow_only_when_asked(render: Render) -> None:
    assert not [m for m in render(None) if "mlflow" in m["metadata"]["name"]]


def test_chart_mlflow_on_sqlite_is_one_replica_on_its_own_volume(render: Render) -> None:
    manifests = render({"mlflow": {"enabled": True}})
    deployment = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == MLFLOW_NAME)
    claim = next(m for m in manifests if m["kind"] == "PersistentVolumeClaim" and m["metadata"]["name"] == MLFLOW_NAME)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    arguments = flags(container["command"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "database")
    assert arguments["backend-store-uri"] == f"sqlite:///{mount['mountPath']}/mlflow.db"
    volume = next(v for v in pod["volumes"] if v["name"] == "database")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert container["image"] == f"ghcr.io/mlflow/mlflow:v{client_release()}-full"
    with pytest.raises(helm_python.HelmError, match="SQLite takes one writer"):
        render({"mlflow": {"enabled": True, "replicas": 2}})


def test_chart_mlflow_on_a_database_stores_artifacts_in_the_bucket_with_the_platforms_credentials(
    render: Render,
) -> None:
    manifests = render(MLFLOW_VALUES)
    assert not [m for m in manifests if m["kind"] == "PersistentVolumeClaim" and "mlflow" in m["metadata"]["name"]]
    deployment = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == MLFLOW_NAME)
    assert deployment["spec"]["replicas"] == 2 and "strategy" not in deployment["spec"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    arguments = flags(container["command"])
    uri = env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]
    assert (uri["name"], uri["key"]) == ("deepfake-mlflow-db", "uri")
    assert arguments["backend-store-uri"] == "$(MLFLOW_BACKEND_STORE_URI)", "Kubernetes expands it from the Secret"
    assert arguments["artifacts-destination"] == "s3://deepfake/experiments/mlflow"
    assert "--serve-artifacts" in container["command"]
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "deepfake-platform-s3", name
    port = container["ports"][0]["containerPort"]
    assert all(container[probe]["httpGet"]["path"] == "/health" for probe in ("startupProbe", "livenessProbe"))
    service = next(m for m in manifests if m["kind"] == "Service" and m["metadata"]["name"] == MLFLOW_NAME)
    assert service["spec"]["ports"][0]["port"] == port
    hosts = arguments["allowed-hosts"].split(",")
    assert {MLFLOW_NAME, f"{MLFLOW_NAME}.{NAMESPACE}.svc*", "mlflow.example.com"} <= set(hosts)


def training_containers(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The containers that run `train` (the torchrun Job's), not the face-cache Job's."""
    return [
        container
        for m in manifests
        if m["kind"] == "Job"
        for container in m["spec"]["template"]["spec"]["containers"]
        if "train" in container.get("args", [])
    ]


def test_retrain_and_training_log_to_the_mlflow_service(render: Render) -> None:
    from deepfake_training.cli import build_parser

    manifests = render(MLFLOW_VALUES)
    service = f"http://{MLFLOW_NAME}.{NAMESPACE}.svc.cluster.local:5000"
    cronjob = next(m for m in manifests if m["kind"] == "CronJob")
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    arguments = build_parser().parse_args(container["args"])
    assert not arguments.no_mlflow and arguments.max_train_frames == 16
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env["DEEPFAKE_TRAIN_MLFLOW_TRACKING_URI"] == service
    (trainer,) = training_containers(manifests)
    assert {"name": "DEEPFAKE_TRAIN_MLFLOW_TRACKING_URI", "value": service} in trainer["env"]
    command = trainer["args"][trainer["args"].index("deepfake_training.cli") + 1 :]
    assert not build_parser().parse_args(command).no_mlflow, "the training Job logs to the server it is given"
    # Without the server, retrain keeps its gate but logs nothing (as before).
    off = render({"retrain": {"enabled": True, "claimName": "deepfake-training"}})
    (plain,) = next(m for m in off if m["kind"] == "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert "--no-mlflow" in plain["args"]
    assert not [e for e in plain["env"] if e["name"] == "DEEPFAKE_TRAIN_MLFLOW_TRACKING_URI"]
    alone = render({**MLFLOW_VALUES, "mlflow": {"enabled": False}})
    (trainer,) = training_containers(alone)
    assert "--no-mlflow" in trainer["args"], "a training Job without the server logs nowhere, and says so"
