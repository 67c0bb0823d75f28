"""Resumable checkpoints: model, optimiser, scaler, step and random state in one file, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from deepfake_core.model.network import DetectorConfig, HybridDeepfakeDetector, load_torchvision_backbone


class InitWeightsError(ValueError):
    """`--init` names a file that is not a torchvision-named resnext50_32x4d state dict; the message says why."""


def save_checkpoint(path: Path, **state: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own files only; weights_only=False because they hold optimiser state and plain dicts.
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def save_model(path: Path, model: HybridDeepfakeDetector, **extra: Any) -> Path:
    """The weights and the network shape: enough to rebuild and export the model later."""
    config = model.config
    return save_checkpoint(
        path,
        model=model.state_dict(),
        detector_config={
            "input_size": config.input_size,
            "lstm_hidden": config.lstm_hidden,
            "dropout": config.dropout,
            "sequence_length": config.sequence_length,
        },
        **extra,
    )


def load_model(path: Path) -> tuple[HybridDeepfakeDetector, dict[str, Any]]:
    """(model in eval mode, the whole checkpoint)."""
    state = load_checkpoint(path)
    model = HybridDeepfakeDetector(DetectorConfig(**state["detector_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def parse_init(spec: str) -> Path:
    """`imagenet=PATH` -> PATH: the only start the backbone knows is torchvision's ImageNet resnext50_32x4d."""
    kind, sep, path = spec.partition("=")
    if not sep or kind != "imagenet" or not path:
        raise InitWeightsError(f"--init {spec!r}: expected imagenet=PATH (a torchvision resnext50_32x4d state dict)")
    weights = Path(path).expanduser()
    if not weights.is_file():
        raise InitWeightsError(f"--init: no file at {weights}; save torchvision's resnext50_32x4d state dict there")
    return weights


def load_imagenet_backbone(model: HybridDeepfakeDetector, path: Path) -> int:
    """Load a torchvision `resnext50_32x4d` state dict (as saved by `torch.save(model.state_dict())`, or wrapped
    in {"state_dict": ...}, or with DataParallel's "module." prefix) into the backbone; returns tensors loaded.

    Why: the paper's backbone starts from ImageNet, and users keep those weights on disk (no download here).
    """
    path = Path(path)
    if not path.is_file():
        raise InitWeightsError(f"ImageNet weights not found at {path}; save torchvision's resnext50_32x4d state dict")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise InitWeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        load_torchvision_backbone(model, state)
    except RuntimeError as error:
        message = f"{path} is not a resnext50_32x4d state dict with torchvision's names: {error}"
        raise InitWeightsError(message) from None
    return sum(1 for key in state if not key.startswith("fc."))
