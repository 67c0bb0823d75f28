"""TensorRT engines for the gpu-tensorrt variant, built with `trtexec` from an installed ONNX model.

The engine has one FP16 optimisation profile on `faces` over batch 1..max_batch_size and frames 1..sequence_length,
the same shapes the gpu variant hands onnxruntime's TensorRT accelerator (`ServingDescription.profile_shapes`),
so both GPU variants accept exactly what the config.pbtxt they share declares. Engines are specific to the GPU
model and TensorRT version: build on the serving hardware, in the Triton release's TensorRT container.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from deepfake_core.contract import MODEL_FILE_NAME
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.serving.model_repository import (
    DEFAULT_REPOSITORY_ROOT,
    PLAN_FILE,
    ServingDescription,
    Variant,
    describe_model,
    latest_version,
    model_dir,
    write_configs,
)
from deepfake_core.settings import PROJECT_ROOT

# Outside the model repository (git ignores .cache/): the timing cache is specific to the GPU and TensorRT version.
DEFAULT_TIMING_CACHE = PROJECT_ROOT / ".cache" / "tensorrt" / "timing.cache"


def trtexec_command(
    onnx_path: Path,
    plan_path: Path,
    description: ServingDescription,
    *,
    trtexec: str = "trtexec",
    timing_cache: Path | None = None,
) -> list[str]:
    """The trtexec command line that builds `plan_path` from `onnx_path` (FP16, one dynamic-shape profile)."""
    shapes = description.profile_shapes()
    command = [
        trtexec,
        f"--onnx={onnx_path}",
        f"--saveEngine={plan_path}",
        "--fp16",
        f"--minShapes={shapes['min']}",
        f"--optShapes={shapes['opt']}",
        f"--maxShapes={shapes['max']}",
        f"--memPoolSize=workspace:{description.tensorrt_workspace_mib}",  # MiB
        "--skipInference",  # build only; Triton measures the engine
    ]
    if timing_cache is not None:
        command.append(f"--timingCacheFile={timing_cache}")  # reused across rebuilds: much faster tactic selection
    return command


def installed_onnx(repository_root: Path, model_name: str, version: int | None = None) -> tuple[Path, int]:
    """The gpu variant's model.onnx of `version` (default: the newest) and that version."""
    gpu_dir = model_dir(repository_root, Variant.GPU, model_name)
    version = version if version is not None else latest_version(gpu_dir)
    path = gpu_dir / str(version) / MODEL_FILE_NAME if version is not None else None
    if path is None or not path.is_file():
        raise DetectionError(
            ErrorCode.MODEL_NOT_FOUND,
            f"No installed ONNX model under {gpu_dir}: run "
            "`python -m deepfake_core.serving.model_repository install MODEL.onnx` first.",
        )
    return path, int(version)


def build_engine(
    repository_root: Path = DEFAULT_REPOSITORY_ROOT,
    model_name: str = "deepfake_detector",
    version: int | None = None,
    *,
    trtexec: str = "trtexec",
    timing_cache: Path | None = DEFAULT_TIMING_CACHE,
    dry_run: bool = False,
) -> list[str]:
    """Build gpu-tensorrt/<model>/<N>/model.plan from gpu/<model>/<N>/model.onnx; returns the command it ran.

    The engine is written next to its final name and renamed into place only when trtexec succeeds, so Triton
    never loads a half-written plan. With `dry_run` nothing is written or run.
    """
    onnx_path, version = installed_onnx(repository_root, model_name, version)
    description = describe_model(onnx_path)
    plan_dir = model_dir(repository_root, Variant.GPU_TENSORRT, description.model_name) / str(version)
    plan_path = plan_dir / PLAN_FILE
    partial = plan_dir / f".{PLAN_FILE}.partial"
    command = trtexec_command(onnx_path, partial, description, trtexec=trtexec, timing_cache=timing_cache)
    if dry_run:
        return [part.replace(str(partial), str(plan_path)) for part in command]
    if shutil.which(trtexec) is None:
        raise DetectionError(
            ErrorCode.MODEL_INVALID,
            f"'{trtexec}' was not found: build TensorRT engines on a GPU machine with TensorRT installed "
            "(for example inside the nvcr.io/nvidia/tensorrt container of the Triton release you deploy).",
        )
    plan_dir.mkdir(parents=True, exist_ok=True)
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        output = (completed.stdout + completed.stderr).strip()[-3000:]
        raise DetectionError(ErrorCode.MODEL_INVALID, f"trtexec failed to build an engine from {onnx_path}:\n{output}")
    os.replace(partial, plan_path)
    write_configs(description, repository_root)
    return command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepfake_core.serving.tensorrt",
        description="Build the FP16 TensorRT engine of an installed model into the gpu-tensorrt variant.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="run trtexec on gpu/<model>/<N>/model.onnx")
    build.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY_ROOT)
    build.add_argument("--model-name", default="deepfake_detector")
    build.add_argument("--version", type=int, default=None, help="default: the newest installed version")
    build.add_argument("--trtexec", default=os.environ.get("TRTEXEC", "trtexec"))
    build.add_argument("--timing-cache", type=Path, default=DEFAULT_TIMING_CACHE)
    build.add_argument("--dry-run", action="store_true", help="print the trtexec command, run nothing")
    args = parser.parse_args(argv)
    try:
        command = build_engine(
            args.repository,
            args.model_name,
            args.version,
            trtexec=args.trtexec,
            timing_cache=args.timing_cache,
            dry_run=args.dry_run,
        )
    except DetectionError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    print(" ".join(command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
