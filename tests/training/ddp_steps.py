"""A few phase-1 steps on the session's tiny face cache, run by one process or under torchrun; rank 0 saves the
weights and losses. Used by test_distributed.py: the two runs must agree (same global batch, frozen batch norm).

  python tests/training/ddp_steps.py CACHE_ROOT SIZE OUT [KEY=VALUE ...]
  python -m torch.distributed.run --standalone --nproc_per_node 2 tests/training/ddp_steps.py CACHE_ROOT SIZE OUT
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from deepfake_core.settings import CoreSettings
from deepfake_training.config import TrainingConfig
from deepfake_training.datasets.records import MediaRecord
from deepfake_training.distributed import init_distributed, shutdown
from deepfake_training.face_cache import FaceCache
from deepfake_training.runtime import seed_everything
from deepfake_training.samples import FaceSynthesizer, FrameDataset, build_frame_pool, load_tracks
from deepfake_training.trainer import build_model, train_frames

STEPS_CONFIG = {"input_size": 64, "batch_size": 8, "phase1_steps": 2, "warmup_steps": 1, "pgd_fraction": 0.25,
                "pgd_steps": 1, "dropout": 0.0, "batch_norm": "frozen", "checkpoint_every": 100}  # fmt: skip


def main(cache_root: str, size: str, out: str, *overrides: str) -> None:
    torch.set_num_threads(1)
    context = init_distributed()
    cache = FaceCache(Path(cache_root), int(size), CoreSettings().face_margin)
    records: list[MediaRecord] = [e.record for e in cache.entries().values() if e.record.split == "train"]
    tracks = load_tracks(cache, cache.ready(records), max_frames=4)
    config = TrainingConfig(**{**STEPS_CONFIG, **dict(o.split("=", 1) for o in overrides)})
    seed_everything(config.seed)
    model = build_model(config)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    dataset = FrameDataset(build_frame_pool(tracks, config, config.seed), FaceSynthesizer(tracks, 64), config, 1)
    with tempfile.TemporaryDirectory() as run_dir:
        result = train_frames(model, dataset, config, Path(run_dir), resume=False, log_every=1)
    if context.is_main:
        torch.save(
            {"model": model.state_dict(), "initial": initial, "losses": result.losses, "world": context.world_size}, out
        )
    shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
