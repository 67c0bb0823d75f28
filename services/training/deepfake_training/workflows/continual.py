"""Continual learning (paper, section IV): fold a folder of new fakes into the training pool, fine-tune the
current model, and promote the result only if it is not worse on the run's fixed validation set.

  1. The new fakes (videos or images; one sub-folder per generator names the manipulation) are face-cached.
     A fifth of the files (at least one, when there are two or more) is held back to measure how well the
     old and the new model catch this kind of fake.
  2. `fraction` (10%) of the training pool is replaced by the new fakes' faces; the replaced slots are
     fakes, so the real/fake balance stays as trained.
  3. The current model is fine-tuned (phase 1 at a tenth of the learning rate, then phase 2).
  4. Old and new are scored on the same fixed validation clips (run/clips/val.npz). Promotion needs
     new video AUC >= old video AUC; a promoted model is calibrated, exported and installed as the next
     version in the model repository, and becomes the run's current model.
  5. With MLflow on, the registry records the gate (`DEEPFAKE_TRAIN_MLFLOW_REGISTERED_MODEL`): the current
     model is registered as "production" if nothing is yet, every candidate becomes a version aliased
     "staging" tagged with both AUCs, and only a candidate that passes gets the "production" alias (its
     tags name the version it replaced, for a rollback).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from deepfake_core.settings import CoreSettings

from deepfake_training.config import TrainingConfig, TrainingSettings
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import IMAGE_SUFFIXES, PoolItem, dataset_clip_set, load_tracks
from deepfake_training.data.streaming import mix_in_fakes
from deepfake_training.datasets.records import FAKE, MediaRecord
from deepfake_training.evaluation.scorer import TorchScorer, evaluate_model
from deepfake_training.learning.checkpoints import load_model
from deepfake_training.tracking import Tracker
from deepfake_training.workflows.run import (
    RunLayout,
    calibrate_export_install,
    prepare_data,
    records_of_run,
    run_sampling,
    train_model,
)

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
STAGING, PRODUCTION = "staging", "production"  # the registry aliases of a candidate and of the served model


@dataclass
class RetrainResult:
    old_val_auc: float | None
    new_val_auc: float | None
    old_frame_auc: float | None
    new_frame_auc: float | None
    old_new_fake_recall: float | None
    new_new_fake_recall: float | None
    promoted: bool
    installed_version: int | None
    replaced_items: int
    new_fake_files: int
    seconds: float
    candidate_dir: str
    notes: list[str] = field(default_factory=list)
    registered_version: str | None = None  # the candidate's version in the MLflow registry (None: tracking off)
    production_version: str | None = None  # the registry's "production" version after the gate
    phase1_source: str = "memory"  # "memory" (the training split's faces) or the face shards streamed
    train_tracks_in_memory: int = 0  # training tracks loaded (bounded by phase2_sequences when streaming)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def new_fake_records(folder: Path) -> list[MediaRecord]:
    """Every video/image under `folder`, labelled fake; the first sub-folder level names the manipulation."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no video or image files under {folder}")
    records = []
    for path in files:
        relative = path.relative_to(folder)
        manipulation = relative.parts[0] if len(relative.parts) > 1 else folder.name
        stem = "-".join(relative.with_suffix("").parts)
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)
        records.append(
            MediaRecord(
                key=f"new-{safe}",
                path=path,
                label=FAKE,
                dataset="new",
                manipulation=f"new:{manipulation}",
                split="train",
                identity=f"new:{safe}",
            )
        )
    return records


def replace_pool_share(
    pool: list[PoolItem], new_items: list[PoolItem], fraction: float, seed: int
) -> tuple[list[PoolItem], int]:
    """Replace `fraction` of the pool's slots, all fakes, by new items (cycled); returns (pool, replaced count)."""
    count = int(round(fraction * len(pool)))
    fake_slots = [k for k, item in enumerate(pool) if item.label == FAKE]
    if count > len(fake_slots):
        raise ValueError(f"cannot replace {count} slots: the pool holds only {len(fake_slots)} fakes")
    if not new_items:
        raise ValueError("no faces were found in the new fakes")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(fake_slots, size=count, replace=False)
    order = rng.permutation(len(new_items))
    result = list(pool)
    for n, slot in enumerate(chosen):
        result[int(slot)] = new_items[int(order[n % len(new_items)])]
    return result, count


def retrain(
    run_dir: Path,
    new_fakes: Path,
    fraction: float = 0.1,
    steps: int | None = None,
    repository: Path | None = None,
    overrides: dict[str, object] | None = None,
    settings: TrainingSettings | None = None,
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8"),
    track: bool = True,
    progress: bool = True,
    max_train_frames: int | None = None,
    shards: str | Path | None = None,
) -> RetrainResult:
    """Fine-tune the run's model with new fakes folded in; promote it only if the gate passes (module docstring).

    `max_train_frames` bounds the faces held in memory per training video (evenly spaced): the run's whole
    training split is otherwise loaded, which sizes the job's memory (docs/training.md). With `shards` (a folder
    or s3:// prefix written by `deepfake-train shards` from the run's training split) phase 1 streams them and
    mixes the new fakes into `fraction` of each batch instead, and only `phase2_sequences` training videos are
    loaded (for phase 2's clips): memory no longer grows with the training split.
    """
    started = time.perf_counter()
    settings = settings or TrainingSettings()
    layout = RunLayout(run_dir)
    if not layout.model.is_file():
        raise FileNotFoundError(f"{layout.model} not found: retrain continues a finished training run")
    base = TrainingConfig.load(layout.config).with_overrides(overrides or {})
    config = base.with_overrides({"phase1_steps": steps if steps is not None else max(1, base.phase1_steps // 4),
                                  "max_minutes": None})  # fmt: skip
    records = records_of_run(layout)
    fakes = new_fake_records(new_fakes)
    held_back = fakes[-max(1, len(fakes) // 5) :] if len(fakes) >= 2 else []
    train_fakes = fakes[: len(fakes) - len(held_back)]
    cache = FaceCache(settings.cache_root, base.input_size, CoreSettings().face_margin)
    cache.build(
        fakes,
        CoreSettings(),
        sampling=f"uniform:{base.eval_frames_per_video}",
        workers=settings.cache_workers,
        progress=progress,
    )
    # Frames sampled as originally cached: the records keep their keys, so nothing is re-decoded.
    bounded = config.phase2_sequences if shards is not None else None  # streamed: phase 2's videos alone
    data = prepare_data(records, _existing_cache(cache, records), base, layout,
                        max_train_frames_per_video=max_train_frames, max_train_videos=bounded)  # fmt: skip
    new_tracks = load_tracks(cache, train_fakes)
    if not new_tracks:
        raise ValueError(f"no face found in the new fakes under {new_fakes}")
    offset = len(data.train_tracks)
    new_items = [PoolItem("fake", offset + t, f) for t, track in enumerate(new_tracks) for f in range(len(track))]
    replaced: dict[str, int] = {}

    def transform(pool: list[PoolItem]) -> list[PoolItem]:
        result, replaced["count"] = replace_pool_share(pool, new_items, fraction, config.seed + 7)
        return result

    streamed: dict[str, int] = {}

    def mix(batches: Iterator[tuple[torch.Tensor, ...]]) -> Iterator[tuple[torch.Tensor, ...]]:
        return mix_in_fakes(batches, new_tracks, fraction, config, config.seed + 7, streamed)

    history = layout.root / "retrain"
    candidate = RunLayout(history / time.strftime("%Y%m%d-%H%M%S")).ensure()
    config.save(candidate.config)
    tracker = Tracker(
        settings.mlflow_experiment, f"retrain-{candidate.root.name}", settings.mlflow_tracking_uri, enabled=track
    )
    status = "FAILED"
    try:
        tracker.set_tags({"kind": "retrain", "parent_run": str(layout.root)})
        tracker.log_params({"fraction": fraction, "new_fake_files": len(fakes), **config.model_dump()})
        old_model, _ = load_model(layout.model)
        initial, _ = load_model(layout.model)
        outcome = train_model(
            data, config, candidate, tracker, resume=False, initial=initial.train(), pool_transform=transform,
            extra_tracks=new_tracks, phase1_lr=config.learning_rate * 0.1, validate=False, phase1_shards=shards,
            stream_transform=mix if shards is not None else None,
        )  # fmt: skip
        if shards is not None:
            replaced["count"] = streamed.get("replaced", 0)
        new_model = outcome.model
        old_eval, new_eval = (
            evaluate_model(name, data.val_clips, TorchScorer(model, config.device), config.sequence_length,
                           cnn_weight=config.cnn_weight, lstm_weight=config.lstm_weight)
            for name, model in (("current", old_model), ("candidate", new_model))
        )  # fmt: skip
        old_auc, new_auc = old_eval.overall.video.auc, new_eval.overall.video.auc
        notes = []
        recalls: dict[str, float | None] = {"old": None, "new": None}
        if held_back:
            held_tracks = load_tracks(cache, held_back)
            if held_tracks:
                clips = dataset_clip_set("new-fakes", held_tracks, config.input_size, config.eval_frames_per_video)
                for name, model in (("old", old_model), ("new", new_model)):
                    evaluation = evaluate_model(
                        name, clips, TorchScorer(model, config.device), config.sequence_length, 0.5, config.cnn_weight,
                        config.lstm_weight,
                    )  # fmt: skip
                    recalls[name] = evaluation.overall.video.recall
        promoted = old_auc is not None and new_auc is not None and new_auc >= old_auc
        notes.append(
            f"validation video AUC old {old_auc} new {new_auc}: {'promoted' if promoted else 'kept the old model'}"
        )
        tracker.log_metrics({"val/old_video_auc": old_auc, "val/new_video_auc": new_auc, "promoted": float(promoted)})
        registry = settings.mlflow_registered_model
        if tracker.alias_version(registry, PRODUCTION) is None:
            origin = {"source": "the run's model before its first registered retrain"}
            baseline = tracker.register_version(layout.model, registry, PRODUCTION, "baseline", origin)
            log.info("registry: the current model registered as %s version %s (production)", registry, baseline)
        gate = {"gate_old_val_video_auc": str(old_auc), "gate_new_val_video_auc": str(new_auc),
                "gate": "passed" if promoted else "failed", "candidate_dir": str(candidate.root)}  # fmt: skip
        registered = tracker.register_version(candidate.model, registry, STAGING, "candidate", gate)
        version = None
        if promoted:
            sampling, sequence_fps = run_sampling(layout)
            exports = calibrate_export_install(
                new_model, data, config, candidate, precisions, repository,
                extra_metadata={"training_data": f"continual learning: {len(train_fakes)} new fake files"},
                tracker=tracker, sampling=sampling, sequence_fps=sequence_fps,
            )  # fmt: skip
            version = exports.installed_version
            previous = layout.root / f"model.before-{candidate.root.name}.pt"
            shutil.copy2(layout.model, previous)
            shutil.copy2(candidate.model, layout.model)
            if registered is not None:
                served_before = tracker.alias_version(registry, PRODUCTION)
                promotion = {"installed_version": str(version), "replaced_production_version": str(served_before)}
                tracker.tag_version(registry, registered, promotion)
                tracker.set_alias(registry, PRODUCTION, registered)
        result = RetrainResult(
            old_val_auc=old_auc,
            new_val_auc=new_auc,
            old_frame_auc=old_eval.overall.frame.auc,
            new_frame_auc=new_eval.overall.frame.auc,
            old_new_fake_recall=recalls["old"],
            new_new_fake_recall=recalls["new"],
            promoted=promoted,
            installed_version=version,
            replaced_items=replaced.get("count", 0),
            new_fake_files=len(fakes),
            seconds=time.perf_counter() - started,
            candidate_dir=str(candidate.root),
            notes=notes,
            registered_version=registered,
            production_version=tracker.alias_version(registry, PRODUCTION),
            phase1_source=str(shards) if shards is not None else "memory",
            train_tracks_in_memory=len(data.train_tracks),
        )
        (candidate.root / "retrain.json").write_text(json.dumps(result.to_dict(), indent=2))
        tracker.log_artifact(candidate.root / "retrain.json")
        status = "FINISHED"
    finally:
        tracker.end(status)
    return result


def _existing_cache(cache: FaceCache, records: list[MediaRecord]) -> FaceCache:
    """The cache the run was trained from must still hold its records; say which are missing if not."""
    missing = [r.key for r in records if r.key not in cache.entries()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} training records are not in the face cache {cache.directory} (e.g. {missing[:3]}); "
            "rebuild it with `deepfake-train cache` or point DEEPFAKE_TRAIN_CACHE_ROOT at the run's cache"
        )
    return cache
