"""Every GPU check in one go (`make gpu-check`), each figure printed with the card's name.

  .venv/bin/python loadtests/gpu_check.py [--steps 300] [--json var/gpu-check.json]
1. the GPU and TensorRT Triton configs load (config.pbtxt of model_repository/gpu and gpu-tensorrt);
2. the TensorRT FP16 engine builds with trtexec (from the installed model, else an untrained one of its size);
3. aligned crops/s at batch 32 through onnxruntime's CUDA provider in FP16 (the exported fp16 model);
4. phase-1 training images/s under torchrun on every visible GPU: bf16 autocast + channels_last, DDP, PGD.
Without an NVIDIA GPU it runs what the CPU can check (configs, the trtexec command, a 2-step bf16 +
channels_last smoke of the training path) and says why it skipped the rest. Asserts nothing: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
REPOSITORY = PROJECT / "model_repository"
MODEL = "deepfake_detector"


@dataclass
class Check:
    name: str
    status: str  # ok, skipped, failed
    message: str = ""
    figures: dict[str, float | str] = field(default_factory=dict)


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def check_configs(repository: Path) -> Check:
    """Both GPU variants' configs exist and declare what Triton needs (platform, batching, GPU instances)."""
    figures: dict[str, float | str] = {}
    for variant, platform in (("gpu", 'backend: "onnxruntime"'), ("gpu-tensorrt", 'platform: "tensorrt_plan"')):
        path = repository / variant / MODEL / "config.pbtxt"
        if not path.is_file():
            return Check("triton-configs", "failed", f"{path} is missing: render it with the model_repository tool")
        text = path.read_text()
        for needed in (platform, "max_batch_size", "KIND_GPU"):
            if needed not in text:
                return Check("triton-configs", "failed", f"{path} lacks {needed!r}")
        figures[f"{variant}_max_batch_size"] = float(text.split("max_batch_size:")[1].split()[0])
        figures["input_size"] = float(text.split("dims: [")[1].split("]")[0].split(",")[-1])
    return Check("triton-configs", "ok", "gpu and gpu-tensorrt configs load", figures)


def model_onnx(work: Path, input_size: int) -> Path:
    """The newest installed gpu model, else an untrained detector exported at the configured input size."""
    from deepfake_core.serving.model_repository import latest_version, model_dir

    installed = model_dir(REPOSITORY, "gpu", MODEL)
    version = latest_version(installed)
    if version is not None and (installed / str(version) / "model.onnx").is_file():
        return installed / str(version) / "model.onnx"
    from deepfake_core.model.export import create_untrained_model

    return create_untrained_model(work / "untrained.onnx", input_size=input_size)


def check_engine(work: Path, onnx_path: Path) -> Check:
    from deepfake_core.serving.model_repository import describe_model, install_model
    from deepfake_core.serving.tensorrt import build_engine

    repository = work / "repository"
    install_model(onnx_path, repository, version=1)
    command = build_engine(repository, describe_model(onnx_path).model_name, 1, dry_run=True)
    if shutil.which(os.environ.get("TRTEXEC", "trtexec")) is None:
        return Check("tensorrt-engine", "skipped", "trtexec not found (run inside the Triton release's TensorRT "
                     f"container); the command would be: {' '.join(command)}")  # fmt: skip
    started = time.perf_counter()
    build_engine(repository, describe_model(onnx_path).model_name, 1, trtexec=os.environ.get("TRTEXEC", "trtexec"))
    plan = next(repository.glob("gpu-tensorrt/*/1/model.plan"))
    return Check("tensorrt-engine", "ok", str(plan), {"build_s": time.perf_counter() - started,
                                                     "plan_mb": plan.stat().st_size / 1e6})  # fmt: skip


def check_crops_per_second(work: Path, onnx_path: Path, batch: int = 32, seconds: float = 20.0) -> Check:
    import numpy as np
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return Check("crops-per-second", "skipped", "onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    from deepfake_training.workflows.exports import export_fp16

    fp16 = export_fp16(onnx_path, work / "model.fp16.onnx")
    session = onnxruntime.InferenceSession(str(fp16), providers=["CUDAExecutionProvider"])
    size = session.get_inputs()[0].shape[-1]
    faces = np.random.default_rng(0).random((batch, 1, 3, size, size), dtype=np.float32)
    session.run(None, {"faces": faces})  # warm-up
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        session.run(None, {"faces": faces})
        calls += 1
    rate = calls * batch / (time.perf_counter() - started)
    return Check("crops-per-second", "ok", f"batch {batch} FP16, {size} px", {"crops_per_s": rate})


def check_training(steps: int, input_size: int, batch_per_gpu: int) -> Check:
    import torch

    if not torch.cuda.is_available():
        smoke = _train_steps(2, 64, 4, device="cpu")
        return Check("torchrun-training", "skipped", "no NVIDIA GPU: ran a 2-step bf16 + channels_last smoke on CPU "
                     "instead; the GPU figure needs a GPU", {"cpu_smoke_images_per_s": smoke})  # fmt: skip
    gpus = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rate.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                   __file__, "--train-worker", str(steps), str(input_size), str(batch_per_gpu), str(out)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=PROJECT)
        if done.returncode != 0:
            return Check("torchrun-training", "failed", (done.stdout + done.stderr)[-3000:])
        rate = json.loads(out.read_text())["images_per_s"]
    one = _train_steps(max(20, steps // 5), input_size, batch_per_gpu, device="cuda")
    return Check("torchrun-training", "ok", f"{gpus} GPU(s), {input_size} px, batch {batch_per_gpu}/GPU, bf16, "
                 "channels_last, PGD 10%", {"images_per_s_ddp": rate, "images_per_s_one_gpu": one,
                                            "gpus": float(gpus)})  # fmt: skip


def _train_steps(steps: int, input_size: int, batch: int, device: str) -> float:
    """Global images/s of `train_frames` on random batches (the real step: PGD, focal loss, DDP when launched)."""
    import torch
    from deepfake_training.config import TrainingConfig
    from deepfake_training.learning.distributed import current
    from deepfake_training.learning.trainer import build_model, train_frames

    world = current().world_size
    config = TrainingConfig(input_size=input_size, batch_size=batch * world, phase1_steps=steps, warmup_steps=1,
                            mixed_precision=True, amp_dtype="bfloat16", cpu_autocast=device == "cpu",
                            channels_last=True, device=device, checkpoint_every=10**6)  # fmt: skip
    from deepfake_core.model.network import feature_map_size

    grid = feature_map_size(input_size)

    def batches():
        generator = torch.Generator().manual_seed(current().rank)
        for _ in range(steps):
            images = torch.rand(batch, 3, input_size, input_size, generator=generator)
            yield images, torch.arange(batch) % 2, torch.zeros(batch, dtype=torch.long), torch.zeros(batch, grid, grid)

    warm = 3 if steps > 6 else 0
    with tempfile.TemporaryDirectory() as run_dir:
        if warm:
            train_frames(build_model(config), None, config.with_overrides({"phase1_steps": warm}), Path(run_dir),
                         resume=False, batches=batches(), log_every=10**6)  # type: ignore[arg-type]  # fmt: skip
        started = time.perf_counter()
        train_frames(build_model(config), None, config, Path(run_dir) / "timed", resume=False, batches=batches(),
                     log_every=10**6)  # type: ignore[arg-type]  # fmt: skip
        if device == "cuda":
            torch.cuda.synchronize()
    return steps * batch * world / (time.perf_counter() - started)


def train_worker(steps: str, input_size: str, batch: str, out: str) -> None:
    """Under torchrun: join the group, time the steps, rank 0 writes the figure."""
    from deepfake_training.learning.distributed import init_distributed, shutdown

    context = init_distributed()
    rate = _train_steps(int(steps), int(input_size), int(batch), device="cuda")
    if context.is_main:
        Path(out).write_text(json.dumps({"images_per_s": rate}))
    shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="timed training steps under torchrun")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-per-gpu", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="also write the checks here")
    parser.add_argument("--train-worker", nargs=4, metavar=("STEPS", "SIZE", "BATCH", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_worker:
        train_worker(*args.train_worker)
        return 0
    card = gpu_name()
    print(f"card: {card or 'no NVIDIA GPU visible (torch.cuda.is_available() is False)'}")
    checks = [check_configs(REPOSITORY)]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        size = int(checks[0].figures.get("input_size", 112)) if checks[0].status == "ok" else 112
        onnx_path = model_onnx(work, size)
        for run in (lambda: check_engine(work, onnx_path), lambda: check_crops_per_second(work, onnx_path),
                    lambda: check_training(args.steps, args.input_size, args.batch_per_gpu)):  # fmt: skip
            try:
                checks.append(run())
            except Exception as error:  # one failed check must not hide the others' figures
                checks.append(Check(getattr(run, "__name__", "check"), "failed", repr(error)))
    for check in checks:
        figures = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in check.figures.items())
        print(f"[{check.status:7}] {check.name}: {check.message}" + (f" | {figures}" if figures else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"card": card, "checks": [asdict(c) for c in checks]}, indent=2))
    return 1 if any(c.status == "failed" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
