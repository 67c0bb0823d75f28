"""Binary detection metrics over P(fake) scores: AUC, EER, log loss, and the confusion-based ones at a threshold.

Conventions (DeepfakeBench's): label 1 = fake = positive; a score >= threshold is called fake. Metrics that
need both classes (AUC, EER) are None when one class is missing, never a misleading number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

PROBABILITY_FLOOR = 1e-7


@dataclass(frozen=True)
class BinaryMetrics:
    count: int
    real: int
    fake: int
    threshold: float
    auc: float | None
    eer: float | None
    log_loss: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    fpr: float

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def area_under_roc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The rate where false positives equal false negatives, interpolated between ROC points."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    difference = fpr - fnr  # rises from -1 to +1 along the curve
    crossing = int(np.argmax(difference >= 0))
    if crossing == 0:
        return float(fpr[0])
    # Linear interpolation between the last point below and the first at/above the crossing.
    d0, d1 = difference[crossing - 1], difference[crossing]
    weight = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(fpr[crossing - 1] + weight * (fpr[crossing] - fpr[crossing - 1]))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean binary cross-entropy of the scores as probabilities (clipped away from 0 and 1)."""
    labels = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(scores, dtype=np.float64), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log(1.0 - p))) if len(labels) else math.nan


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> BinaryMetrics:
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    predicted = scores >= threshold
    positives = labels == 1
    true_positive = int(np.sum(predicted & positives))
    false_positive = int(np.sum(predicted & ~positives))
    false_negative = int(np.sum(~predicted & positives))
    true_negative = int(np.sum(~predicted & ~positives))
    precision = _ratio(true_positive, true_positive + false_positive)
    recall = _ratio(true_positive, true_positive + false_negative)
    return BinaryMetrics(
        count=len(labels),
        real=int(np.sum(~positives)),
        fake=int(np.sum(positives)),
        threshold=float(threshold),
        auc=area_under_roc(labels, scores),
        eer=equal_error_rate(labels, scores),
        log_loss=log_loss(labels, scores),
        accuracy=_ratio(true_positive + true_negative, len(labels)),
        precision=precision,
        recall=recall,
        f1=_ratio(2 * precision * recall, precision + recall),
        fpr=_ratio(false_positive, false_positive + true_negative),
    )


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def bootstrap_auc_by_group(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    rounds: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float | None, float | None]:
    """A percentile interval for the AUC that resamples whole groups (people), not clips.

    Clips of one person are strongly correlated (same face, light, camera), so resampling clips would
    give an interval as narrow as if every clip were a new person. Resampling people with replacement
    answers the question that matters: how much would the AUC move with another set of people?
    Rounds whose draw holds one class only are skipped; (None, None) when fewer than two groups exist.
    """
    labels, scores, groups = np.asarray(labels), np.asarray(scores, dtype=np.float64), np.asarray(groups)
    names = np.unique(groups)
    if len(names) < 2:
        return None, None
    members = [np.flatnonzero(groups == name) for name in names]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        chosen = np.concatenate([members[k] for k in rng.integers(0, len(names), len(names))])
        auc = area_under_roc(labels[chosen], scores[chosen])
        if auc is not None:
            values.append(auc)
    if not values:
        return None, None
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
