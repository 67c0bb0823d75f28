"""Where and how tensors run: device choice, seeds, threads and mixed precision.

Mixed precision (float16 autocast with a gradient scaler) is used on CUDA only: on CPU, bfloat16
autocast is slower than float32 on most of the machines this runs on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from deepfake_training.config import TrainingConfig

log = logging.getLogger(__name__)

# glibc malloc settings that halve CPU training time of this model (model-notes.md): big tensors are
# freed and re-allocated every step; these keep them in the heap instead of mmap/munmap each time.
MALLOC_TUNING = {
    "MALLOC_MMAP_THRESHOLD_": "17179869184",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "1073741824",
}


def select_device(config: TrainingConfig) -> torch.device:
    """The device a run trains, calibrates and evaluates on (`TrainingConfig.device`)."""
    return resolve_device(config.device)


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' = the GPU when torch sees one, else the CPU; 'cuda' refuses to run without one."""
    if isinstance(name, torch.device):
        return name
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda was asked for, but torch sees no CUDA device")
        return torch.device("cuda")
    if name not in ("auto", "cpu"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def onnx_providers(available: Sequence[str], device: str | torch.device) -> list[str]:
    """onnxruntime providers for checking exports on the training device: CUDA then CPU when the device is a GPU
    and this onnxruntime build offers CUDA (onnxruntime-gpu), else the CPU alone (serving's CPU path)."""
    if torch.device(device).type == "cuda" and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


def export_check_providers(device: str | torch.device = "auto") -> list[str]:
    """`onnx_providers` for this machine: the device `device` resolves to and the installed onnxruntime."""
    import onnxruntime

    return onnx_providers(onnxruntime.get_available_providers(), resolve_device(device))


def seed_everything(seed: int) -> None:
    """Python, numpy and torch seeds, and deterministic kernels where torch has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def configure_threads(config: TrainingConfig) -> None:
    if config.threads:
        torch.set_num_threads(config.threads)


def uses_amp(config: TrainingConfig, device: torch.device) -> bool:
    return config.mixed_precision and (device.type == "cuda" or config.cpu_autocast)


def amp_dtype(config: TrainingConfig, device: torch.device) -> torch.dtype:
    """float16 or bfloat16 on CUDA as configured; bfloat16 on CPU (its only fast autocast type)."""
    return torch.bfloat16 if config.amp_dtype == "bfloat16" or device.type != "cuda" else torch.float16


def uses_grad_scaler(config: TrainingConfig, device: torch.device) -> bool:
    """Loss scaling is needed for float16 only: bfloat16 has float32's range."""
    return uses_amp(config, device) and amp_dtype(config, device) == torch.float16


def configure_speed(config: TrainingConfig) -> None:
    """The opt-in speed mode: autotuned cuDNN kernels, TF32 matmuls, non-deterministic algorithms allowed."""
    if not config.speed_mode:
        return
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    log.info("speed mode: cudnn.benchmark and TF32 on; runs are no longer bit-reproducible")


@contextlib.contextmanager
def autocast(enabled: bool, device: torch.device, dtype: torch.dtype = torch.float16) -> Iterator[None]:
    if enabled:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
    else:
        yield


def malloc_tuning_missing() -> list[str]:
    """The glibc malloc variables not set in this process (they only work when set before start-up)."""
    return [name for name in MALLOC_TUNING if name not in os.environ]
