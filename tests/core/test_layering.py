"""The core's floors only point down: contract <- media, faces <- inference, serving <- pipeline, explain <- cli.

Every import of every module (top-level, inside functions, under TYPE_CHECKING) is read with `ast`, so a lazy
import cannot hide an upward dependency. A module that is on no floor fails the test: place it first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import deepfake_core

PACKAGE_ROOT = Path(deepfake_core.__file__).resolve().parent

# Floors, bottom first; a module belongs to the floor of its longest matching prefix.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contract", ("deepfake_core", "deepfake_core.contract", "deepfake_core.errors", "deepfake_core.result")),
    (
        "media, faces",
        (
            "deepfake_core.media",
            "deepfake_core.faces",
            "deepfake_core.settings",
            "deepfake_core.scoring",
            "deepfake_core.model_files",
        ),
    ),
    ("inference, serving", ("deepfake_core.inference", "deepfake_core.serving", "deepfake_core.model")),
    ("pipeline, explain", ("deepfake_core.pipeline", "deepfake_core.assembly", "deepfake_core.explain")),
    ("cli", ("deepfake_core.cli",)),
)

# Within a floor, these never point sideways: inference is what serving renders configs for (the Triton backend
# reads the config parameter names from the contract), and media is what the faces stage reads.
SIDEWAYS_FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("deepfake_core.inference", "deepfake_core.serving"),
    ("deepfake_core.media", "deepfake_core.faces"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, floor)
    for floor, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), floor)
    return None if best is None else best[1]


def core_imports(source: str, module: str, is_package: bool, modules: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every deepfake_core module that the code of `module` imports; `from pkg import
    submodule` counts as the submodule, and relative imports are resolved from `module`'s package."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((node.lineno, submodule if submodule in modules else base))
    return [(line, name) for line, name in found if name == "deepfake_core" or name.startswith("deepfake_core.")]


def core_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def test_every_core_module_is_on_a_floor() -> None:
    unplaced = [name for name in core_modules() if floor_of(name) is None]
    assert not unplaced, f"put these modules on a floor in {__file__}: {unplaced}"


def test_no_core_module_imports_from_a_higher_floor() -> None:
    modules = core_modules()
    upward = []
    for name, path in modules.items():
        floor = floor_of(name)
        for line, target in core_imports(path.read_text(), name, path.name == "__init__.py", set(modules)):
            target_floor = floor_of(target)
            if floor is not None and target_floor is not None and target_floor > floor:
                upward.append(
                    f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: {name} ({FLOORS[floor][0]}) imports "
                    f"{target} ({FLOORS[target_floor][0]})"
                )
    assert not upward, "imports that point up a floor:\n" + "\n".join(upward)


def test_no_sideways_import_that_would_close_a_cycle() -> None:
    modules = core_modules()
    sideways = [
        f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: {name} imports {target}"
        for name, path in modules.items()
        for line, target in core_imports(path.read_text(), name, path.name == "__init__.py", set(modules))
        for lower, higher in SIDEWAYS_FORBIDDEN
        if _within(name, lower) and _within(target, higher)
    ]
    assert not sideways, "imports that point sideways against the flow:\n" + "\n".join(sideways)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_checker_sees_lazy_relative_and_submodule_imports() -> None:
    """The parser itself: an import inside a function, a relative one and `from package import module`."""
    source = (
        "def load():\n    from deepfake_core.pipeline import Detector\n"
        "from deepfake_core.serving import tensorrt\n"
        "from ..inference import onnx_backend\n"
        "import numpy\n"
    )
    found = core_imports(source, "deepfake_core.media.loader", False, set(core_modules()))
    assert sorted(name for _, name in found) == [
        "deepfake_core.inference.onnx_backend",
        "deepfake_core.pipeline",
        "deepfake_core.serving.tensorrt",
    ]
    assert all(floor_of(name) > floor_of("deepfake_core.media.loader") for _, name in found)
