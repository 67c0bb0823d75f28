"""A few training steps on the session's tiny face cache, run by one process or under torchrun; rank 0 saves the
weights and losses. Used by test_distributed.py: the two runs must agree (same global batch, frozen batch norm).

  python tests/training/ddp_steps.py PHASE CACHE_ROOT SIZE OUT [KEY=VALUE ...]
  python -m torch.distributed.run --standalone --nproc_per_node 2 tests/training/ddp_steps.py PHASE CACHE_ROOT SIZE OUT

PHASE: `phase1` (CNN steps with PGD), `phase2` (frozen-CNN features computed by the ranks, BiLSTM steps on them,
then end-to-end steps on clips: both kinds of phase 2 in one run, saved as "model" and "model_frozen").

Resume (phase1): with DDP_RUN_DIR set each rank resumes from its own folder DDP_RUN_DIR/rank-R (rank 0 alone writes
checkpoints there, so rank 1's stays empty: a run folder that is not on a shared volume); with DDP_KILL_AT_STEP=K rank 1
kills itself (SIGKILL, as the OOM killer would) when it starts step K of torchrun's first attempt, so torchrun
(--max-restarts 1) restarts both ranks, which resume from rank 0's last checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import torch
from deepfake_core.settings import CoreSettings
from deepfake_training.config import TrainingConfig
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import FaceSynthesizer, FrameDataset, build_clip_pool, build_frame_pool, load_tracks
from deepfake_training.datasets.records import MediaRecord
from deepfake_training.learning.distributed import init_distributed, shutdown
from deepfake_training.learning.runtime import seed_everything
from deepfake_training.learning.trainer import (
    build_model,
    cache_clip_features,
    train_frames,
    train_sequences_end_to_end,
    train_sequences_frozen,
)

STEPS_CONFIG = {"input_size": 64, "batch_size": 8, "phase1_steps": 2, "warmup_steps": 1, "pgd_fraction": 0.25,
                "pgd_steps": 1, "dropout": 0.0, "batch_norm": "frozen", "checkpoint_every": 100,
                "sequence_length": 4, "lstm_hidden": 8, "phase2_steps": 2, "phase2_batch_size": 4}  # fmt: skip
PHASE2_CLIPS = 8


class DyingFrameDataset(FrameDataset):
    """Rank 1 dies when the loader starts the step DDP_KILL_AT_STEP, in torchrun's first attempt only."""

    def set_epoch(self, epoch: int, step: int | None = None) -> None:
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if first_attempt and os.environ.get("RANK") == "1" and step == int(os.environ["DDP_KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)
        super().set_epoch(epoch, step)


def main(phase: str, cache_root: str, size: str, out: str, *overrides: str) -> None:
    torch.set_num_threads(1)
    context = init_distributed()
    cache = FaceCache(Path(cache_root), int(size), CoreSettings().face_margin)
    records: list[MediaRecord] = [e.record for e in cache.entries().values() if e.record.split == "train"]
    tracks = load_tracks(cache, cache.ready(records), max_frames=4 if phase == "phase1" else 12)
    config = TrainingConfig(**{**STEPS_CONFIG, **dict(o.split("=", 1) for o in overrides)})
    seed_everything(config.seed)
    model = build_model(config)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    saved: dict[str, object] = {"initial": initial, "world": context.world_size}
    with tempfile.TemporaryDirectory() as run_dir:
        if phase == "phase1":
            resume_root = os.environ.get("DDP_RUN_DIR")
            kind = DyingFrameDataset if os.environ.get("DDP_KILL_AT_STEP") else FrameDataset
            dataset = kind(build_frame_pool(tracks, config, config.seed), FaceSynthesizer(tracks, 64), config, 1)
            folder = Path(resume_root) / f"rank-{context.rank}" if resume_root else Path(run_dir)
            result = train_frames(model, dataset, config, folder, resume=bool(resume_root), log_every=1)
            saved["losses"] = result.losses
            saved["attempt"] = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        elif phase == "phase2":
            synthesizer = FaceSynthesizer(tracks, 64)
            clips = build_clip_pool(tracks, config.sequence_length, 2, 0.0, config.seed)[:PHASE2_CLIPS]
            features, labels = cache_clip_features(model, clips, synthesizer, config, Path(run_dir) / "features.npz")
            frozen = train_sequences_frozen(model, features, labels, config, Path(run_dir), resume=False, log_every=1)
            saved["features"] = torch.from_numpy(features)
            saved["model_frozen"] = {k: v.clone() for k, v in model.state_dict().items()}
            whole = train_sequences_end_to_end(model, clips, synthesizer, config, Path(run_dir) / "end-to-end",
                                               resume=False, log_every=1)  # fmt: skip
            saved["losses"] = frozen.losses + whole.losses
        else:
            raise SystemExit(f"unknown phase {phase!r}: phase1 or phase2")
    if context.is_main:
        saved["model"] = model.state_dict()
        torch.save(saved, out)
    shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
