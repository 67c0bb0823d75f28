"""From model outputs to scores and verdicts: fusion, per-track aggregation and the decision rule.

Pure functions over numpy arrays, so the rule that turns numbers into 'fake' is testable without a model.
"""

from __future__ import annotations

import numpy as np

from deepfake_core.inference.backend import ModelMetadata
from deepfake_core.result import Thresholds, Verdict
from deepfake_core.settings import CoreSettings

DECISION_RULE = (
    "Each face track gets a fused score: cnn_weight x (mean per-frame CNN P(fake)) + lstm_weight x "
    "(mean BiLSTM P(fake) over the track's sequences); images use the CNN score alone. The file's score "
    "and verdict are those of its most suspicious track (highest fused score), because one manipulated "
    "person makes the file manipulated. score >= fake threshold: 'fake'; uncertain_low <= score < fake: "
    "'uncertain'; below: 'real'; no face found: 'no_face'."
)


def fake_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of class 1 ('fake') along the last axis, numerically stable."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp[..., 1] / exp.sum(axis=-1)).astype(np.float64)


def resolve_thresholds(settings: CoreSettings, metadata: ModelMetadata) -> Thresholds:
    """Settings override the model's calibrated values; the model's values override defaults."""
    fake = settings.fake_threshold if settings.fake_threshold is not None else metadata.fake_threshold
    low = settings.uncertain_low if settings.uncertain_low is not None else metadata.uncertain_low
    low = min(low, fake)
    cnn = settings.cnn_weight if settings.cnn_weight is not None else metadata.cnn_weight
    lstm = settings.lstm_weight if settings.lstm_weight is not None else metadata.lstm_weight
    total = cnn + lstm
    if total <= 0:
        cnn, lstm, total = 1.0, 0.0, 1.0
    return Thresholds(fake=fake, uncertain_low=low, cnn_weight=cnn / total, lstm_weight=lstm / total)


def fuse(frame_score: float, sequence_score: float | None, thresholds: Thresholds) -> float:
    if sequence_score is None:
        return float(frame_score)
    return float(thresholds.cnn_weight * frame_score + thresholds.lstm_weight * sequence_score)


def verdict_for(score: float, thresholds: Thresholds) -> Verdict:
    if score >= thresholds.fake:
        return Verdict.FAKE
    if score >= thresholds.uncertain_low:
        return Verdict.UNCERTAIN
    return Verdict.REAL


def confidence_for(score: float, verdict: Verdict, thresholds: Thresholds) -> float:
    """How far the score lies inside its verdict's region, 0 at the boundary and 1 at the extreme."""
    if verdict is Verdict.FAKE:
        span = 1.0 - thresholds.fake
        return 1.0 if span <= 0 else min(1.0, (score - thresholds.fake) / span)
    if verdict is Verdict.REAL:
        span = thresholds.uncertain_low
        return 1.0 if span <= 0 else min(1.0, (thresholds.uncertain_low - score) / span)
    # uncertain: 0 at either edge of the band, never high
    return 0.0


def split_windows(positions: list[int], groups: tuple[tuple[int, ...], ...], frame_indices: list[int],
                  sequence_length: int) -> list[list[int]]:  # fmt: skip
    """Group a track's observation positions into BiLSTM sequences.

    With `windows:K` sampling each plan group (a run of consecutive frames) is one sequence; otherwise
    the track's frames are cut into consecutive chunks of at most `sequence_length`.
    """
    if len(groups) > 1:
        windows = []
        for group in groups:
            members = set(group)
            chosen = [p for p, idx in zip(positions, frame_indices, strict=True) if idx in members]
            if chosen:
                windows.append(chosen)
        return windows
    return [positions[i : i + sequence_length] for i in range(0, len(positions), sequence_length)]
