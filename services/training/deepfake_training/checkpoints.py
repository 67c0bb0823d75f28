"""Resumable checkpoints: model, optimiser, scaler, step and random state in one file, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from deepfake_core.model.network import DetectorConfig, HybridDeepfakeDetector


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
