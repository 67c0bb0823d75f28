"""Reading the Dockerfiles without a Docker engine: instructions, stages, build arguments, what COPY reads, and the
.dockerignore rules. Shared by test_dockerfiles.py (what the files say) and image_env.py (replaying a build stage)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deepfake_devstack.binaries import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "infra" / "docker"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    parsed = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            parsed.append(Instruction(keyword.upper(), arguments.strip()))
    return parsed


def build_args(path: Path) -> dict[str, str]:
    return dict(
        instruction.arguments.split("=", 1)
        for instruction in instructions(path)
        if instruction.keyword == "ARG" and "=" in instruction.arguments
    )


def stages(path: Path) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions(path):
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def stage_named(path: Path, name: str) -> list[Instruction]:
    """The stage `FROM ... AS name`."""
    for stage in stages(path):
        words = stage[0].arguments.split()
        if len(words) == 3 and words[1].upper() == "AS" and words[2] == name:
            return stage
    raise LookupError(f"{path.name} has no stage named {name}")


def copy_sources(path: Path) -> list[str]:
    """Sources of the COPY instructions that read the build context (not another stage)."""
    sources = []
    for instruction in instructions(path):
        if instruction.keyword != "COPY":
            continue
        words = instruction.arguments.split()
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def ignore_patterns() -> list[re.Pattern[str]]:
    """The .dockerignore rules as regular expressions over paths relative to the repository root."""
    patterns = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            regex = re.escape(line).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
            patterns.append(re.compile(f"^{regex}(/.*)?$"))
    return patterns


def is_ignored(relative_path: str, patterns: list[re.Pattern[str]]) -> bool:
    return any(pattern.match(relative_path) for pattern in patterns)
