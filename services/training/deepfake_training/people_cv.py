"""Leave-one-person-out evaluation: how the recipe does on a person it never saw, for every video person.

One held-out video person and one validation split make a single number that mostly measures how much
that person resembles the training people (MODEL_CARD.md saw runs differ by several points). Here every
video person is held out in turn: a model is trained on everyone else with the same recipe and seed,
and scores that person's real clips and the SBI and swap fakes made from them. The clips of all folds
are then pooled into one AUC, with a percentile interval from resampling people (not clips: a person's
clips are near copies of each other), and each person's own AUC is reported beside it.

Photos stay in every fold's training set (their people are unnamed groups, too small to hold out one
by one), except the validation photos, which only feed the frame validator.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deepfake_training.config import TrainingConfig
from deepfake_training.datasets.records import REAL, MediaRecord
from deepfake_training.evaluation import TorchScorer, score_clips
from deepfake_training.face_cache import FaceCache
from deepfake_training.metrics import area_under_roc, bootstrap_auc_by_group
from deepfake_training.samples import IMAGE_SUFFIXES
from deepfake_training.workflow import RunLayout, prepare_data, train_model

log = logging.getLogger(__name__)


def video_people(records: Sequence[MediaRecord], cache: FaceCache, min_frames: int) -> list[str]:
    """Identities with at least one real video holding a full BiLSTM window of cached faces."""
    entries = cache.entries()
    people = []
    for record in cache.ready(records):
        if record.label != REAL or _is_photo(record):
            continue
        if record.identity not in people and entries[record.key].count >= min_frames:
            people.append(record.identity)
    return people


def _is_photo(record: MediaRecord) -> bool:
    return Path(record.path).suffix.lower() in IMAGE_SUFFIXES


def fold_records(records: Sequence[MediaRecord], held_out: str) -> list[MediaRecord]:
    """`held_out` -> test, the validation photos stay val, everybody else trains."""
    folded = []
    for record in records:
        if record.identity == held_out:
            split = "test"
        elif record.split == "val" and _is_photo(record):
            split = "val"
        else:
            split = "train"
        folded.append(replace(record, split=split))
    if not any(r.split == "val" for r in folded):
        raise ValueError("leave-one-person-out needs validation photos (records in the 'val' split that are photos)")
    return folded


@dataclass
class FoldResult:
    person: str
    labels: list[int]
    video_scores: list[float]
    frame_scores: list[float]
    frame_labels: list[int]
    manipulations: list[str]
    seconds: float

    def video_auc(self) -> float | None:
        return area_under_roc(np.array(self.labels), np.array(self.video_scores))

    def frame_auc(self) -> float | None:
        return area_under_roc(np.array(self.frame_labels), np.array(self.frame_scores))


def run_fold(
    records: Sequence[MediaRecord], cache: FaceCache, config: TrainingConfig, person: str, out: Path
) -> FoldResult:
    """Train without `person`, score `person`'s clips; the result is saved and reused on a rerun."""
    layout = RunLayout(out / _slug(person)).ensure()
    saved = layout.root / "fold.json"
    if saved.is_file():
        return FoldResult(**json.loads(saved.read_text()))
    started = time.perf_counter()
    folded = fold_records(records, person)
    data = prepare_data(folded, cache, config, layout, config.sequence_length, config.sequence_length // 2)
    assert data.test_clips is not None
    outcome = train_model(data, config, layout, validate=False)
    clips = data.test_clips
    scores = score_clips(clips, TorchScorer(outcome.model), config.sequence_length)
    video = ~clips.is_image
    fused = scores.video_scores(config.cnn_weight, config.lstm_weight, clips.is_image)
    frame_labels = [int(label) for label, faces in zip(clips.labels, clips.faces, strict=True) for _ in faces]
    result = FoldResult(
        person=person,
        labels=[int(x) for x in clips.labels[video]],
        video_scores=[float(x) for x in fused[video]],
        frame_scores=[float(x) for x in scores.frame_level()],
        frame_labels=frame_labels,
        manipulations=[m for m, v in zip(clips.manipulations, video, strict=True) if v],
        seconds=time.perf_counter() - started,
    )
    saved.write_text(json.dumps(result.__dict__))
    log.info("fold %s: video AUC %s in %.0f s", person, result.video_auc(), result.seconds)
    return result


def summarise(folds: Sequence[FoldResult], config: TrainingConfig, rounds: int = 2000) -> dict[str, object]:
    """Pooled AUC over every held-out clip, its interval over people, and each person's own AUC."""
    labels = np.concatenate([f.labels for f in folds])
    scores = np.concatenate([f.video_scores for f in folds])
    groups = np.concatenate([[f.person] * len(f.labels) for f in folds])
    low, high = bootstrap_auc_by_group(labels, scores, groups, rounds=rounds, seed=config.seed)
    per_person = {
        f.person: {
            "video_auc": f.video_auc(),
            "frame_auc": f.frame_auc(),
            "real_clips": int(sum(1 for x in f.labels if x == REAL)),
            "fake_clips": int(sum(1 for x in f.labels if x != REAL)),
            "minutes": round(f.seconds / 60, 1),
        }
        for f in folds
    }
    aucs = [p["video_auc"] for p in per_person.values() if p["video_auc"] is not None]
    frames = np.concatenate([f.frame_scores for f in folds])
    frame_labels = np.concatenate([f.frame_labels for f in folds])
    return {
        "people": len(folds),
        "video_auc": area_under_roc(labels, scores),
        "video_auc_interval_95": [low, high],
        "interval": f"percentile bootstrap over people, {rounds} rounds",
        "mean_person_video_auc": float(np.mean(aucs)) if aucs else None,
        "frame_auc": area_under_roc(frame_labels, frames),
        "per_person": per_person,
        "recipe": {k: getattr(config, k) for k in ("phase1_steps", "phase2_steps", "input_size", "seed")},
    }


def leave_one_person_out(
    records: Sequence[MediaRecord],
    cache: FaceCache,
    config: TrainingConfig,
    out: Path,
    people: Sequence[str] | None = None,
) -> dict[str, object]:
    """Every fold (resumable), then the summary, written to `out`/summary.json and report.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(people or video_people(records, cache, config.sequence_length))
    if len(chosen) < 2:
        raise ValueError(f"leave-one-person-out needs at least two video people, found {chosen}")
    folds = [run_fold(records, cache, config, person, out) for person in chosen]
    summary = summarise(folds, config)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(render_markdown(summary))
    return summary


def render_markdown(summary: dict[str, object]) -> str:
    low, high = summary["video_auc_interval_95"]  # type: ignore[misc]
    lines = [
        "# Leave-one-person-out",
        "",
        f"Pooled video AUC over {summary['people']} held-out people: **{_fmt(summary['video_auc'])}** "
        f"(95% interval {_fmt(low)}-{_fmt(high)}, {summary['interval']}); mean of per-person AUCs "
        f"{_fmt(summary['mean_person_video_auc'])}; frame AUC {_fmt(summary['frame_auc'])}.",
        "",
        "| held-out person | real clips | fake clips | video AUC | frame AUC | fold minutes |",
        "|---|---|---|---|---|---|",
    ]
    for person, row in summary["per_person"].items():  # type: ignore[union-attr]
        lines.append(
            f"| {person} | {row['real_clips']} | {row['fake_clips']} | {_fmt(row['video_auc'])} | "
            f"{_fmt(row['frame_auc'])} | {row['minutes']} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    return "-" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]


def _slug(person: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", person)
