"""The deployment documents name chart values and files that exist: docs/deploy.md and the chart's README stay
true when values are renamed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deepfake_devstack.binaries import REPO_ROOT

from tests.infra.conftest import CHART_DIR

DOCUMENTS = [REPO_ROOT / "docs" / "deploy.md", CHART_DIR / "README.md"]
FILE_SUFFIXES = {"pbtxt", "yaml", "yml", "json", "py", "md", "txt"}  # `config.pbtxt` is a file, not a value


def values() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def value_paths(text: str, top_level: set[str]) -> set[str]:
    """Dotted names in backticks (`triton.engineCache.mountPath`, `retrain.gpus: 1`) that start at a chart value."""
    found = set()
    for match in re.finditer(r"`([A-Za-z]+(?:\.[A-Za-z]+)+)(?:\s*[=:][^`]*)?`", text):
        name = match.group(1)
        if name.split(".")[0] in top_level and name.rsplit(".", 1)[1] not in FILE_SUFFIXES:
            found.add(name)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_value_the_document_names_exists(document: Path) -> None:
    defaults = values()
    paths = value_paths(document.read_text(), set(defaults))
    assert paths, "the document names no chart value"
    missing = []
    for path in sorted(paths):
        node: Any = defaults
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(path)
                break
            node = node[key]
    assert not missing, f"{document.name} names values that do not exist: {missing}"


def test_the_example_files_and_commands_the_guide_names_exist() -> None:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text()
    for name in re.findall(r"`([\w-]+-values\.yaml)`", text):
        assert (CHART_DIR / "ci" / name).is_file(), name
    for path in re.findall(r"(?<![\w/])(?:infra|loadtests|charts|tests)/[\w./$-]+", text):
        path = path.split("$")[0].rstrip(".")  # Dockerfile.$image: the folder part
        assert (REPO_ROOT / path).exists() or list((REPO_ROOT / path).parent.glob(Path(path).name + "*")), path
    for target in re.findall(r"make ([\w-]+)", text):
        assert re.search(rf"^{re.escape(target)}:", (REPO_ROOT / "Makefile").read_text(), flags=re.MULTILINE), target


def architecture_modules(text: str) -> set[str]:
    """Module paths ARCHITECTURE.md names as a step's owner: `deepfake_x/...py`, `deepfake_x/dir/`, with
    `{a,b}.py` groups expanded."""
    found = set()
    for match in re.finditer(r"`(deepfake_[a-z]+/[A-Za-z0-9_/{},.]*)`", text):
        name = match.group(1)
        group = re.search(r"\{([^}]*)\}", name)
        options = group.group(1).split(",") if group else [""]
        for option in options:
            found.add(name.replace(group.group(0), option) if group else name)
    return found


def test_every_module_architecture_names_exists() -> None:
    """ARCHITECTURE.md stays current: a module it names as a step's owner exists in services/."""
    names = architecture_modules((REPO_ROOT / "ARCHITECTURE.md").read_text())
    assert len(names) > 20, "ARCHITECTURE.md names too few modules: the pattern no longer matches"
    roots = {path.name: path for path in (REPO_ROOT / "services").glob("*/deepfake_*")}
    missing = [name for name in sorted(names) if not (roots[name.split("/")[0]].parent / name).exists()]
    assert not missing, f"ARCHITECTURE.md names modules that do not exist: {missing}"
