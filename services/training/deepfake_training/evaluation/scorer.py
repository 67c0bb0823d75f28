"""Scoring clips with a model (torch or ONNX) the way serving scores a face track, and the metrics of it.

Per clip (= one face track): frames are cut into BiLSTM windows of at most `sequence_length` (the core's
`split_windows`), frame score = mean CNN P(fake), sequence score = mean BiLSTM P(fake) over windows, video
score = cnn_weight * frame score + lstm_weight * sequence score; photos use the frame score alone.
Video-level metrics are over video clips (photos are single frames); frame-level metrics over every frame
(photos included), each scored by the CNN branch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from deepfake_core.contract import to_model_input
from deepfake_core.scoring import fake_probability, is_sequence_window, split_windows

from deepfake_training.data.samples import ClipSet
from deepfake_training.evaluation.metrics import BinaryMetrics, binary_metrics
from deepfake_training.learning.runtime import resolve_device

# faces float32 [B, T, 3, S, S] -> (frame_logits [B, T, 2], sequence_logits [B, 2])
Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class TorchScorer:
    """Runs a `HybridDeepfakeDetector` in eval mode without gradients, in float32, on the training device.

    `device` 'auto' (the default) is the GPU when there is one: calibration, the fusion-weight fit, retrain's
    gate and `evaluate` of a checkpoint then score on it instead of the CPU. The model is moved there (the
    exports move it back to the CPU themselves).
    """

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "auto") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device)

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                outputs = self.model(torch.from_numpy(np.ascontiguousarray(faces)).to(self.device))
        finally:
            self.model.train(was_training)
        return outputs["frame_logits"].float().cpu().numpy(), outputs["sequence_logits"].float().cpu().numpy()


class OnnxScorer:
    """Runs an exported model through the core's onnxruntime backend (the serving code path); `providers`
    default to the CPU alone (`runtime.export_check_providers` gives the training device's)."""

    def __init__(self, path: Path, threads: int = 0, providers: Sequence[str] | None = None) -> None:
        from deepfake_core.inference.onnx_backend import OnnxBackend

        self.backend = OnnxBackend(Path(path), threads=threads, providers=providers)
        self.metadata = self.backend.metadata

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        output = self.backend.infer(faces)
        return output.frame_logits, output.sequence_logits


@dataclass
class ClipScores:
    """Scores of every clip of a `ClipSet`."""

    frame_scores: list[np.ndarray]  # per clip [T_i] CNN P(fake)
    sequence_scores: np.ndarray  # [N] mean BiLSTM P(fake); NaN for photos
    seconds: float = 0.0

    def frame_level(self) -> np.ndarray:
        return np.concatenate(self.frame_scores) if self.frame_scores else np.zeros(0)

    def video_scores(self, cnn_weight: float, lstm_weight: float, is_image: np.ndarray) -> np.ndarray:
        total = cnn_weight + lstm_weight
        frame = np.array([s.mean() for s in self.frame_scores])
        fused = (cnn_weight * frame + lstm_weight * np.nan_to_num(self.sequence_scores)) / total
        return np.where(is_image | np.isnan(self.sequence_scores), frame, fused)


def score_clips(clips: ClipSet, scorer: Scorer, sequence_length: int, max_batch_frames: int = 256) -> ClipScores:
    """Run `scorer` over every window of every clip, batching windows of equal length."""
    started = time.perf_counter()
    windows: list[tuple[int, list[int]]] = []
    for c, faces in enumerate(clips.faces):
        positions = list(range(len(faces)))
        for window in split_windows(positions, ((),), positions, sequence_length):
            windows.append((c, window))
    frame_scores = [np.zeros(len(f)) for f in clips.faces]
    sequence_sum = np.zeros(len(clips))
    sequence_count = np.zeros(len(clips))
    by_length: dict[int, list[tuple[int, list[int]]]] = {}
    for entry in windows:
        by_length.setdefault(len(entry[1]), []).append(entry)
    for length, group in sorted(by_length.items()):
        per_batch = max(1, max_batch_frames // length)
        for begin in range(0, len(group), per_batch):
            batch = group[begin : begin + per_batch]
            faces = np.stack([clips.faces[c][window] for c, window in batch])
            frame_logits, sequence_logits = scorer(to_model_input(faces))
            frame_p = fake_probability(frame_logits)
            sequence_p = fake_probability(sequence_logits)
            for row, (c, window) in enumerate(batch):
                frame_scores[c][window] = frame_p[row]
                if is_sequence_window(window, sequence_length):  # as serving: never a window shorter than trained
                    sequence_sum[c] += sequence_p[row]
                    sequence_count[c] += 1
    has_sequence = ~clips.is_image & (sequence_count > 0)
    sequences = np.where(has_sequence, sequence_sum / np.maximum(sequence_count, 1), np.nan)
    return ClipScores(frame_scores, sequences, time.perf_counter() - started)


@dataclass
class GroupMetrics:
    frame: BinaryMetrics
    video: BinaryMetrics

    def to_dict(self) -> dict[str, object]:
        return {"frame": self.frame.to_dict(), "video": self.video.to_dict()}


@dataclass
class Evaluation:
    """Metrics of one model on one clip set: overall, per dataset, per manipulation (vs. the same dataset's reals)."""

    model: str
    clip_set: str
    threshold: float
    overall: GroupMetrics
    per_dataset: dict[str, GroupMetrics]
    per_manipulation: dict[str, GroupMetrics]
    roc: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    uncertain_low: float | None = None
    verdicts: dict[str, dict[str, int]] = field(default_factory=dict)  # true class -> verdict -> video clips
    seconds: float = 0.0
    frames: int = 0
    video_scores: np.ndarray | None = None
    labels: np.ndarray | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "clip_set": self.clip_set,
            "threshold": self.threshold,
            "overall": self.overall.to_dict(),
            "per_dataset": {k: v.to_dict() for k, v in self.per_dataset.items()},
            "per_manipulation": {k: v.to_dict() for k, v in self.per_manipulation.items()},
            "roc": self.roc,
            "uncertain_low": self.uncertain_low,
            "verdicts": self.verdicts,
            "seconds": round(self.seconds, 2),
            "frames": self.frames,
        }


def evaluate_scores(
    model_name: str,
    clips: ClipSet,
    scores: ClipScores,
    threshold: float = 0.5,
    cnn_weight: float = 0.6,
    lstm_weight: float = 0.4,
    uncertain_low: float | None = None,
) -> Evaluation:
    """Metrics at `threshold`; with `uncertain_low`, also the served verdicts (real/uncertain/fake) per class."""
    video = scores.video_scores(cnn_weight, lstm_weight, clips.is_image)
    frame_clip = np.concatenate([np.full(len(f), c) for c, f in enumerate(clips.faces)]).astype(int)
    frame = scores.frame_level()
    # Video level means video clips: a photo is one frame, it counts at frame level only (unless the set
    # holds nothing but photos, as an image dataset does).
    is_video = ~clips.is_image if (~clips.is_image).any() else np.ones(len(clips), dtype=bool)

    def group(clip_mask: np.ndarray) -> GroupMetrics:
        frame_mask = clip_mask[frame_clip]
        video_mask = clip_mask & is_video
        return GroupMetrics(
            frame=binary_metrics(clips.labels[frame_clip][frame_mask], frame[frame_mask], threshold),
            video=binary_metrics(clips.labels[video_mask], video[video_mask], threshold),
        )

    datasets = np.array(clips.datasets)
    manipulations = np.array(clips.manipulations)
    is_real = clips.labels == 0
    per_dataset = {name: group(datasets == name) for name in sorted(set(clips.datasets))}
    per_manipulation = {}
    for name in sorted(set(manipulations[~is_real])):
        fake_datasets = set(datasets[(manipulations == name) & ~is_real])
        per_manipulation[name] = group((manipulations == name) | (is_real & np.isin(datasets, list(fake_datasets))))
    return Evaluation(
        model=model_name,
        clip_set=clips.name,
        threshold=threshold,
        overall=group(np.ones(len(clips), dtype=bool)),
        per_dataset=per_dataset,
        per_manipulation=per_manipulation,
        roc={
            "video": roc_points(clips.labels[is_video], video[is_video]),
            "frame": roc_points(clips.labels[frame_clip], frame),
        },
        uncertain_low=uncertain_low,
        verdicts=verdict_counts(clips.labels[is_video], video[is_video], threshold, uncertain_low),
        seconds=scores.seconds,
        frames=clips.frame_count(),
        video_scores=video,
        labels=clips.labels,
    )


def evaluate_model(
    model_name: str,
    clips: ClipSet,
    scorer: Scorer,
    sequence_length: int,
    threshold: float = 0.5,
    cnn_weight: float = 0.6,
    lstm_weight: float = 0.4,
    uncertain_low: float | None = None,
) -> Evaluation:
    scores = score_clips(clips, scorer, sequence_length)
    return evaluate_scores(model_name, clips, scores, threshold, cnn_weight, lstm_weight, uncertain_low)


def verdict_counts(
    labels: np.ndarray, scores: np.ndarray, fake_threshold: float, uncertain_low: float | None
) -> dict[str, dict[str, int]]:
    """How many real and fake clips get each verdict under the serving rule (empty without a band)."""
    if uncertain_low is None:
        return {}
    verdicts = np.where(scores >= fake_threshold, "fake", np.where(scores >= uncertain_low, "uncertain", "real"))
    return {
        truth: {v: int(np.sum((labels == label) & (verdicts == v))) for v in ("real", "uncertain", "fake")}
        for truth, label in (("real", 0), ("fake", 1))
    }


def fit_fusion_weight(
    clips: ClipSet, scores: ClipScores, default: float, step: float = 0.1
) -> tuple[float, dict[float, float | None]]:
    """The CNN weight (LSTM weight = 1 - it) with the best video-level AUC on `clips`, by grid search.

    The paper fixes its 60/40 split "through grid search on validation data"; this is that search. Ties
    (common on small sets) keep the weight closest to `default`. Returns (weight, AUC per weight).
    """
    from deepfake_training.evaluation.metrics import area_under_roc

    is_video = ~clips.is_image if (~clips.is_image).any() else np.ones(len(clips), dtype=bool)
    grid = [round(k * step, 4) for k in range(int(round(1 / step)) + 1)]
    table = {
        w: area_under_roc(clips.labels[is_video], scores.video_scores(w, 1.0 - w, clips.is_image)[is_video])
        for w in grid
    }
    defined = {w: auc for w, auc in table.items() if auc is not None}
    if not defined:
        return default, table
    best = max(defined.values())
    tied = [w for w, auc in defined.items() if auc >= best - 1e-9]
    return min(tied, key=lambda w: abs(w - default)), table


def roc_points(labels: np.ndarray, scores: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    from sklearn.metrics import roc_curve

    if len(np.unique(labels)) < 2:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(labels, scores)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def auc_of(evaluation: Evaluation, level: str = "video") -> float | None:
    return getattr(evaluation.overall, level).auc


def summary_line(evaluation: Evaluation) -> str:
    video, frame = evaluation.overall.video, evaluation.overall.frame
    return (
        f"{evaluation.model} on {evaluation.clip_set}: video AUC {_fmt(video.auc)} ({video.real} real / "
        f"{video.fake} fake clips), frame AUC {_fmt(frame.auc)} ({frame.count} frames), "
        f"video EER {_fmt(video.eer)}, {evaluation.seconds:.1f} s"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def merge_names(values: Sequence[str]) -> str:
    return "+".join(sorted(set(values)))
