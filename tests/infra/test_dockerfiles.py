"""The Dockerfiles, read (no Docker engine here): what they copy exists and is not ignored, they run as non-root,
the service images carry no torch, and the Triton image matches the chart and the model repository."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from deepfake_devstack.binaries import REPO_ROOT

from tests.infra.dockerfile import DOCKER_DIR, build_args, copy_sources, ignore_patterns, instructions, stages

DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile.*"))
SERVICE_IMAGES = ("Dockerfile.gateway", "Dockerfile.worker")


def test_there_are_the_four_images() -> None:
    assert [path.name for path in DOCKERFILES] == [
        "Dockerfile.gateway",
        "Dockerfile.training",
        "Dockerfile.triton",
        "Dockerfile.worker",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_copied_path_exists_and_is_not_ignored(dockerfile: Path) -> None:
    ignored = ignore_patterns()
    sources = copy_sources(dockerfile)
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is not in the repository"
        assert not any(pattern.match(source) for pattern in ignored), f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_final_stage_runs_as_a_non_root_user(dockerfile: Path) -> None:
    final = stages(dockerfile)[-1]
    users = [instruction.arguments for instruction in final if instruction.keyword == "USER"]
    assert users, f"{dockerfile.name} sets no USER in its final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


@pytest.mark.parametrize("name", [*SERVICE_IMAGES, "Dockerfile.training"])
def test_python_images_are_multi_stage_on_python_311_slim(name: str) -> None:
    dockerfile = DOCKER_DIR / name
    assert len(stages(dockerfile)) >= 2
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", build_args(dockerfile)["PYTHON_IMAGE"])
    final = stages(dockerfile)[-1]
    assert any(i.keyword == "COPY" and "--from=build" in i.arguments for i in final), "the runtime copies the venv"
    assert not any(i.keyword == "RUN" and "pip install" in i.arguments for i in final), "no building at runtime"


def project_dependencies(package_dir: Path) -> list[str]:
    return tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.mark.parametrize("name", SERVICE_IMAGES)
def test_service_images_install_no_torch(name: str) -> None:
    dockerfile = DOCKER_DIR / name
    installs = " ".join(
        i.arguments for i in instructions(dockerfile) if i.keyword == "RUN" and "pip install" in i.arguments
    )
    assert "torch" not in installs.replace("find_spec('torch')", ""), "only Dockerfile.training installs torch"
    for source in copy_sources(dockerfile):
        if (REPO_ROOT / source / "pyproject.toml").is_file():
            for requirement in project_dependencies(REPO_ROOT / source):
                name_only = re.split(r"[\[<>=~! ;]", requirement, maxsplit=1)[0].lower()
                assert name_only != "torch" and "[torch]" not in requirement, f"{source} requires {requirement}"


@pytest.mark.parametrize("name", SERVICE_IMAGES)
def test_service_images_install_every_local_package_they_need(name: str) -> None:
    """Each deepfake-* dependency of a copied package is copied too (pip cannot fetch them from an index)."""
    dockerfile = DOCKER_DIR / name
    copied = {
        tomllib.loads((REPO_ROOT / source / "pyproject.toml").read_text())["project"]["name"]: source
        for source in copy_sources(dockerfile)
        if (REPO_ROOT / source / "pyproject.toml").is_file()
    }
    installs = " ".join(i.arguments for i in instructions(dockerfile) if i.keyword == "RUN")
    for source in copied.values():
        assert f"./{source}" in installs, f"{source} is copied but not installed"
        for requirement in project_dependencies(REPO_ROOT / source):
            local = re.split(r"[\[<>=~! ;]", requirement, maxsplit=1)[0]
            if local.startswith("deepfake-"):
                assert local in copied, f"{source} needs {local}, which {name} does not copy"


def test_the_constraints_file_exists_and_pins_what_the_services_use() -> None:
    lock = (REPO_ROOT / "requirements" / "dev.lock").read_text().splitlines()
    pinned = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in lock if "==" in line}
    for package in ("celery", "fastapi", "uvicorn", "onnxruntime", "prometheus-client", "minio", "redis"):
        assert package in pinned, f"{package} is not pinned in requirements/dev.lock"


@pytest.mark.parametrize(
    ("name", "module"),
    [("Dockerfile.worker", "deepfake_worker.celery_app"), ("Dockerfile.gateway", "deepfake_gateway.main")],
)
def test_the_default_command_names_an_existing_module(name: str, module: str) -> None:
    command = next(i.arguments for i in reversed(instructions(DOCKER_DIR / name)) if i.keyword == "CMD")
    assert module in command
    assert importlib.util.find_spec(module) is not None, f"{module} (the image's command) does not exist"


def test_the_triton_image_serves_the_gpu_repository_and_matches_the_chart() -> None:
    dockerfile = DOCKER_DIR / "Dockerfile.triton"
    base = build_args(dockerfile)["TRITON_IMAGE"]
    repository, tag = base.rsplit(":", 1)
    assert repository == "nvcr.io/nvidia/tritonserver" and re.fullmatch(r"\d{2}\.\d{2}-py3", tag)
    values = yaml.safe_load((REPO_ROOT / "charts" / "deepfake-platform" / "values.yaml").read_text())
    assert values["triton"]["image"]["tag"] == tag, "the chart's default Triton image and Dockerfile.triton agree"
    assert "model_repository/gpu" in copy_sources(dockerfile)
    config = (REPO_ROOT / "model_repository" / "gpu" / "deepfake_detector" / "config.pbtxt").read_text()
    assert "KIND_GPU" in config
    command = next(i.arguments for i in instructions(dockerfile) if i.keyword == "CMD")
    assert "--model-repository=/models" in command
