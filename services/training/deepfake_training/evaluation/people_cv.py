"""Leave-one-person-out evaluation: how the recipe does on a person it never saw, for every video person.

One held-out video person and one validation split make a single number that mostly measures how much
that person resembles the training people (MODEL_CARD.md saw runs differ by several points). Here every
video person is held out in turn: a model is trained on everyone else with the same recipe and seed,
and scores that person's real clips and the SBI and swap fakes made from them. The clips of all folds
are then pooled into one AUC, with a percentile interval from resampling people (not clips: a person's
clips are near copies of each other), and each person's own AUC is reported beside it.

Photos of the training split stay in every fold's training set; the held-out photos (val and test) are
trained on by no fold. Folds may hold out several video people at once (fewer models to train), and a fold
whose training records and recipe equal a finished run's takes that run's model: training is
deterministic (tests/training/test_training.py), so retraining would give the same weights.
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
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import IMAGE_SUFFIXES
from deepfake_training.datasets.records import REAL, MediaRecord
from deepfake_training.evaluation.metrics import area_under_roc, bootstrap_auc_by_group
from deepfake_training.evaluation.scorer import TorchScorer, score_clips
from deepfake_training.workflows.run import RunLayout, load_run_model, prepare_data, records_of_run, train_model

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


def fold_records(records: Sequence[MediaRecord], held_out: Sequence[str]) -> list[MediaRecord]:
    """The people in `held_out` -> test; the held-out photos (val and test) -> val, trained on by no fold;
    everybody else trains. So a fold holding out the run's own held-out video people trains on exactly the
    run's training records, and folds differ only in the video people they hold out."""
    folded = []
    for record in records:
        if record.identity in held_out:
            split = "test"
        elif record.split in ("val", "test") and _is_photo(record):
            split = "val"
        else:
            split = "train"
        folded.append(replace(record, split=split))
    if not any(r.split == "val" for r in folded):
        raise ValueError("leave-one-person-out needs validation photos (records in the 'val' split that are photos)")
    return folded


@dataclass
class FoldResult:
    """Scores of one fold's held-out clips, each tagged with its person; `reused` names a run whose model was
    the fold's model (same training records and recipe, so the same weights: training is deterministic)."""

    people: list[str]
    persons: list[str]  # per video clip
    labels: list[int]
    video_scores: list[float]
    frame_persons: list[str]
    frame_labels: list[int]
    frame_scores: list[float]
    manipulations: list[str]
    seconds: float
    reused: str | None = None


def run_fold(
    records: Sequence[MediaRecord],
    cache: FaceCache,
    config: TrainingConfig,
    people: Sequence[str],
    out: Path,
    reuse: Path | None = None,
) -> FoldResult:
    """Train without `people`, score their clips; the result is saved and reused on a rerun."""
    layout = RunLayout(out / "+".join(_slug(p) for p in people)).ensure()
    saved = layout.root / "fold.json"
    if saved.is_file():
        return FoldResult(**json.loads(saved.read_text()))
    started = time.perf_counter()
    config.save(layout.config)  # the fold is a run like any other: its recipe beside its model
    folded = fold_records(records, people)
    data = prepare_data(folded, cache, config, layout, config.sequence_length, config.sequence_length // 2)
    assert data.test_clips is not None
    reused = reuse if reuse is not None and same_training(reuse, folded, config) else None
    if reused is not None:
        model = load_run_model(RunLayout(reused))
        log.info("fold %s: the model of %s trained on exactly this fold's records with this recipe", people, reused)
    else:
        model = train_model(data, config, layout, validate=False).model
    clips = data.test_clips
    scores = score_clips(clips, TorchScorer(model), config.sequence_length)
    video = ~clips.is_image
    fused = scores.video_scores(config.cnn_weight, config.lstm_weight, clips.is_image)
    frames = [(person, int(label)) for person, label, faces in zip(clips.identities, clips.labels, clips.faces,
                                                                    strict=True) for _ in faces]  # fmt: skip
    result = FoldResult(
        people=list(people),
        persons=[p for p, v in zip(clips.identities, video, strict=True) if v],
        labels=[int(x) for x in clips.labels[video]],
        video_scores=[float(x) for x in fused[video]],
        frame_persons=[p for p, _ in frames],
        frame_labels=[label for _, label in frames],
        frame_scores=[float(x) for x in scores.frame_level()],
        manipulations=[m for m, v in zip(clips.manipulations, video, strict=True) if v],
        seconds=time.perf_counter() - started,
        reused=str(reused) if reused is not None else None,
    )
    saved.write_text(json.dumps(result.__dict__))
    log.info("fold %s: %.0f s", people, result.seconds)
    return result


def same_training(run: Path, folded: Sequence[MediaRecord], config: TrainingConfig) -> bool:
    """Whether a finished run trained on exactly the fold's training records with exactly this recipe."""
    layout = RunLayout(run)
    if not (layout.model.is_file() and layout.config.is_file() and layout.data.is_file()):
        return False
    if TrainingConfig.load(layout.config) != config:
        return False
    trained = {r.key for r in records_of_run(layout) if r.split == "train"}
    return trained == {r.key for r in folded if r.split == "train"}


def summarise(folds: Sequence[FoldResult], config: TrainingConfig, rounds: int = 2000) -> dict[str, object]:
    """Pooled AUC over every held-out clip, its interval over people, and each person's own AUC."""
    persons = np.concatenate([f.persons for f in folds])
    labels = np.concatenate([f.labels for f in folds]).astype(int)
    scores = np.concatenate([f.video_scores for f in folds])
    frame_persons = np.concatenate([f.frame_persons for f in folds])
    frame_labels = np.concatenate([f.frame_labels for f in folds]).astype(int)
    frame_scores = np.concatenate([f.frame_scores for f in folds])
    low, high = bootstrap_auc_by_group(labels, scores, persons, rounds=rounds, seed=config.seed)
    fold_of = {p: f for f in folds for p in f.people}
    per_person = {}
    for person in sorted(set(persons) | set(frame_persons)):
        clip, frame = persons == person, frame_persons == person
        per_person[person] = {
            "video_auc": area_under_roc(labels[clip], scores[clip]),
            "frame_auc": area_under_roc(frame_labels[frame], frame_scores[frame]),
            "real_clips": int(np.sum(clip & (labels == REAL))),
            "fake_clips": int(np.sum(clip & (labels != REAL))),
            "fold": "+".join(fold_of[person].people) if person in fold_of else "-",
        }
    aucs = [p["video_auc"] for p in per_person.values() if p["video_auc"] is not None]
    return {
        "people": int(len(set(persons))),
        "folds": [{"held_out": f.people, "minutes": round(f.seconds / 60, 1), "reused": f.reused} for f in folds],
        "video_auc": area_under_roc(labels, scores),
        "video_auc_interval_95": [low, high],
        "interval": f"percentile bootstrap over people, {rounds} rounds",
        "mean_person_video_auc": float(np.mean(aucs)) if aucs else None,
        "frame_auc": area_under_roc(frame_labels, frame_scores),
        "per_person": per_person,
        "recipe": {k: getattr(config, k) for k in ("phase1_steps", "phase2_steps", "input_size", "seed")},
    }


def leave_one_person_out(
    records: Sequence[MediaRecord],
    cache: FaceCache,
    config: TrainingConfig,
    out: Path,
    people: Sequence[str] | None = None,
    folds: Sequence[Sequence[str]] | None = None,
    reuse: Path | None = None,
) -> dict[str, object]:
    """Every fold (resumable), then the summary, written to `out`/summary.json and report.md.

    Default: one fold per video person. `folds` holds several people out together (fewer models to train);
    `reuse` names a finished run whose model any fold with the same training records and recipe takes.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = (
        [list(f) for f in folds]
        if folds
        else [[p] for p in people or video_people(records, cache, config.sequence_length)]
    )
    if sum(len(f) for f in chosen) < 2:
        raise ValueError(f"leave-one-person-out needs at least two video people, found {chosen}")
    results = [run_fold(records, cache, config, fold, out, reuse) for fold in chosen]
    summary = summarise(results, config)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(render_markdown(summary))
    return summary


def render_markdown(summary: dict[str, object]) -> str:
    low, high = summary["video_auc_interval_95"]  # type: ignore[misc]
    lines = [
        "# Leave-one-person-out",
        "",
        f"Pooled video AUC over {summary['people']} held-out video people: **{_fmt(summary['video_auc'])}** "
        f"(95% interval {_fmt(low)}-{_fmt(high)}, {summary['interval']}); mean of per-person AUCs "
        f"{_fmt(summary['mean_person_video_auc'])}; frame AUC {_fmt(summary['frame_auc'])} (photo faces included).",
        "",
        "| held-out person | fold | real clips | fake clips | video AUC | frame AUC |",
        "|---|---|---|---|---|---|",
    ]
    for person, row in summary["per_person"].items():  # type: ignore[union-attr]
        lines.append(
            f"| {person} | {row['fold']} | {row['real_clips']} | {row['fake_clips']} | {_fmt(row['video_auc'])} | "
            f"{_fmt(row['frame_auc'])} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    return "-" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]


def _slug(person: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", person)
