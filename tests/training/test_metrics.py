"""Evaluation metrics and calibration against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from deepfake_training.data.samples import ClipSet
from deepfake_training.evaluation.calibration import calibrate, threshold_for_fpr
from deepfake_training.evaluation.metrics import binary_metrics, equal_error_rate
from deepfake_training.evaluation.reports import write_report
from deepfake_training.evaluation.scorer import evaluate_scores, fit_fusion_weight, score_clips

LABELS = np.array([0, 0, 0, 1, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9])


def test_binary_metrics_match_hand_computed_values() -> None:
    m = binary_metrics(LABELS, SCORES, threshold=0.5)
    # 7 of the 9 (fake, real) pairs are ordered correctly: 0.8 and 0.9 beat all reals, 0.3 beats 0.1.
    assert m.auc == pytest.approx(7 / 9)
    # At 0.5: TP = 2 (0.8, 0.9), FN = 1 (0.3), FP = 0, TN = 3.
    assert (m.accuracy, m.precision, m.recall, m.fpr) == pytest.approx((5 / 6, 1.0, 2 / 3, 0.0))
    assert m.f1 == pytest.approx(2 * 1.0 * (2 / 3) / (1.0 + 2 / 3))
    # Any threshold in (0.35, 0.4] misclassifies one real (0.4) and one fake (0.3): FPR = FNR = 1/3.
    assert m.eer == pytest.approx(1 / 3)
    expected_loss = -np.mean(np.log([0.9, 0.6, 0.65, 0.8, 0.3, 0.9]))
    assert m.log_loss == pytest.approx(expected_loss)
    assert (m.count, m.real, m.fake) == (6, 3, 3)


def test_metrics_need_both_classes_for_auc_and_eer() -> None:
    m = binary_metrics(np.zeros(4), np.array([0.1, 0.2, 0.7, 0.9]), threshold=0.5)
    assert m.auc is None and m.eer is None
    assert m.fpr == pytest.approx(0.5) and m.recall == 0.0


def test_eer_of_a_perfect_and_an_inverted_ranking() -> None:
    labels = np.array([0, 0, 1, 1])
    assert equal_error_rate(labels, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(0.0)
    assert equal_error_rate(labels, np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(1.0)


def test_calibration_meets_the_target_false_positive_rate() -> None:
    reals = np.linspace(0.0, 0.99, 100)
    fakes = np.linspace(0.5, 1.0, 20)
    labels = np.r_[np.zeros(100), np.ones(20)]
    result = calibrate(labels, np.r_[reals, fakes], target_fpr=0.032, uncertain_fnr=0.05)
    # 3 of 100 reals may score above: the cut falls between the 4th (0.96) and 3rd (0.97) highest real.
    assert result.fake_threshold == pytest.approx(0.965)
    assert result.achieved_fpr == pytest.approx(0.03) and result.achieved_fpr <= 0.032
    # 1 of 20 fakes may fall below the band: the band starts at the second-lowest fake.
    assert result.uncertain_low == pytest.approx(fakes[1])
    assert result.fakes_below_band == pytest.approx(0.05)
    assert 0 < result.uncertain_low <= result.fake_threshold < 1


def test_threshold_for_fpr_handles_ties_and_a_zero_target() -> None:
    tied = np.array([0.5, 0.5, 0.5, 0.2])
    threshold = threshold_for_fpr(tied, 0.25)
    assert np.mean(tied >= threshold) <= 0.25
    assert threshold_for_fpr(np.array([0.1, 0.3]), 0.0) > 0.3


def _logit_scorer(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(fake) of a frame = its mean pixel value in [0, 1]; of a window = the mean over its frames."""
    p = faces.mean(axis=(2, 3, 4)).clip(1e-6, 1 - 1e-6)  # [B, T]
    logit = np.log(p / (1 - p))
    q = p.mean(axis=1)
    return np.stack([np.zeros_like(logit), logit], -1), np.stack([np.zeros_like(q), np.log(q / (1 - q))], -1)


def _constant_clip(values: list[float]) -> np.ndarray:
    return np.stack([np.full((4, 4, 3), round(v * 255), np.uint8) for v in values])


def test_clip_scores_fuse_cnn_and_lstm_like_serving() -> None:
    clips = ClipSet(
        name="hand",
        faces=[_constant_clip([0.2] * 3 + [0.6] * 2), _constant_clip([0.8]), _constant_clip([0.4, 0.4])],
        labels=np.array([0, 1, 1]),
        datasets=["d", "d", "d"],
        manipulations=["real", "sbi", "swap"],
        identities=["a", "b", "c"],
        keys=["0", "1", "2"],
        is_image=np.array([False, True, False]),
    )
    scores = score_clips(clips, _logit_scorer, sequence_length=3)
    p = lambda v: round(v * 255) / 255  # noqa: E731 - the pixel quantisation of the clip
    frame_mean = (3 * p(0.2) + 2 * p(0.6)) / 5
    # windows of at most 3 frames: [0, 1, 2] and [3, 4]; like serving, only the full one gets a sequence score
    video = scores.video_scores(0.6, 0.4, clips.is_image)
    assert video[0] == pytest.approx(0.6 * frame_mean + 0.4 * p(0.2), abs=1e-6)
    # a clip with no full window (2 frames < 3) is scored by the CNN alone, as serving scores it
    assert math.isnan(scores.sequence_scores[2]) and video[2] == pytest.approx(p(0.4), abs=1e-6)
    assert video[1] == pytest.approx(p(0.8), abs=1e-6), "a photo is scored by the CNN alone"
    assert math.isnan(scores.sequence_scores[1])
    evaluation = evaluate_scores("stub", clips, scores, threshold=0.5)
    assert evaluation.overall.video.auc == pytest.approx(1.0)
    assert set(evaluation.per_manipulation) == {"sbi", "swap"}
    assert evaluation.per_manipulation["swap"].video.count == 2  # the swap and the dataset's real


def test_report_files_hold_the_metrics(tmp_path) -> None:
    clips = ClipSet(
        name="hand",
        faces=[_constant_clip([v]) for v in SCORES],
        labels=LABELS,
        datasets=["x"] * 3 + ["x"] * 3,
        manipulations=["real"] * 3 + ["sbi"] * 3,
        identities=list("abcdef"),
        keys=list("abcdef"),
        is_image=np.ones(6, dtype=bool),
    )
    evaluation = evaluate_scores("stub", clips, score_clips(clips, _logit_scorer, 30), threshold=0.5)
    paths = write_report([evaluation], tmp_path, "Hand-made")
    import json

    data = json.loads(paths["json"].read_text())
    assert data["evaluations"][0]["overall"]["video"]["auc"] == pytest.approx(7 / 9, abs=1e-3)
    assert "| all | video | 3/3 |" in paths["markdown"].read_text()
    assert paths["roc"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fusion_grid_search_picks_the_best_weight_and_breaks_ties_towards_the_default() -> None:
    def scorer(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The CNN branch ranks clips backwards (p = 1 - pixel), the BiLSTM forwards (p = pixel)."""
        p = faces.mean(axis=(2, 3, 4)).clip(1e-6, 1 - 1e-6)
        frame = np.log((1 - p) / p)
        q = p.mean(axis=1)
        return np.stack([np.zeros_like(frame), frame], -1), np.stack([np.zeros_like(q), np.log(q / (1 - q))], -1)

    values = [0.2, 0.3, 0.7, 0.8]
    clips = ClipSet(
        name="fusion",
        faces=[_constant_clip([v] * 4) for v in values],
        labels=np.array([0, 0, 1, 1]),
        datasets=["d"] * 4,
        manipulations=["real", "real", "sbi", "sbi"],
        identities=list("abcd"),
        keys=list("abcd"),
        is_image=np.zeros(4, dtype=bool),
    )
    scores = score_clips(clips, scorer, sequence_length=4)
    weight, table = fit_fusion_weight(clips, scores, default=0.6)
    # fused = w (1 - x) + (1 - w) x ranks forwards only for w < 0.5: AUC 1 for 0.0..0.4, 0 above 0.5.
    assert table[0.0] == table[0.4] == pytest.approx(1.0) and table[0.6] == pytest.approx(0.0)
    assert weight == pytest.approx(0.4)
