"""What the service images install is enough to run them as the chart configures them.

Without a Docker engine, each image's Python environment is rebuilt by replaying its Dockerfile's build stage
(tests/infra/image_env.py: the same pip command, the same copied sources); then tests/infra/image_probe.py runs
in that environment, with the settings the chart gives the pods, and loads what the image's command loads:
the Celery app and its task modules, the broker transport, the inference backend the settings name
(tritonclient for Triton), the face models; the gateway's app, gRPC server and readiness checks. A package that
only the development environment has fails here.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deepfake_devstack.ports import LOOPBACK, free_port

from tests.infra.conftest import CHART_DIR, Manifest, Render
from tests.infra.dockerfile import instructions
from tests.infra.image_env import (
    IMAGES,
    ImageEnv,
    SessionImageEnvs,
    close_session_image_envs,
    images_used_by,
    python_minor_of,
    runs_this_python,
    session_image_envs,
)

PROBE = Path(__file__).with_name("image_probe.py")
# The chart configurations whose settings the images must load: the defaults (Triton) and CPU-only (onnxruntime).
CONFIGURATIONS = {"defaults": None, "cpu-onnxruntime": CHART_DIR / "ci" / "cpu-onnxruntime-values.yaml"}
PROBE_TIMEOUT_S = 300
# Model code the gateway never runs (inference is the workers'): its image must not carry any of it.
MODEL_CODE = ("cv2", "dlib", "onnxruntime", "av", "torch", "deepfake_worker")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def image_envs(request: pytest.FixtureRequest) -> Iterator[SessionImageEnvs]:
    """Each image environment built once per session, every image the selected tests use side by side (started
    in the background once collection is done: tests/infra/conftest.py)."""
    envs = session_image_envs()
    needed = {name for item in request.session.items for name in images_used_by(item)}
    envs.start(name for name in needed if runs_this_python(name))
    try:
        yield envs
    finally:
        close_session_image_envs()


@pytest.fixture(scope="module", params=sorted(IMAGES))
def image(request: pytest.FixtureRequest, image_envs: SessionImageEnvs) -> tuple[str, ImageEnv]:
    dockerfile = IMAGES[request.param]
    if not runs_this_python(request.param):
        wanted = python_minor_of(dockerfile)
        pytest.skip(f"{dockerfile.name} runs Python {wanted}; this interpreter cannot stand in for it")
    return request.param, image_envs.get(request.param)


def pod_environment(manifests: list[Manifest], component: str) -> dict[str, str]:
    """The DEEPFAKE_* settings a pod of `component` gets (for workers, the inference group's): the ConfigMap, then
    its plain env values.

    Secrets get stand-ins that are not placeholders (production refuses those); hosts are pointed at closed
    local ports so that nothing waits on DNS; the Triton URL keeps its form (dns:///host:port).
    """
    configmap = next(m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"].endswith("-config"))
    environment = dict(configmap["data"])
    deployment = next(
        m
        for m in manifests
        if m["kind"] == "Deployment"
        and m["metadata"]["labels"]["app.kubernetes.io/component"] == component
        and m["metadata"]["labels"].get("deepfake-platform/queue-group", "inference") == "inference"
    )
    for variable in deployment["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
    closed = f"{LOOPBACK}:{free_port()}"
    environment.update(
        DEEPFAKE_REDIS_URL=f"redis://{closed}/0",
        DEEPFAKE_S3_ENDPOINT=f"http://{closed}",
        DEEPFAKE_S3_ACCESS_KEY="image-probe",
        DEEPFAKE_S3_SECRET_KEY="image-probe-secret-key",
        DEEPFAKE_WEBHOOK_SIGNING_KEY="image-probe-signing-key",
    )
    if "DEEPFAKE_TRITON_URL" in environment:
        scheme = "dns:///" if environment["DEEPFAKE_TRITON_URL"].startswith("dns:///") else ""
        environment["DEEPFAKE_TRITON_URL"] = f"{scheme}{closed}"
    return environment


def run_probe(image: ImageEnv, name: str, settings: dict[str, str], tmp_path: Path, *extra: str) -> dict[str, Any]:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("tenants: []\n")
    (tmp_path / "prometheus-multiproc").mkdir(exist_ok=True)
    # The image's ENV, then the pod's; paths the pod finds in its own /tmp and Secret volume are local here.
    environment = {
        **image.runtime_env,
        **settings,
        "HOME": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus-multiproc"),
        "DEEPFAKE_TENANTS_FILE": str(tenants),
    }
    completed = subprocess.run(
        [str(image.python), "-I", str(PROBE), name, *extra],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def chart_settings(render: Render, configuration: str, component: str) -> dict[str, str]:
    path = CONFIGURATIONS[configuration]
    values = yaml.safe_load(path.read_text()) if path else None
    return pod_environment(render(values), component)


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_the_image_loads_what_its_configuration_needs(
    image: tuple[str, ImageEnv], configuration: str, render: Render, tmp_path: Path
) -> None:
    name, env = image
    settings = chart_settings(render, configuration, name)
    report = run_probe(env, name, settings, tmp_path)
    assert report["steps"], report
    assert not report["failures"], f"{name} image with the chart's {configuration} settings: {report['failures']}"


def test_the_default_configuration_uses_triton(render: Render) -> None:
    """The configuration the test above calls "defaults" is the one that needs tritonclient."""
    assert chart_settings(render, "defaults", "worker")["DEEPFAKE_INFERENCE_BACKEND"] == "triton"
    assert chart_settings(render, "cpu-onnxruntime", "worker")["DEEPFAKE_INFERENCE_BACKEND"] == "onnxruntime"


def test_the_probe_notices_a_missing_package(image: tuple[str, ImageEnv], render: Render, tmp_path: Path) -> None:
    """With tritonclient taken away, the default (Triton) configuration must fail: the probe would not miss it."""
    name, env = image
    settings = chart_settings(render, "defaults", name)
    report = run_probe(env, name, settings, tmp_path, "--block", "tritonclient")
    assert any("tritonclient" in failure for failure in report["failures"]), report


def test_the_gateway_image_installs_no_model_code(image_envs: SessionImageEnvs) -> None:
    """The gateway depends on deepfake-core without its `detect` extra and not on the worker: no OpenCV, dlib,
    onnxruntime, PyAV or torch in its image."""
    if not runs_this_python("gateway"):
        pytest.skip("another Python")
    env = image_envs.get("gateway")
    find = "import importlib.util as u, json, sys; print(json.dumps([n for n in sys.argv[1:] if u.find_spec(n)]))"
    completed = subprocess.run(
        [str(env.python), "-I", "-c", find, *MODEL_CODE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert json.loads(completed.stdout) == [], f"the gateway image installs model code: {completed.stdout.strip()}"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_command_is_installed_in_the_image(name: str, image_envs: SessionImageEnvs) -> None:
    """CMD names a program of the image's virtualenv (celery, uvicorn), which the replayed build must provide."""
    dockerfile = IMAGES[name]
    command = next(i.arguments for i in reversed(instructions(dockerfile)) if i.keyword == "CMD")
    program = json.loads(command)[0] if command.startswith("[") else shlex.split(command)[0]
    if not runs_this_python(name):
        pytest.skip("another Python")
    assert image_envs.get(name).has_program(program), f"{program} is not installed by {dockerfile.name}"
