"""Threshold calibration on validation scores: the 'fake' threshold for a target false-positive rate, and
the 'uncertain' band below it.

Rule (the one serving applies, see deepfake_core.scoring): score >= fake_threshold -> fake;
uncertain_low <= score < fake_threshold -> uncertain; below -> real.
  fake_threshold: the lowest threshold at which at most `target_fpr` of validation reals score at or above it
                  (the paper reports an FPR of 3.2%).
  uncertain_low:  the highest threshold below which at most `uncertain_fnr` of validation fakes fall, capped
                  at fake_threshold. So a 'real' verdict misses few fakes and a 'fake' verdict accuses few
                  reals; what neither rule can vouch for is 'uncertain'.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# Thresholds stay strictly inside (0, 1): the core's settings validate them as open-interval probabilities.
_EDGE = 1e-6


@dataclass(frozen=True)
class Calibration:
    fake_threshold: float
    uncertain_low: float
    target_fpr: float
    uncertain_fnr: float
    achieved_fpr: float
    achieved_tpr: float
    fakes_below_band: float
    reals: int
    fakes: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def threshold_for_fpr(real_scores: np.ndarray, target_fpr: float) -> float:
    """Lowest t with mean(real_scores >= t) <= target_fpr; placed halfway into the gap above the cut."""
    scores = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]  # descending
    if len(scores) == 0:
        raise ValueError("calibration needs at least one real validation score")
    allowed = int(math.floor(target_fpr * len(scores) + 1e-9))  # reals that may score >= t
    if allowed >= len(scores):
        return _EDGE
    cut = scores[allowed]  # the highest real score that must stay below t
    above = scores[:allowed]
    higher = above[above > cut]
    upper = float(higher.min()) if len(higher) else min(1.0, cut + 2e-3)
    return float(np.clip((cut + upper) / 2.0 if upper > cut else np.nextafter(cut, 1.0), _EDGE, 1.0 - _EDGE))


def threshold_for_fnr(fake_scores: np.ndarray, target_fnr: float) -> float:
    """Highest t with mean(fake_scores < t) <= target_fnr."""
    scores = np.sort(np.asarray(fake_scores, dtype=np.float64))  # ascending
    if len(scores) == 0:
        raise ValueError("calibration needs at least one fake validation score")
    allowed = int(math.floor(target_fnr * len(scores) + 1e-9))  # fakes that may fall below t
    return float(np.clip(scores[min(allowed, len(scores) - 1)], _EDGE, 1.0 - _EDGE))


def calibrate(
    labels: np.ndarray, scores: np.ndarray, target_fpr: float = 0.032, uncertain_fnr: float = 0.05
) -> Calibration:
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    real, fake = scores[labels == 0], scores[labels == 1]
    fake_threshold = threshold_for_fpr(real, target_fpr)
    uncertain_low = min(threshold_for_fnr(fake, uncertain_fnr), fake_threshold)
    return Calibration(
        fake_threshold=fake_threshold,
        uncertain_low=uncertain_low,
        target_fpr=target_fpr,
        uncertain_fnr=uncertain_fnr,
        achieved_fpr=float(np.mean(real >= fake_threshold)),
        achieved_tpr=float(np.mean(fake >= fake_threshold)),
        fakes_below_band=float(np.mean(fake < uncertain_low)),
        reals=len(real),
        fakes=len(fake),
    )
