"""The Helm chart, rendered and linted offline: valid Kubernetes objects for each configuration, safe pod specs,
autoscaling on queue depth, and the same alert rules as the local Prometheus."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from deepfake_devstack.binaries import REPO_ROOT

from tests.infra.conftest import CHART_DIR, NAMESPACE, PROMETHEUS_DIR, RELEASE, Manifest, Render, production_values

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion is >=1.27; 1.29 is the oldest still in common
# managed offerings) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
WORKER_GROUPS = ("explain", "inference", "preprocess", "webhooks")

# Every example values file of ci/ (one per deployment scenario), and variants of single switches.
EXAMPLE_VALUES = sorted((CHART_DIR / "ci").glob("*.yaml"))
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    **{f"ci/{path.name}": yaml.safe_load(path.read_text()) for path in EXAMPLE_VALUES},
    "keda-off": {"keda": {"enabled": False}},
    "monitoring-off": {"metrics": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}},
    "triton-off": {"triton": {"enabled": False}, "config": {"inferenceBackend": "onnxruntime"}},
    "triton-off-models-from-pvc": {
        "triton": {"enabled": False},
        "config": {"inferenceBackend": "onnxruntime"},
        "workers": {"modelRepository": {"source": "pvc", "claimName": "models"}},
    },
    "models-from-pvc": {"triton": {"modelRepository": {"source": "pvc", "claimName": "models", "subPath": "gpu"}}},
    "models-in-image": {"triton": {"modelRepository": {"source": "image"}}},
    "keda-via-prometheus": {"keda": {"prometheusServerAddress": "http://prometheus.monitoring:9090"}},
    "no-networkpolicy-no-pdb": {"networkPolicy": {"enabled": False}, "gateway": {"pdb": {"enabled": False}}},
    "ingress-rest-only": {"ingress": {"enabled": True, "className": ""}},
    "mlflow-sqlite-training-cpu": {
        "mlflow": {"enabled": True},
        "training": {"claimName": "data", "job": {"enabled": True, "nodes": 1, "gpusPerNode": 0}},
    },
}


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [manifest for manifest in of_kind(manifests, kind) if manifest["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for deployment in of_kind(manifests, "Deployment"):
        yield deployment["metadata"]["name"], deployment["spec"]["template"]["spec"]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- custom resources: kubernetes-validate has no schema for them, so their required fields are checked here ---


def check_scaled_object(resource: Manifest, manifests: list[Manifest]) -> None:
    assert resource["apiVersion"] == "keda.sh/v1alpha1"
    spec = resource["spec"]
    target = spec["scaleTargetRef"]
    named(manifests, target.get("kind", "Deployment"), target["name"])
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"], "a ScaledObject needs at least one trigger"
    for trigger in spec["triggers"]:
        assert trigger["type"] in ("redis", "prometheus")
        metadata = trigger["metadata"]
        assert all(isinstance(value, str) for value in metadata.values()), "KEDA trigger metadata must be strings"
        if trigger["type"] == "redis":
            assert {"address", "listName", "listLength"} <= metadata.keys()
            assert int(metadata["listLength"]) > 0
        else:
            assert {"serverAddress", "query", "threshold"} <= metadata.keys()
        if "authenticationRef" in trigger:
            named(manifests, "TriggerAuthentication", trigger["authenticationRef"]["name"])


def check_trigger_authentication(resource: Manifest, manifests: list[Manifest]) -> None:
    assert resource["apiVersion"] == "keda.sh/v1alpha1"
    for reference in resource["spec"]["secretTargetRef"]:
        assert {"parameter", "name", "key"} <= reference.keys()


def check_service_monitor(resource: Manifest, manifests: list[Manifest]) -> None:
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    spec = resource["spec"]
    services = [
        service
        for service in of_kind(manifests, "Service")
        if labels_match(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    ]
    assert services, f"ServiceMonitor {resource['metadata']['name']} selects no Service"
    assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
    for service in services:
        assert spec["jobLabel"] in service["metadata"]["labels"], "the Service must carry the job label"
        port_names = {port["name"] for port in service["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in port_names
            assert re.fullmatch(r"\d+(ms|s|m)", endpoint["interval"])


def check_prometheus_rule(resource: Manifest, manifests: list[Manifest]) -> None:
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    groups = resource["spec"]["groups"]
    assert groups
    for group in groups:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert ("record" in rule) != ("alert" in rule) and rule["expr"]


CUSTOM_RESOURCE_CHECKS = {
    "ScaledObject": check_scaled_object,
    "TriggerAuthentication": check_trigger_authentication,
    "ServiceMonitor": check_service_monitor,
    "PrometheusRule": check_prometheus_rule,
}


# --- every configuration renders to valid objects ---


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_is_valid(render: Render, configuration: str, kube_version: str) -> None:
    manifests = render(CONFIGURATIONS[configuration])
    assert manifests
    for manifest in manifests:
        kind = manifest["kind"]
        if kind in CUSTOM_RESOURCE_CHECKS:
            CUSTOM_RESOURCE_CHECKS[kind](manifest, manifests)
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            pytest.fail(f"{configuration}: {kind} {manifest['metadata']['name']} at {path}: {error.message}")
        assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_each_deployment_scenario_has_an_example_values_file() -> None:
    """ci/*.yaml are rendered, linted and validated above; each says in its first lines what it shows."""
    assert {path.name for path in EXAMPLE_VALUES} >= {
        "production-values.yaml",  # GPUs, managed Redis and S3, our images
        "cpu-onnxruntime-values.yaml",  # no GPU: onnxruntime in the workers
        "ingress-grpc-values.yaml",  # REST and gRPC behind ingress-nginx
        "retrain-values.yaml",  # the continual-learning CronJob
        "training-values.yaml",  # sharded face caching and multi-node torchrun training
    }
    for path in EXAMPLE_VALUES:
        assert path.read_text().startswith("# "), f"{path.name} does not say what it is for"


def test_the_validator_rejects_a_wrong_field(render: Render) -> None:
    """The check above would be worthless if strict validation let a misspelt field through."""
    deployment = of_kind(render(None), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("configuration", ["defaults", *(f"ci/{path.name}" for path in EXAMPLE_VALUES)])
def test_lint_strict_passes(configuration: str) -> None:
    report = helm_python.lint(
        CHART_DIR, CONFIGURATIONS[configuration], strict=True, kube_version=f"v{KUBE_VERSIONS[-1]}"
    )
    problems = [message for message in report["messages"] if message["severity"] >= 2]
    assert not report["errors"] and not problems, (report["errors"], problems)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"gateway": {"replicaCount": 3}}, "replicaCount"),
        ({"workers": {"groups": {"inference": {"concurency": 4}}}}, "concurency"),
        ({"triton": {"gpus": "one"}}, "gpus"),
        ({"config": {"inferenceBackend": "tensorflow"}}, "inferenceBackend"),
        ({"triton": {"modelRepository": {"source": "pvc"}}}, "claimName"),
        ({"config": {"extraEnv": {"DEEPFAKE_JOB_TIME_LIMIT_S": "5000"}}}, "config.jobTimeLimitSeconds"),
        ({"config": {"jobSoftTimeLimitSeconds": 700}}, "jobSoftTimeLimitSeconds must be below"),
        ({"config": {"jobTimeLimitSeconds": 1200}}, "stallAfterSeconds must exceed"),
        ({"workers": {"groups": {"webhooks": {"enabled": False}}}}, "no enabled worker group consumes"),
        ({"workers": {"terminationGracePeriodSeconds": 30}}, "terminationGracePeriodSeconds"),
        ({"config": {"extraEnv": {"DEEPFAKE_MAX_MEDIA_BYTES": "1"}}}, "config.maxMediaBytes"),
        ({"retrain": {"enabled": True}}, "claimName"),
        ({"training": {"job": {"enabled": True}}}, "training.claimName"),
        ({"training": {"datasets": ["ffpp=/abs/path"]}}, "datasets"),
    ],
)
def test_the_schema_rejects_typos_and_wrong_values(render: Render, values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm_python.HelmError, match=complaint):
        render(values)


def test_every_value_is_documented() -> None:
    """Each value of values.yaml has a comment above it, or sits inside a block whose key has one.

    Section headers (a key whose block holds more keys) need no comment of their own: their keys have them.
    """
    lines = [line for line in (CHART_DIR / "values.yaml").read_text().splitlines() if line.strip()]
    key_pattern = re.compile(r"^(\s*)([A-Za-z0-9_./-]+):(.*)$")
    undocumented = []
    documented_blocks: list[int] = []  # indentation of enclosing keys that carry a comment
    for index, line in enumerate(lines):
        key = key_pattern.match(line)
        if not key:
            continue
        indent, name, inline = len(key.group(1)), key.group(2), key.group(3).split("#")[0].strip()
        documented_blocks = [level for level in documented_blocks if level < indent]
        rest = [later for later in lines[index + 1 :] if not later.lstrip().startswith("#")]
        following = key_pattern.match(rest[0]) if rest else None
        is_section = not inline and following is not None and len(following.group(1)) > indent
        commented = lines[index - 1].lstrip().startswith("#") if index else False
        if commented:
            documented_blocks.append(indent)
        elif not is_section and not documented_blocks:
            undocumented.append(name)
    assert not undocumented, f"values without a comment: {undocumented}"


# --- what the objects say ---


def test_pods_are_locked_down_and_probed(render: Render) -> None:
    manifests = render(production_values())
    for name, spec in pod_specs(manifests):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp_volumes = [volume for volume in spec["volumes"] if volume["name"] == "tmp"]
        assert tmp_volumes and "emptyDir" in tmp_volumes[0], name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"], name
            assert {"livenessProbe", "readinessProbe", "startupProbe"} <= container.keys(), name
            assert container["resources"]["requests"]["memory"], name


def test_each_worker_group_has_its_own_deployment_and_resources(render: Render) -> None:
    manifests = render(production_values())
    deployments = {
        d["metadata"]["labels"].get("deepfake-platform/queue-group"): d for d in of_kind(manifests, "Deployment")
    }
    assert set(WORKER_GROUPS) <= deployments.keys()
    cpu_requests = set()
    for group in WORKER_GROUPS:
        container = deployments[group]["spec"]["template"]["spec"]["containers"][0]
        assert f"--queues={group}" in container["command"]
        assert "replicas" not in deployments[group]["spec"], "the autoscaler owns the worker count"
        env = {variable["name"]: variable for variable in container["env"]}
        assert env["DEEPFAKE_METRICS_PORT"]["value"] == "9100"
        assert env["PROMETHEUS_MULTIPROC_DIR"]["value"].startswith("/tmp/")
        cpu_requests.add(container["resources"]["requests"]["cpu"])
    assert len(cpu_requests) > 1, "queue groups should be sized separately"


def test_keda_scales_each_group_on_every_priority_list_of_its_queue(render: Render) -> None:
    from deepfake_jobs.queues import PRIORITY_SEP, PRIORITY_STEPS

    manifests = render(None)
    scaled = {s["metadata"]["labels"]["deepfake-platform/queue-group"]: s for s in of_kind(manifests, "ScaledObject")}
    assert set(scaled) == set(WORKER_GROUPS)
    assert not of_kind(manifests, "HorizontalPodAutoscaler") or all(
        hpa["spec"]["scaleTargetRef"]["name"] not in {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()}
        for hpa in of_kind(manifests, "HorizontalPodAutoscaler")
    ), "a worker Deployment must not have both a ScaledObject and an HPA"
    for group, resource in scaled.items():
        lists = [trigger["metadata"]["listName"] for trigger in resource["spec"]["triggers"]]
        expected = [group] + [f"{group}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS[1:]]
        assert lists == expected


def worker_settings_of(manifests: list[Manifest]):  # noqa: ANN201 - deepfake_worker's settings
    """The settings a worker builds from the chart's ConfigMap (with stand-ins for the secrets)."""
    from deepfake_worker.settings import WorkerSettings

    data = of_kind(manifests, "ConfigMap")[0]["data"]
    fields = {name.removeprefix("DEEPFAKE_").lower(): value for name, value in data.items()}
    return WorkerSettings(**{**fields, "s3_secret_key": "x" * 16, "webhook_signing_key": "y" * 16})


@pytest.mark.parametrize(
    "values",
    [None, production_values(), {"config": {"jobSoftTimeLimitSeconds": 1700, "jobTimeLimitSeconds": 1800,
                                            "stallAfterSeconds": 2400}}],
    ids=["defaults", "production", "long-stages"],
)  # fmt: skip
def test_autoscaling_never_kills_a_busy_worker(render: Render, values: dict[str, Any] | None) -> None:
    """A worker being scaled down finishes its task: its grace period outlasts Celery's hard time limit (as the
    workers read it), and the autoscalers keep replicas that long after the queues last asked for them."""
    manifests = render(values)
    hard_limit = worker_settings_of(manifests).job_time_limit_s
    workers = [
        d for d in of_kind(manifests, "Deployment") if "deepfake-platform/queue-group" in d["metadata"]["labels"]
    ]
    assert workers
    for deployment in workers:
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > hard_limit
    for scaled in of_kind(manifests, "ScaledObject"):
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= hard_limit
        assert scaled["spec"]["cooldownPeriod"] >= hard_limit, "scaling to zero waits as long as a task may run"
    for hpa in of_kind(render({**(values or {}), "keda": {"enabled": False}}), "HorizontalPodAutoscaler"):
        if "worker" in hpa["metadata"]["name"]:
            assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= hard_limit


def test_the_queue_of_beats_tasks_is_never_scaled_to_zero(render: Render) -> None:
    """Beat sends the stalled-job sweep every minute to the webhooks queue: its workers must stay up."""
    from deepfake_jobs.queues import TASK_RESUME_STALLED, TASK_RETENTION, task_routes

    to_zero = {"workers": {"groups": {group: {"autoscaling": {"minReplicas": 0}} for group in WORKER_GROUPS}}}
    manifests = render(to_zero)
    settings = worker_settings_of(manifests)
    beat_queues = {task_routes(settings)[task]["queue"] for task in (TASK_RETENTION, TASK_RESUME_STALLED)}
    assert beat_queues == {"webhooks"}
    minimum = {s["metadata"]["labels"]["deepfake-platform/queue-group"]: s["spec"]["minReplicaCount"]
               for s in of_kind(manifests, "ScaledObject")}  # fmt: skip
    assert minimum == {"preprocess": 0, "inference": 0, "explain": 0, "webhooks": 1}
    without_beat = render({**to_zero, "beat": {"enabled": False}})
    assert all(s["spec"]["minReplicaCount"] == 0 for s in of_kind(without_beat, "ScaledObject"))
    assert production_values()["workers"]["groups"]["webhooks"]["autoscaling"]["minReplicas"] == 0
    production = named(render(production_values()), "ScaledObject", "deepfake-worker-webhooks")
    assert production["spec"]["minReplicaCount"] == 1


@pytest.mark.usefixtures("system_programs")
def test_keda_via_prometheus_counts_waiting_and_running_tasks(render: Render, tmp_path: Path) -> None:
    """The prometheus trigger's query, run by promtool over the real recording rules: tasks waiting in the group's
    queues plus its stage executions in progress; 0 (not nothing) for a group without series."""
    from deepfake_devstack import promtool

    queries = {}
    for scaled in of_kind(render(CONFIGURATIONS["keda-via-prometheus"]), "ScaledObject"):
        (trigger,) = scaled["spec"]["triggers"]
        queries[scaled["metadata"]["labels"]["deepfake-platform/queue-group"]] = trigger["metadata"]["query"]
    assert set(queries) == set(WORKER_GROUPS)
    rules = tmp_path / "keda.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "keda", "rules": [
        {"record": f"keda:{group}:desired", "expr": query} for group, query in queries.items()]}]}))  # fmt: skip
    test = {
        "rule_files": [str(PROMETHEUS_DIR / "rules" / "recording.yml"), str(rules)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'deepfake_queue_depth{queue="preprocess", instance="w"}', "values": "5x10"},
                {"series": 'deepfake_queue_depth{queue="inference", instance="w"}', "values": "9x10"},
                {"series": 'deepfake_stage_duration_seconds_sum{stage="preprocess", queue_group="preprocess"}',
                 "values": "0+120x10"},
            ],
            "promql_expr_test": [
                {"expr": "keda:preprocess:desired", "eval_time": "10m",
                 "exp_samples": [{"labels": "keda:preprocess:desired", "value": 7}]},
                {"expr": "keda:inference:desired", "eval_time": "10m",
                 "exp_samples": [{"labels": "keda:inference:desired", "value": 9}]},
                {"expr": "keda:explain:desired", "eval_time": "10m",
                 "exp_samples": [{"labels": "keda:explain:desired", "value": 0}]},
            ],
        }],
    }  # fmt: skip
    test_file = tmp_path / "keda_test.yml"
    test_file.write_text(yaml.safe_dump(test))
    assert "SUCCESS" in promtool.test_rules([test_file])


def test_keda_off_falls_back_to_a_cpu_hpa_per_worker_group(render: Render) -> None:
    manifests = render({"keda": {"enabled": False}})
    assert not of_kind(manifests, "ScaledObject")
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in of_kind(manifests, "HorizontalPodAutoscaler")}
    for group in WORKER_GROUPS:
        assert f"{RELEASE}-deepfake-platform-worker-{group}" in targets


def test_redis_password_reaches_keda_and_the_services_from_the_secret(render: Render) -> None:
    manifests = render(production_values())
    authentication = named(manifests, "TriggerAuthentication", "deepfake-redis")
    assert authentication["spec"]["secretTargetRef"][0]["name"] == "deepfake-redis"
    gateway = named(manifests, "Deployment", "deepfake-gateway")["spec"]["template"]["spec"]["containers"][0]
    env = {variable["name"]: variable for variable in gateway["env"]}
    assert env["DEEPFAKE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "deepfake-redis"
    assert env["DEEPFAKE_REDIS_URL"]["value"].startswith("rediss://:$(DEEPFAKE_REDIS_PASSWORD)@")
    names = [variable["name"] for variable in gateway["env"]]
    assert names.index("DEEPFAKE_REDIS_PASSWORD") < names.index("DEEPFAKE_REDIS_URL"), "defined before use"
    configmap = of_kind(manifests, "ConfigMap")[0]
    assert not any("secret" in key.lower() or "password" in key.lower() for key in configmap["data"])


def test_triton_runs_on_a_gpu_with_health_probes_and_metrics(render: Render) -> None:
    manifests = render(None)
    deployment = named(manifests, "Deployment", f"{RELEASE}-deepfake-platform-triton")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    service = named(manifests, "Service", f"{RELEASE}-deepfake-platform-triton")
    assert {"name": "metrics", "port": 8002, "targetPort": "metrics", "protocol": "TCP"} in service["spec"]["ports"]
    hpa = named(manifests, "HorizontalPodAutoscaler", f"{RELEASE}-deepfake-platform-triton")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "triton_queue_time_microseconds"
    assert "command" not in container, "NVIDIA's entrypoint must run: the chart passes args only"
    assert container["args"][0] == "tritonserver"


def test_workers_reach_every_triton_pod_through_the_headless_service(render: Render) -> None:
    """gRPC keeps one HTTP/2 connection per channel: behind a ClusterIP it would pin each worker process to one
    Triton pod for good. dns:/// over a headless Service lets gRPC see (and re-resolve) the ready pods."""
    manifests = render(None)
    headless = named(manifests, "Service", f"{RELEASE}-deepfake-platform-triton-headless")
    deployment = named(manifests, "Deployment", f"{RELEASE}-deepfake-platform-triton")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is False
    assert labels_match(headless["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert [port["name"] for port in headless["spec"]["ports"]] == ["grpc"]
    assert "deepfake-platform/scrape-job" not in headless["metadata"]["labels"], "scraped once, through the other"
    configmap = of_kind(manifests, "ConfigMap")[0]
    fqdn = f"{RELEASE}-deepfake-platform-triton-headless.{NAMESPACE}.svc.cluster.local"
    assert configmap["data"]["DEEPFAKE_TRITON_URL"] == f"dns:///{fqdn}:8001"

    through_service = render({"triton": {"clientLoadBalancing": "service"}, "clusterDomain": "corp.local"})
    assert not [s for s in of_kind(through_service, "Service") if s["metadata"]["name"].endswith("-headless")]
    url = of_kind(through_service, "ConfigMap")[0]["data"]["DEEPFAKE_TRITON_URL"]
    assert url == f"{RELEASE}-deepfake-platform-triton:8001"


def engine_cache_path() -> str:
    """Where the gpu variant's TensorRT accelerator writes engines (its config.pbtxt, generated from the model)."""
    config = (REPO_ROOT / "model_repository" / "gpu" / "deepfake_detector" / "config.pbtxt").read_text()
    match = re.search(r'key: "trt_engine_cache_path" value: "([^"]+)"', config)
    assert match, "the gpu variant no longer names a TensorRT engine cache path"
    return match.group(1)


def triton_cache_volume(manifests: list[Manifest]) -> dict[str, Any]:
    spec = named(manifests, "Deployment", f"{RELEASE}-deepfake-platform-triton")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = [m for m in container["volumeMounts"] if (engine_cache_path() + "/").startswith(m["mountPath"] + "/")]
    assert len(mounts) == 1, f"nothing writable is mounted at {engine_cache_path()}"
    assert not mounts[0].get("readOnly")
    return next(volume for volume in spec["volumes"] if volume["name"] == mounts[0]["name"])


def test_triton_can_write_its_tensorrt_engine_cache(render: Render) -> None:
    assert "emptyDir" in triton_cache_volume(render(None))

    persistent = render({"triton": {"engineCache": {"persistence": {"enabled": True}}}})
    claim = named(persistent, "PersistentVolumeClaim", f"{RELEASE}-deepfake-platform-triton-engine-cache")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "shared by every Triton replica"
    assert triton_cache_volume(persistent)["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]

    existing = render({"triton": {"engineCache": {"persistence": {"enabled": True, "existingClaim": "engines"}}}})
    assert not of_kind(existing, "PersistentVolumeClaim")
    assert triton_cache_volume(existing)["persistentVolumeClaim"]["claimName"] == "engines"


@pytest.mark.parametrize(
    ("values", "repository"),
    [
        ({}, "s3://minio:9000/deepfake/model_repository/gpu"),
        (
            {"s3": {"endpoint": "https://minio.example.com"}},
            "s3://https://minio.example.com:443/deepfake/model_repository/gpu",
        ),
        (production_values(), "s3://acme-deepfake-models/releases/1.4.2/model_repository/gpu"),
        ({"triton": {"modelRepository": {"source": "image"}}}, "/models"),
        ({"triton": {"modelRepository": {"source": "pvc", "claimName": "models"}}}, "/models"),
    ],
)
def test_triton_model_repository_source(render: Render, values: dict[str, Any], repository: str) -> None:
    deployments = [d for d in of_kind(render(values), "Deployment") if d["metadata"]["name"].endswith("-triton")]
    spec = deployments[0]["spec"]["template"]["spec"]
    assert f"--model-repository={repository}" in spec["containers"][0]["args"]
    claims = [
        volume["persistentVolumeClaim"]["claimName"] for volume in spec["volumes"] if "persistentVolumeClaim" in volume
    ]
    assert claims == (["models"] if values.get("triton", {}).get("modelRepository", {}).get("source") == "pvc" else [])


def cpu_values() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "ci" / "cpu-onnxruntime-values.yaml").read_text())


def test_cpu_only_workers_fetch_the_model_they_run(render: Render) -> None:
    """With onnxruntime the pipeline workers load the model file themselves: an init container copies one version
    from S3 into the pod (files/fetch-model.py, tested in test_fetch_model.py), where the worker looks for it."""
    manifests = render(cpu_values())
    assert not [m for m in manifests if m["metadata"]["name"].endswith(("-triton", "-triton-headless"))]
    assert "DEEPFAKE_TRITON_URL" not in of_kind(manifests, "ConfigMap")[0]["data"]
    script = named(manifests, "ConfigMap", f"{RELEASE}-deepfake-platform-fetch-model")
    assert script["data"]["fetch-model.py"] == (CHART_DIR / "files" / "fetch-model.py").read_text()
    for group in ("preprocess", "inference", "explain"):
        spec = named(manifests, "Deployment", f"{RELEASE}-deepfake-platform-worker-{group}")["spec"]["template"]["spec"]
        init = spec["initContainers"][0]
        assert init["image"] == spec["containers"][0]["image"] and init["command"][-1].endswith("fetch-model.py")
        init_env = {variable["name"]: variable.get("value") for variable in init["env"]}
        assert init_env["DEEPFAKE_MODEL_BUCKET"] == "deepfake" and init_env["DEEPFAKE_MODEL_REPOSITORY"] == "/models"
        env = {variable["name"]: variable.get("value") for variable in spec["containers"][0]["env"]}
        assert env["DEEPFAKE_MODEL_REPOSITORY"] == "/models"
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models")
        assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    webhooks = named(manifests, "Deployment", f"{RELEASE}-deepfake-platform-worker-webhooks")["spec"]["template"]
    assert "initContainers" not in webhooks["spec"], "the webhooks group never loads the model"
    for deployment in of_kind(render(None), "Deployment"):
        assert "initContainers" not in deployment["spec"]["template"]["spec"], "with Triton no worker needs the file"


def test_cpu_only_workers_can_read_the_model_from_a_volume(render: Render) -> None:
    values = cpu_values()
    values["workers"]["modelRepository"] = {"source": "pvc", "claimName": "models", "subPath": "gpu", "version": "3"}
    manifests = render(values)
    spec = named(manifests, "Deployment", f"{RELEASE}-deepfake-platform-worker-inference")["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    volume = next(v for v in spec["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    env = {variable["name"]: variable.get("value") for variable in spec["containers"][0]["env"]}
    assert env["DEEPFAKE_MODEL_PATH"] == "/models/deepfake_detector/3/model.onnx", "a pinned version (rollback)"


def test_a_new_model_location_rolls_the_workers(render: Render) -> None:
    """Workers read the served model's metadata once: moving to a new model release must restart them."""

    def checksum(values: dict[str, Any] | None) -> str:
        deployment = named(render(values), "Deployment", f"{RELEASE}-deepfake-platform-worker-inference")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/model"]

    assert checksum(None) != checksum({"triton": {"modelRepository": {"prefix": "releases/2/model_repository/gpu"}}})
    assert checksum(None) != checksum({"workers": {"modelRepository": {"version": "4"}}})


def nginx_size_bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", size.lower()).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


@pytest.mark.parametrize("max_media_bytes", [512 * 1024**2, 2 * 1024**3 + 1])
def test_the_ingress_takes_the_largest_upload_and_grpc(render: Render, max_media_bytes: int) -> None:
    from deepfake_core.settings import CoreSettings
    from deepfake_gateway.settings import GatewaySettings

    values = yaml.safe_load((CHART_DIR / "ci" / "ingress-grpc-values.yaml").read_text())
    values["config"]["maxMediaBytes"] = max_media_bytes
    manifests = render(values)
    data = of_kind(manifests, "ConfigMap")[0]["data"]
    assert GatewaySettings(max_media_bytes=data["DEEPFAKE_MAX_MEDIA_BYTES"]).max_media_bytes == max_media_bytes
    assert CoreSettings(max_file_bytes=data["DEEPFAKE_MAX_FILE_BYTES"]).max_file_bytes == max_media_bytes
    service = named(manifests, "Service", f"{RELEASE}-deepfake-platform-gateway")
    ports = {port["name"]: port for port in service["spec"]["ports"]}

    rest = named(manifests, "Ingress", f"{RELEASE}-deepfake-platform-gateway")
    annotations = rest["metadata"]["annotations"]
    body_limit = nginx_size_bytes(annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    assert max_media_bytes + 64 * 1024 <= body_limit <= max_media_bytes + 2 * 1024**2, "the file and its envelope"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off", "uploads stream through"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 30, "long-polls wait up to 30 s"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    backend = rest["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}

    grpc = named(manifests, "Ingress", f"{RELEASE}-deepfake-platform-gateway-grpc")
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert grpc["spec"]["tls"][0]["hosts"] == ["grpc.deepfake.example.com"], "gRPC through ingress-nginx needs TLS"
    backend = grpc["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["port"] == {"name": "grpc"} and ports["grpc"]["appProtocol"] == "grpc"


def test_other_ingress_controllers_get_only_their_own_annotations(render: Render) -> None:
    manifests = render({"ingress": {"enabled": True, "className": "traefik", "annotations": {"a": "b"}}})
    (ingress,) = of_kind(manifests, "Ingress")
    assert ingress["metadata"]["annotations"] == {"a": "b"}
    assert not of_kind(render(None), "Ingress"), "off by default"


def test_the_retrain_cronjob_is_off_by_default_and_runs_deepfake_train_retrain(render: Render) -> None:
    from deepfake_training.cli import build_parser

    from tests.infra.dockerfile import DOCKER_DIR, instructions

    assert not of_kind(render(None), "CronJob")
    cronjob = named(render(CONFIGURATIONS["ci/retrain-values.yaml"]), "CronJob", f"{RELEASE}-deepfake-platform-retrain")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid", "never two trainings on one volume"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    entrypoint = next(
        i.arguments for i in instructions(DOCKER_DIR / "Dockerfile.training") if i.keyword == "ENTRYPOINT"
    )
    assert entrypoint == '["deepfake-train"]' and "command" not in container, "the image's entrypoint runs the args"
    arguments = build_parser().parse_args(container["args"])  # the real CLI accepts them
    assert container["args"][0] == "retrain" and arguments.no_mlflow
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    data = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    for path in (arguments.run, arguments.new_fakes, arguments.repository, env["DEEPFAKE_TRAIN_CACHE_ROOT"]):
        assert str(path).startswith(f"{data}/"), f"{path} is not on the training volume"
    volume = next(v for v in pod["volumes"] if v["name"] == "data")
    assert volume["persistentVolumeClaim"]["claimName"] == "deepfake-training"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["securityContext"]["runAsUser"] == 10001, "the training image's user"


def test_training_jobs_are_off_by_default_and_run_sharded_caching_then_torchrun(render: Render) -> None:
    assert not [job for job in of_kind(render(None), "Job") if "training" in job["metadata"]["name"]]
    manifests = render(CONFIGURATIONS["ci/training-values.yaml"])
    name = f"{RELEASE}-deepfake-platform-training"
    cache = named(manifests, "Job", f"{name}-cache")["spec"]
    assert (cache["completionMode"], cache["completions"], cache["parallelism"]) == ("Indexed", 16, 8)
    shard_container = cache["template"]["spec"]["containers"][0]
    assert shard_container["args"][0] == "cache" and "--shard=$(SHARD_INDEX)/16" in shard_container["args"]
    assert "--dataset=dfdc=/data/datasets/dfdc" in shard_container["args"]
    index_env = next(e for e in shard_container["env"] if e["name"] == "SHARD_INDEX")
    assert "job-completion-index" in index_env["valueFrom"]["fieldRef"]["fieldPath"]

    job = named(manifests, "Job", name)["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 2, 2)
    pod = job["template"]["spec"]
    assert pod["subdomain"] == name and pod["initContainers"][0]["args"][0] == "cache-merge"
    train = pod["containers"][0]
    assert train["command"] == ["python", "-m", "torch.distributed.run"]
    expected = ["--nproc_per_node=8", "--nnodes=2", "--node_rank=$(NODE_RANK)", f"--master_addr={name}-0.{name}",
                "train", "--install", "--set=batch_norm=sync",
                "--init=imagenet=/data/weights/resnext50_32x4d.pth"]  # fmt: skip
    for argument in expected:
        assert argument in train["args"], argument
    assert train["resources"]["limits"]["nvidia.com/gpu"] == 8
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory" and volumes["data"]["persistentVolumeClaim"]
    service = named(manifests, "Service", name)["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    assert labels_match(service["selector"], pod_labels := job["template"]["metadata"]["labels"]) and pod_labels

    single = render({"training": {"claimName": "data", "job": {"enabled": True, "nodes": 1, "gpusPerNode": 0}}})
    one_pod = named(single, "Job", name)["spec"]["template"]["spec"]
    assert "--standalone" in one_pod["containers"][0]["args"] and "--set=device=cpu" in one_pod["containers"][0]["args"]
    assert "initContainers" not in one_pod and not [
        s for s in of_kind(single, "Service") if s["metadata"]["name"] == name
    ]


def test_workers_reach_the_internet_but_not_private_ranges(render: Render) -> None:
    manifests = render(None)
    policy = named(manifests, "NetworkPolicy", f"{RELEASE}-deepfake-platform-worker")
    egress = policy["spec"]["egress"]
    internet = [rule for rule in egress if any("ipBlock" in peer for peer in rule.get("to", []))]
    assert len(internet) == 1
    blocks = {peer["ipBlock"]["cidr"]: set(peer["ipBlock"]["except"]) for peer in internet[0]["to"]}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= blocks["0.0.0.0/0"]
    assert {"fc00::/7", "fe80::/10"} <= blocks["::/0"]
    assert {port["port"] for port in internet[0]["ports"]} == {80, 443}
    platform = {"app.kubernetes.io/name": "deepfake-platform", "app.kubernetes.io/instance": RELEASE}
    assert any(peer.get("podSelector", {}).get("matchLabels") == platform for rule in egress for peer in rule["to"])
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": "metrics"}]


def test_training_side_network_policies_select_their_pods_and_ports(render: Render) -> None:
    """MLflow: in from the training Job and the retrain CronJob only, on its HTTP port; out to DNS, the object store
    and (runs in a database) Postgres. Training pods: each other on any port, MLflow on its port. Cache shards: out
    to DNS and the object store only."""
    prefix = f"{RELEASE}-deepfake-platform"

    def selects(policy: Manifest, labels: dict[str, str]) -> bool:
        return labels_match(policy["spec"]["podSelector"]["matchLabels"], labels)

    def peer_labels(rule: dict[str, Any]) -> list[dict[str, str]]:
        return [peer["podSelector"]["matchLabels"] for peer in rule.get("to", rule.get("from", []))
                if "podSelector" in peer]  # fmt: skip

    manifests = render(CONFIGURATIONS["ci/mlflow-values.yaml"])
    training_pod = named(manifests, "Job", f"{prefix}-training")["spec"]["template"]["metadata"]["labels"]
    retrain_pod = named(manifests, "CronJob", f"{prefix}-retrain")["spec"]["jobTemplate"]["spec"]["template"][
        "metadata"
    ]["labels"]
    mlflow_deployment = named(manifests, "Deployment", f"{prefix}-mlflow")["spec"]["template"]
    others = [spec["template"]["metadata"]["labels"] for spec in (d["spec"] for d in of_kind(manifests, "Deployment"))
              if spec["template"] is not mlflow_deployment]  # fmt: skip
    mlflow = named(manifests, "NetworkPolicy", f"{prefix}-mlflow")
    assert selects(mlflow, mlflow_deployment["metadata"]["labels"])
    assert not any(selects(mlflow, labels) for labels in [training_pod, retrain_pod, *others])
    [ingress] = mlflow["spec"]["ingress"]
    allowed = peer_labels(ingress)
    assert any(labels_match(peer, training_pod) for peer in allowed)
    assert any(labels_match(peer, retrain_pod) for peer in allowed)
    assert not any(labels_match(peer, labels) for peer in allowed for labels in others)  # gateway, workers, Triton
    assert ingress["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert mlflow_deployment["spec"]["containers"][0]["ports"][0]["name"] == "http"
    egress = mlflow["spec"]["egress"]
    assert {port["port"] for rule in egress for port in rule.get("ports", [])} == {53, 5432}
    assert {"app.kubernetes.io/name": "minio"} in [p for rule in egress for p in peer_labels(rule)]

    training = named(manifests, "NetworkPolicy", f"{prefix}-training")
    assert selects(training, training_pod) and not any(selects(training, labels) for labels in [retrain_pod, *others])
    [from_ranks] = training["spec"]["ingress"]
    assert "ports" not in from_ranks and all(labels_match(peer, training_pod) for peer in peer_labels(from_ranks))
    mlflow_pod = mlflow_deployment["metadata"]["labels"]
    to_mlflow = [rule for rule in training["spec"]["egress"]
                 if any(labels_match(peer, mlflow_pod) for peer in peer_labels(rule))]  # fmt: skip
    assert [rule["ports"] for rule in to_mlflow] == [[{"protocol": "TCP", "port": 5000}]]
    assert any("ports" not in rule and any(labels_match(p, training_pod) for p in peer_labels(rule))
               for rule in training["spec"]["egress"])  # fmt: skip

    sqlite = render(CONFIGURATIONS["mlflow-sqlite-training-cpu"])
    sqlite_egress = named(sqlite, "NetworkPolicy", f"{prefix}-mlflow")["spec"]["egress"]
    assert {port["port"] for rule in sqlite_egress for port in rule.get("ports", [])} == {53}  # no database

    sharded = render(CONFIGURATIONS["ci/training-values.yaml"])
    cache_pod = named(sharded, "Job", f"{prefix}-training-cache")["spec"]["template"]["metadata"]["labels"]
    cache = named(sharded, "NetworkPolicy", f"{prefix}-training-cache")
    assert selects(cache, cache_pod) and cache["spec"]["ingress"] == []
    assert not [p for p in of_kind(sharded, "NetworkPolicy") if p["metadata"]["name"] == f"{prefix}-mlflow"]
    sharded_training = named(sharded, "NetworkPolicy", f"{prefix}-training")["spec"]["egress"]
    assert not [rule for rule in sharded_training if any(p.get("port") == 5000 for p in rule.get("ports", []))]
    off = render({**CONFIGURATIONS["ci/mlflow-values.yaml"], "networkPolicy": {"enabled": False}})
    assert not of_kind(off, "NetworkPolicy")


def test_training_side_policies_take_the_operators_extra_egress(render: Render) -> None:
    """A dataset bucket outside the cluster (training Job and cache pods) and an artifact store (MLflow)."""
    prefix = f"{RELEASE}-deepfake-platform"
    bucket = {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    store = {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"protocol": "TCP", "port": 9000}]}
    values = {**CONFIGURATIONS["ci/mlflow-values.yaml"], "training": {**CONFIGURATIONS["ci/mlflow-values.yaml"]
              ["training"], "cache": {"enabled": True, "shards": 2}}}  # fmt: skip
    policy = {"enabled": True, "trainingExtraEgress": [bucket], "mlflowExtraEgress": [store]}
    manifests = render({**values, "networkPolicy": policy})
    egress = {name: named(manifests, "NetworkPolicy", f"{prefix}-{name}")["spec"]["egress"]
              for name in ("training", "training-cache", "mlflow")}  # fmt: skip
    assert bucket in egress["training"] and bucket in egress["training-cache"] and bucket not in egress["mlflow"]
    assert store in egress["mlflow"] and store not in egress["training"]
    plain = render(values)
    assert bucket not in named(plain, "NetworkPolicy", f"{prefix}-training")["spec"]["egress"]


def test_monitoring_toggles(render: Render) -> None:
    kinds = {manifest["kind"] for manifest in render(CONFIGURATIONS["monitoring-off"])}
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds
    monitors = of_kind(render(None), "ServiceMonitor")
    assert {monitor["metadata"]["labels"]["app.kubernetes.io/component"] for monitor in monitors} == {
        "gateway",
        "worker",
        "triton",
    }


def test_prometheus_rule_carries_the_local_rule_files_unchanged(render: Render) -> None:
    rule = of_kind(render(None), "PrometheusRule")[0]
    expected = []
    for name in ("recording.yml", "alerts.yml"):
        expected += yaml.safe_load((PROMETHEUS_DIR / "rules" / name).read_text())["groups"]
    assert rule["spec"]["groups"] == expected


def test_scrape_job_labels_match_the_rules(render: Render) -> None:
    """The rules select job="triton", "deepfake-gateway" and "deepfake-worker": the Services must give those names."""
    jobs = {
        service["metadata"]["labels"]["deepfake-platform/scrape-job"]
        for service in of_kind(render(None), "Service")
        if "deepfake-platform/scrape-job" in service["metadata"]["labels"]
    }
    assert jobs == {"deepfake-gateway", "deepfake-worker", "triton"}
    rules_text = (PROMETHEUS_DIR / "rules" / "alerts.yml").read_text()
    for job in jobs:
        assert job in rules_text


def test_credentials_come_only_from_existing_secrets(render: Render) -> None:
    manifests = render(production_values())
    assert not of_kind(manifests, "Secret"), "the chart never holds credentials"
    gateway = named(manifests, "Deployment", "deepfake-gateway")["spec"]["template"]["spec"]
    env = {variable["name"]: variable for variable in gateway["containers"][0]["env"]}
    assert env["DEEPFAKE_WEBHOOK_SIGNING_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "deepfake-auth"
    assert env["DEEPFAKE_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "deepfake-s3"
    tenants = next(volume for volume in gateway["volumes"] if volume["name"] == "tenants")
    assert tenants["secret"]["secretName"] == "deepfake-auth"
    mount = next(m for m in gateway["containers"][0]["volumeMounts"] if m["name"] == "tenants")
    assert env["DEEPFAKE_TENANTS_FILE"]["value"] == f"{mount['mountPath']}/{tenants['secret']['items'][0]['path']}"
