"""The learning curve against the number of training people (`deepfake-train people-curve`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from deepfake_training.config import parse_overrides
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import ClipSet, PoolItem
from deepfake_training.datasets.records import MediaRecord
from deepfake_training.evaluation.people_curve import (
    at_least,
    choose_people,
    people_curve,
    subset_records,
    training_people,
)
from deepfake_training.workflows.reference import reference_config

from tests.training.test_cli import TOY

PEOPLE = [f"person-{k:02d}" for k in range(13)]


def test_subsets_of_one_seed_are_nested_and_seeds_differ() -> None:
    for seed in range(3):
        small, middle, every = (set(choose_people(PEOPLE, k, seed)) for k in (3, 6, 13))
        assert len(small) == 3 and len(middle) == 6
        assert small < middle < every == set(PEOPLE)
        assert choose_people(PEOPLE, 3, seed) == choose_people(PEOPLE, 3, seed)
    assert len({tuple(choose_people(PEOPLE, 3, seed)) for seed in range(5)}) > 1
    for size in (0, 14):
        with pytest.raises(ValueError, match="1 to 13 training people"):
            choose_people(PEOPLE, size, 0)


def test_a_pool_smaller_than_a_batch_is_repeated_up_to_one() -> None:
    pool = [PoolItem("real", 0, 0), PoolItem("sbi", 0, 0), PoolItem("swap", 1, 0)]
    grown = at_least(pool, 8)
    assert len(grown) == 8 and grown[:3] == pool and grown[3:6] == pool
    assert at_least(pool, 3) == pool and at_least([], 8) == []


def test_frame_labels_follow_the_concatenated_faces() -> None:
    faces = [np.zeros((n, 4, 4, 3), np.uint8) for n in (2, 3, 1)]
    clips = ClipSet(name="test", faces=faces, labels=np.array([0, 1, 0]), datasets=["d"] * 3, manipulations=["m"] * 3,
                    identities=["i"] * 3, keys=["a", "b", "c"], is_image=np.zeros(3, bool))  # fmt: skip
    assert clips.frame_labels().tolist() == [0, 0, 1, 1, 1, 0]
    assert len(clips.frame_labels()) == len(np.concatenate(clips.faces))


def test_a_subset_drops_only_training_records(local_records: list[MediaRecord]) -> None:
    keep = training_people(local_records)[:2]
    subset = subset_records(local_records, keep)
    assert {r.identity for r in subset if r.split == "train"} == set(keep)
    assert [r for r in subset if r.split != "train"] == [r for r in local_records if r.split != "train"]


def test_each_point_trains_on_its_people_and_a_rerun_reuses_them(
    local_records: list[MediaRecord], tiny_cache: FaceCache, tmp_path: Path
) -> None:
    config = reference_config(parse_overrides([*TOY, "phase2_steps=0"]))
    summary = people_curve(local_records, tiny_cache, config, tmp_path, sizes=[2, 4], seeds=1)
    points = {p["people"]: p for p in summary["points"]}
    assert set(points) == {2, 4}
    for size, point in points.items():
        folder = tmp_path / f"people{size:02d}-seed0"
        records = json.loads((folder / "data.json").read_text())["records"]
        trained = {r["identity"] for r in records if r["split"] == "train"}
        assert trained == set(point["identities"]) and len(trained) == size
        assert json.loads((folder / "config.json").read_text())["seed"] == config.seed  # seed 0 keeps the recipe's
        for metric in ("val_frame_auc", "test_frame_auc", "test_video_auc"):
            assert 0.0 <= point[metric] <= 1.0
    assert set(points[2]["identities"]) < set(points[4]["identities"])
    assert points[2]["train_faces"] <= points[4]["train_faces"]
    assert [row["people"] for row in summary["rows"]] == [2, 4]
    assert "| 4 | 1 |" in (tmp_path / "report.md").read_text()
    saved = tmp_path / "people02-seed0" / "point.json"
    before = saved.stat().st_mtime_ns
    assert people_curve(local_records, tiny_cache, config, tmp_path, sizes=[2, 4], seeds=1) == summary
    assert saved.stat().st_mtime_ns == before
