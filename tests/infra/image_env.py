"""The Python environment of a service image, built without Docker by replaying its Dockerfile's build stage.

The build stage of Dockerfile.gateway and Dockerfile.worker is: create a virtualenv at /opt/venv, COPY sources
under /src, RUN pip install (with the lock as constraints) and a few python commands. `build_image_env` replays
those instructions here: COPY copies from the repository with .dockerignore applied, RUN runs the same command
lines with /opt/venv and /src mapped to folders under .cache/image-envs/. The result holds exactly what pip puts
into the image's virtualenv (what the runtime stage copies); only the operating system's libraries differ.

One environment per image, cached under a digest of everything the build reads (the Dockerfile, every copied
file, this interpreter), so it is rebuilt when any of them changes. The base interpreter must be the Python of
the image (python:3.11): the caller skips otherwise. Within one test session the digest is taken once
(`SessionImageEnvs`), so every test of the session sees the same environment even if a source file is edited
meanwhile, and the images a session needs are built side by side (pip spends much of a build waiting on
downloads and on disk). Builds share one pip cache (`PIP_CACHE_DIR`): it only saves downloads and the wheel
built from an sdist; pip installs the same files either way.

Several sessions may share the cache folder (a developer's runs beside another's): a per-image lock file makes a
second session wait for a build in progress instead of redoing or deleting it, and an older environment is only
removed once nobody has used it for `STALE_AFTER_S`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deepfake_devstack.binaries import REPO_ROOT

from tests.infra.dockerfile import (
    DOCKER_DIR,
    Instruction,
    build_args,
    ignore_patterns,
    is_ignored,
    stage_named,
    stages,
)

CACHE_ROOT = REPO_ROOT / ".cache" / "image-envs"
# The service images test_image_contents.py checks, by name.
IMAGES = {"worker": DOCKER_DIR / "Dockerfile.worker", "gateway": DOCKER_DIR / "Dockerfile.gateway"}
IMAGE_TESTS = Path(__file__).with_name("test_image_contents.py")
# Builds started at collection run below the tests' own processes, on the CPU the session leaves idle.
BACKGROUND_NICENESS = 10
IMAGE_VENV = "/opt/venv"
# ENV of the build stage left out: pip's own cache only makes the replay slower; it changes nothing installed.
SKIPPED_BUILD_ENV = frozenset({"PIP_NO_CACHE_DIR"})
BUILD_TIMEOUT_S = 900
# pip's cache, shared by every replayed build (the image's own build disables it; see SKIPPED_BUILD_ENV).
PIP_CACHE = CACHE_ROOT / "pip-cache"
# An environment of an older digest is removed once unused for this long (another session may still be using it).
STALE_AFTER_S = 3600


class ImageBuildError(RuntimeError):
    """A RUN instruction of the replayed build failed; the message carries its output."""


@dataclass(frozen=True)
class ImageEnv:
    """A replayed image environment: `venv` stands for the image's /opt/venv."""

    dockerfile: Path
    venv: Path
    runtime_env: dict[str, str]  # the final stage's ENV, with /opt/venv mapped

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def has_program(self, name: str) -> bool:
        return (self.venv / "bin" / name).is_file()


def python_minor_of(dockerfile: Path) -> str:
    """The Python version of the image's base, e.g. 3.11 for python:3.11-slim-bookworm."""
    image = build_args(dockerfile)["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(\d+\.\d+)(-.*)?", image)
    if not match:
        raise ValueError(f"{dockerfile.name}: PYTHON_IMAGE {image} is not an official python image")
    return match.group(1)


def _copied_files(source: str) -> list[Path]:
    """The files COPY takes from one source path, .dockerignore applied."""
    patterns = ignore_patterns()
    root = REPO_ROOT / source
    if root.is_file():
        return [] if is_ignored(source, patterns) else [root]
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if path.is_file() and not is_ignored(relative, patterns):
            files.append(path)
    return files


def _copy_instructions(stage: list[Instruction]) -> list[tuple[list[str], str]]:
    result = []
    for instruction in stage:
        if instruction.keyword == "COPY":
            words = [word for word in instruction.arguments.split() if not word.startswith("--")]
            result.append((words[:-1], words[-1]))
    return result


def inputs_digest(dockerfile: Path) -> str:
    """A digest of what the build stage reads: the Dockerfile, each copied file, and this interpreter."""
    digest = hashlib.sha256()
    digest.update(dockerfile.read_bytes())
    digest.update(f"{sys.version}|{sys.platform}".encode())
    for sources, _ in _copy_instructions(stage_named(dockerfile, "build")):
        for source in sources:
            for path in _copied_files(source):
                digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _mapper(venv: Path, src_root: Path):  # noqa: ANN202 - a small closure
    """Maps container paths in an instruction's text onto the replay's folders."""

    def mapped(text: str) -> str:
        text = re.sub(rf"(?<![\w./]){re.escape(IMAGE_VENV)}\b", str(venv), text)
        return re.sub(r"(?<![\w./])/src\b", str(src_root), text)

    return mapped


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda match: env.get(match.group(1), ""), value)


def _parse_env(arguments: str) -> dict[str, str]:
    """ENV A=1 B=2 (the key=value form the Dockerfiles use)."""
    pairs = {}
    for word in shlex.split(arguments):
        name, _, value = word.partition("=")
        pairs[name] = value
    return pairs


def _replay(dockerfile: Path, target: Path, niceness: int = 0) -> None:
    """Replay the build stage of `dockerfile` into `target` (venv/ and src/)."""
    venv, src_root, base_bin = target / "venv", target / "src", target / "base-bin"
    mapped = _mapper(venv, src_root)
    base_bin.mkdir(parents=True)
    # `python` before the venv exists is the image's interpreter: this one's base (not the dev venv).
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    for name in ("python", "python3"):
        (base_bin / name).symlink_to(base_python)
    env = {
        "PATH": f"{base_bin}:/usr/bin:/bin",
        "HOME": str(target / "home"),
        "LANG": "C.UTF-8",
        "PIP_CACHE_DIR": str(PIP_CACHE),
        # pip's index configuration of this machine (PyPI mirrors, find-links) applies as it would in CI.
        **{name: value for name, value in os.environ.items() if name.startswith("PIP_")},
    }
    (target / "home").mkdir()
    workdir = target  # stands for "/" until a WORKDIR
    for instruction in stage_named(dockerfile, "build")[1:]:
        keyword, arguments = instruction.keyword, mapped(instruction.arguments)
        if keyword == "ENV":
            for name, value in _parse_env(arguments).items():
                if name not in SKIPPED_BUILD_ENV:
                    env[name] = _expand(value, env)
        elif keyword == "WORKDIR":
            workdir = Path(arguments)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            words = [word for word in instruction.arguments.split() if not word.startswith("--")]
            destination = workdir / mapped(words[-1])
            for source in words[:-1]:
                for path in _copied_files(source):
                    inside = path.relative_to(REPO_ROOT / source) if (REPO_ROOT / source).is_dir() else Path()
                    copied = destination / inside if inside != Path() else destination
                    copied.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, copied)
        elif keyword == "RUN":
            nice = ["nice", "-n", str(niceness)] if niceness else []
            completed = subprocess.run(
                [*nice, "bash", "-c", f"set -e; {arguments}"],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
            if completed.returncode != 0:
                output = (completed.stdout + completed.stderr)[-4000:]
                raise ImageBuildError(f"{dockerfile.name}: RUN {instruction.arguments[:200]} failed:\n{output}")
        elif keyword in ("ARG", "EXPOSE", "USER", "LABEL"):
            continue
        else:
            raise ImageBuildError(f"{dockerfile.name}: the replay does not know the instruction {keyword}")


def runtime_env(dockerfile: Path, venv: Path) -> dict[str, str]:
    """The final stage's ENV (PATH, HOME, PROMETHEUS_MULTIPROC_DIR, ...), /opt/venv mapped onto `venv`."""
    env = {"PATH": "/usr/bin:/bin"}
    mapped = _mapper(venv, venv)
    for instruction in stages(dockerfile)[-1]:
        if instruction.keyword == "ENV":
            for name, value in _parse_env(mapped(instruction.arguments)).items():
                env[name] = _expand(value, env)
    return env


def image_name(dockerfile: Path) -> str:
    return dockerfile.name.removeprefix("Dockerfile.")


def build_image_env(dockerfile: Path, digest: str | None = None, niceness: int = 0) -> ImageEnv:
    """The replayed environment of `dockerfile`, from the cache when its inputs have not changed.

    `digest` is `inputs_digest(dockerfile)` taken earlier (by `SessionImageEnvs`); computed here when left out.
    """
    name = image_name(dockerfile)
    key = f"{name}-{digest or inputs_digest(dockerfile)}"
    target = CACHE_ROOT / key
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with (CACHE_ROOT / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session building this image: wait for it, then reuse its build
        if not (target / "built").is_file():
            # Built in place (venv scripts carry their own path in their shebang); the marker file is written
            # last, so an interrupted build is redone.
            shutil.rmtree(target, ignore_errors=True)
            try:
                _replay(dockerfile, target, niceness)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            (target / "built").write_text(key)
        os.utime(target / "built")  # last use, which keeps it from being removed as stale
        for stale in CACHE_ROOT.glob(f"{name}-*"):
            marker = stale / "built"
            unused = time.time() - marker.stat().st_mtime > STALE_AFTER_S if marker.is_file() else True
            if stale != target and stale.is_dir() and unused:
                shutil.rmtree(stale, ignore_errors=True)
    venv = target / "venv"
    return ImageEnv(dockerfile, venv, runtime_env(dockerfile, venv))


class SessionImageEnvs:
    """The image environments of one test session: each digest taken once, each image built (or found in the
    cache) once, the images a session needs built side by side. `get` waits for one."""

    def __init__(self, dockerfiles: dict[str, Path], niceness: int = 0) -> None:
        self._dockerfiles = dockerfiles
        self._niceness = niceness
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(dockerfiles)), thread_name_prefix="image-env")
        self._builds: dict[str, Future[ImageEnv]] = {}

    def start(self, names: Iterable[str]) -> None:
        """Begin building `names` (those not begun yet) in the background."""
        for name in sorted(names):
            if name not in self._builds:
                dockerfile = self._dockerfiles[name]
                digest = inputs_digest(dockerfile)  # taken now: what this session tests
                self._builds[name] = self._pool.submit(build_image_env, dockerfile, digest, self._niceness)

    def get(self, name: str) -> ImageEnv:
        self.start([name])
        return self._builds[name].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def runs_this_python(name: str) -> bool:
    """Whether this interpreter is the Python of image `name` (the replay needs it)."""
    return f"{sys.version_info.major}.{sys.version_info.minor}" == python_minor_of(IMAGES[name])


def images_used_by(item: object) -> set[str]:
    """The images a test of test_image_contents.py uses: its `image` or `name` parameter, or the gateway for the
    test of the gateway's contents; none for a test of another file."""
    if getattr(item, "path", None) != IMAGE_TESTS:
        return set()
    callspec = getattr(item, "callspec", None)
    names = {callspec.params[key] for key in ("image", "name") if key in callspec.params} if callspec else set()
    if getattr(item, "name", "") == "test_the_gateway_image_installs_no_model_code":
        names.add("gateway")
    return names & set(IMAGES)


_session: SessionImageEnvs | None = None


def session_image_envs() -> SessionImageEnvs:
    """This session's image environments (one set per session)."""
    global _session
    if _session is None:
        _session = SessionImageEnvs(IMAGES, niceness=BACKGROUND_NICENESS)
    return _session


def start_in_background(items: Iterable[object]) -> None:
    """Begin building the images the selected tests use (called once collection is done): a cold build takes
    minutes, which then overlap with the tests that run before test_image_contents.py."""
    needed = {name for item in items for name in images_used_by(item)}
    if needed:
        session_image_envs().start(name for name in needed if runs_this_python(name))


def close_session_image_envs() -> None:
    global _session
    if _session is not None:
        _session.close()
        _session = None
