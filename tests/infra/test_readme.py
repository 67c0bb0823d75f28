"""The README's commands work when followed word by word: its service block runs here exactly as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from deepfake_devstack.binaries import REPO_ROOT

README = REPO_ROOT / "README.md"


def fenced_block(document: str, heading: str) -> str:
    """The first ```bash block under a `## heading`."""
    section = document.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert match, f"no bash block under '## {heading}'"
    return match.group(1)


def test_the_two_commands_and_the_service_block_are_in_the_readme() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    block = fenced_block(text, "Run the service locally")
    assert block.splitlines()[0].startswith("make up") and block.strip().splitlines()[-1].startswith("make down")


def json_documents(text: str) -> list[dict]:
    """Every JSON object printed, also when curl's answers run together on one line (they end without one)."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while (start := text.find("{", position)) != -1:
        try:
            document, position = decoder.raw_decode(text, start)
            documents.append(document)
        except json.JSONDecodeError:
            position = start + 1
    return documents


@pytest.fixture(scope="module")
def plumbing_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding an untrained 112 px network: the block needs an installed model, and a fresh
    checkout has none until `make model` (or a shipped model) installs one. Its verdicts mean nothing."""
    from deepfake_core.model.export import create_untrained_model
    from deepfake_core.serving.model_repository import install_model

    root = tmp_path_factory.mktemp("readme-models")
    install_model(create_untrained_model(root / "untrained.onnx", input_size=112), root / "repository")
    return root / "repository"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_service_block_runs_as_written(plumbing_repository: Path) -> None:
    block = fenced_block(README.read_text(), "Run the service locally")
    # `make down` runs even when a line fails, so a failed run never leaves the stack up.
    script = "set -euo pipefail\ntrap 'make --no-print-directory down >/dev/null 2>&1' EXIT\n" + block
    environment = {**os.environ, "DEEPFAKE_STACK_MODEL_REPOSITORY": str(plumbing_repository),
                   "DEEPFAKE_ALLOW_UNTRAINED_MODEL": "true"}  # fmt: skip
    completed = subprocess.run(
        ["bash", "-c", script], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=840
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    documents = json_documents(completed.stdout)
    job = next(doc for doc in documents if "status" in doc and "id" in doc)
    assert job["status"] in ("succeeded", "queued", "processing"), job  # the long poll may end before the job does
    # The client waits for its video to finish and prints its verdict.
    assert re.search(r"cap13_edit2\.mp4: job \S+ succeeded: verdict (real|fake|uncertain)", output), output[-2000:]
