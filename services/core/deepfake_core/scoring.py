"""From model outputs to scores and verdicts: fusion, per-track aggregation and the decision rule.

Pure functions over numpy arrays, so the rule that turns numbers into 'fake' is testable without a model.
"""

from __future__ import annotations

import numpy as np

from deepfake_core.contract import ModelMetadata
from deepfake_core.result import MediaType, Thresholds, Verdict
from deepfake_core.settings import CoreSettings

DECISION_RULE = (
    "Each face track gets a fused score: cnn_weight x (mean per-frame CNN P(fake)) + lstm_weight x "
    "(mean BiLSTM P(fake) over the track's sequences). Only a window with as many face frames as the model "
    "was trained on (its sequence_length) gets a BiLSTM score; a track without such a window, and every "
    "image, uses the CNN score alone. The file's score and verdict are those of its most suspicious track "
    "(highest fused score), because one manipulated person makes the file manipulated. score >= fake "
    "threshold: 'fake'; uncertain_low <= score < fake: 'uncertain'; below: 'real'; no face found: "
    "'no_face'. Images use the model's photo thresholds when it was calibrated on photos."
)


def fake_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of class 1 ('fake') along the last axis, numerically stable."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp[..., 1] / exp.sum(axis=-1)).astype(np.float64)


def resolve_thresholds(
    settings: CoreSettings, metadata: ModelMetadata, media_type: MediaType = MediaType.VIDEO
) -> Thresholds:
    """Settings override the model's calibrated values; the model's values override defaults.

    Photos have no BiLSTM score, so their scores fall differently and a model may carry thresholds
    calibrated on photos; for an image the order is DEEPFAKE_IMAGE_*, DEEPFAKE_* (both media), the
    model's image_* and then the model's video thresholds.
    """
    fake, low = _video_thresholds(settings, metadata)
    if media_type is MediaType.IMAGE:
        fake, low = _image_thresholds(settings, metadata, fake, low)
    low = min(low, fake)
    cnn = settings.cnn_weight if settings.cnn_weight is not None else metadata.cnn_weight
    lstm = settings.lstm_weight if settings.lstm_weight is not None else metadata.lstm_weight
    total = cnn + lstm
    if total <= 0:
        cnn, lstm, total = 1.0, 0.0, 1.0
    return Thresholds(fake=fake, uncertain_low=low, cnn_weight=cnn / total, lstm_weight=lstm / total)


def _video_thresholds(settings: CoreSettings, metadata: ModelMetadata) -> tuple[float, float]:
    return (
        _first_set(settings.fake_threshold, metadata.fake_threshold),
        _first_set(settings.uncertain_low, metadata.uncertain_low),
    )


def _image_thresholds(
    settings: CoreSettings, metadata: ModelMetadata, video_fake: float, video_low: float
) -> tuple[float, float]:
    """A setting for photos, else a setting for both, else the model's photo value, else the video value."""
    return (
        _first_set(settings.image_fake_threshold, settings.fake_threshold, metadata.image_fake_threshold, video_fake),
        _first_set(settings.image_uncertain_low, settings.uncertain_low, metadata.image_uncertain_low, video_low),
    )


def _first_set(*values: float | None) -> float:
    return next(value for value in values if value is not None)


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
    """Group a track's observation positions into BiLSTM windows of at most `sequence_length`.

    With several plan groups (`windows:K`) each group's observations are cut apart; otherwise all the
    track's observations are, in order. A window may come out shorter than `sequence_length` (a short
    track, a face missed in some frames of a window, the tail of uniform:32): its frames still get CNN
    scores, but only `is_sequence_window` windows get a BiLSTM score.
    """
    if len(groups) > 1:
        windows = []
        for group in groups:
            members = set(group)
            chosen = [p for p, idx in zip(positions, frame_indices, strict=True) if idx in members]
            windows += _chunks(chosen, sequence_length)
        return windows
    return _chunks(positions, sequence_length)


def is_sequence_window(window: list[int], sequence_length: int) -> bool:
    """Whether a window gets a BiLSTM score: only one as long as the windows the model was trained on,
    because the BiLSTM's output on a shorter one (say the 2-frame tail of uniform:32) is untrained."""
    return len(window) >= sequence_length


def _chunks(positions: list[int], size: int) -> list[list[int]]:
    return [positions[i : i + size] for i in range(0, len(positions), size)]
