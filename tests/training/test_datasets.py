"""Dataset adapters on miniature trees with the official layouts, built from the real face videos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deepfake_core.settings import CoreSettings
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.datasets import (
    FAKE,
    REAL,
    DatasetLayoutError,
    celebdf_records,
    dfdc_records,
    faceforensics_records,
    load_records,
    local_media_records,
)
from deepfake_training.synthesis.swap import assert_identity_disjoint


def test_faceforensics_follows_the_official_split_files(ffpp_root: Path) -> None:
    records = faceforensics_records(ffpp_root, compression="c23")
    by_key = {r.key: r for r in records}
    assert len(records) == 6 + 2 * 6
    assert by_key["ffpp-c23-real-000"].split == "train" and by_key["ffpp-c23-real-000"].label == REAL
    fake = by_key["ffpp-c23-Deepfakes-003_002"]
    assert (fake.label, fake.split, fake.manipulation) == (FAKE, "val", "Deepfakes")
    assert fake.identity == "ffpp:003" and fake.source == "ffpp-c23-real-003"
    assert {r.manipulation for r in records} == {"real", "Deepfakes", "FaceSwap"}
    assert {r.split for r in records if r.path.stem.startswith("004")} == {"test"}
    assert_identity_disjoint([r.identity for r in records], [r.split for r in records])


def test_faceforensics_refuses_a_missing_split_file_and_a_wrong_compression(ffpp_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="c40"):
        faceforensics_records(ffpp_root, compression="c40")
    with pytest.raises(DatasetLayoutError, match="split file"):
        faceforensics_records(ffpp_root, splits_dir=tmp_path)
    with pytest.raises(DatasetLayoutError, match="compression"):
        faceforensics_records(ffpp_root, compression="c99")


def test_faceforensics_rejects_a_video_in_two_split_files(ffpp_root: Path, tmp_path: Path) -> None:
    for split, pairs in (("train", [["000", "001"]]), ("val", [["001", "002"]]), ("test", [])):
        (tmp_path / f"{split}.json").write_text(json.dumps(pairs))
    with pytest.raises(DatasetLayoutError, match="001"):
        faceforensics_records(ffpp_root, splits_dir=tmp_path)


def test_celebdf_reads_the_test_list_with_its_inverted_labels(celebdf_root: Path) -> None:
    records = celebdf_records(celebdf_root, val_fraction=0.0)
    by_key = {r.key: r for r in records}
    assert len(records) == 10
    assert by_key["celebdf-Celeb-real-id2_0000"].split == "test"
    assert by_key["celebdf-Celeb-real-id2_0000"].label == REAL  # listed with "1"
    swap = by_key["celebdf-Celeb-synthesis-id2_id0_0000"]
    assert (swap.split, swap.label, swap.identity) == ("test", FAKE, "celebdf:id2")
    assert by_key["celebdf-Celeb-synthesis-id0_id1_0000"].split == "train"
    assert by_key["celebdf-YouTube-real-00001"].split == "test"


def test_celebdf_test_list_wins_over_its_own_identity_quirk(celebdf_root: Path) -> None:
    listed = celebdf_records(celebdf_root, val_fraction=0.5)
    by_key = {r.key: r for r in listed}
    # id2_0000 is listed, id2_0001 is not (the real list's quirk): the unlisted one follows its celebrity
    assert by_key["celebdf-Celeb-real-id2_0001"].split == "test"
    assert {r.split for r in listed if r.identity == "celebdf:id2"} == {"test"}
    assert_identity_disjoint([r.identity for r in listed], [r.split for r in listed])
    dropped = celebdf_records(celebdf_root, val_fraction=0.5, leaked="drop")
    assert {r.key for r in listed} - {r.key for r in dropped} == {"celebdf-Celeb-real-id2_0001"}
    with pytest.raises(DatasetLayoutError, match="leaked"):
        celebdf_records(celebdf_root, leaked="train")


def test_dfdc_public_test_set_reads_labels_csv(dfdc_test_root: Path, dfdc_root: Path, tmp_path: Path) -> None:
    records = dfdc_records(dfdc_test_root)
    assert len(records) == 6 and {r.split for r in records} == {"test"}
    assert [r.label for r in records] == [REAL, FAKE] * 3  # labels.csv: 1 = fake
    assert len({r.identity for r in records}) == 6  # no originals named: each video its own group
    beside = tmp_path / "dfdc"
    beside.mkdir()
    (beside / "dfdc_train_part_0").symlink_to(dfdc_root / "dfdc_train_part_0")
    (beside / "test").symlink_to(dfdc_test_root)
    both = dfdc_records(beside)
    assert {r.split for r in both} == {"train", "test"} and len(both) == 4 + 6
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "labels.csv").write_text("name,fake\nx.mp4,1\n")
    with pytest.raises(DatasetLayoutError, match="filename,label"):
        dfdc_records(tmp_path / "bad")


def test_dfdc_preview_reads_dataset_json(dfdc_preview_root: Path, tmp_path: Path) -> None:
    records = load_records("dfdcp", dfdc_preview_root)
    assert len(records) == 6, "the listed video that is not on disk is skipped"
    by_split = {split: [r for r in records if r.split == split] for split in ("train", "test")}
    assert len(by_split["train"]) == 2 and len(by_split["test"]) == 4
    test = by_split["test"]
    assert sorted(r.label for r in test) == [REAL, REAL, FAKE, FAKE]
    assert {r.manipulation for r in test if r.label == FAKE} == {"method_A", "method_B"}
    assert {r.identity for r in test} == {"dfdcp:2001"}, "a fake joins its target actor's identity"
    assert {r.dataset for r in records} == {"dfdcp"} and len({r.key for r in records}) == 6
    assert_identity_disjoint([r.identity for r in records], [r.split for r in records])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "dataset.json").write_text(json.dumps({"original_videos/1/x.mp4": {"label": "REAL?"}}))
    (tmp_path / "bad" / "original_videos" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "original_videos" / "1" / "x.mp4").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match="expected real or fake"):
        load_records("dfdcp", tmp_path / "bad")
    with pytest.raises(DatasetLayoutError, match="dataset.json"):
        load_records("dfdcp", tmp_path)


def test_celebdf_validation_split_keeps_identities_whole(celebdf_root: Path) -> None:
    records = celebdf_records(celebdf_root, val_fraction=0.5)
    non_test = [r for r in records if r.split != "test"]
    splits_of = {}
    for record in non_test:
        splits_of.setdefault(record.identity, set()).add(record.split)
    assert all(len(s) == 1 for s in splits_of.values())


def test_celebdf_refuses_a_test_list_that_contradicts_the_folders(celebdf_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "celebdf"
    for folder in ("Celeb-real", "YouTube-real", "Celeb-synthesis"):
        (broken / folder).mkdir(parents=True)
        for video in (celebdf_root / folder).iterdir():
            (broken / folder / video.name).symlink_to(video)
    (broken / "List_of_testing_videos.txt").write_text("0 Celeb-real/id2_0000.mp4\n")
    with pytest.raises(DatasetLayoutError, match="against its folder"):
        celebdf_records(broken)


def test_dfdc_reads_labels_and_originals_per_part(dfdc_root: Path) -> None:
    records = dfdc_records(dfdc_root, val_parts={1})
    by_key = {r.key: r for r in records}
    assert len(records) == 8
    fake = by_key["dfdc-dfdc_train_part_0-fake0a"]
    assert (fake.label, fake.split, fake.identity) == (FAKE, "train", "dfdc:real0a")
    assert fake.source == "dfdc-dfdc_train_part_0-real0a"
    assert {r.split for r in records if "part_1" in r.key} == {"val"}
    assert by_key["dfdc-dfdc_train_part_1-real1b"].label == REAL


def test_load_records_names_the_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="unknown dataset kind"):
        load_records("youtube", tmp_path)


def test_local_media_split_keeps_every_identity_on_one_side(media_dir: Path) -> None:
    records = local_media_records(media_dir)
    assert {r.split for r in records} == {"train", "val", "test"}
    test_videos = {r.key for r in records if r.split == "test" and r.path.suffix == ".mp4"}
    assert test_videos == {"local-cap12_edit", "local-cap13_edit2"}  # one man: both videos on one side
    assert_identity_disjoint([r.identity for r in records], [r.split for r in records])


def test_face_cache_of_a_dataset_tree_is_resumable(ffpp_root: Path, tmp_path: Path) -> None:
    records = [r for r in faceforensics_records(ffpp_root) if r.split == "test"]
    cache = FaceCache(tmp_path, 64, CoreSettings().face_margin)
    first = cache.build(records, CoreSettings(), sampling="uniform:4", workers=2, progress=False)
    assert sorted(first.built) == sorted(r.key for r in records) and not first.failed
    faces = cache.load(records[0].key)
    assert faces.crops.shape[1:] == (64, 64, 3) and faces.landmarks.shape[1:] == (68, 2)
    assert 1 <= len(faces) <= 4
    # Landmarks are in crop pixels: the eyes of an aligned face sit in the upper half of the crop.
    eyes = faces.landmarks[:, 36:48].mean(axis=1)
    assert ((eyes > 0) & (eyes < 64)).all() and (eyes[:, 1] < 40).all()

    reopened = FaceCache(tmp_path, 64, CoreSettings().face_margin)
    second = reopened.build(records, CoreSettings(), sampling="uniform:4", workers=2, progress=False)
    assert not second.built and sorted(second.skipped) == sorted(r.key for r in records)
    changed = reopened.build(records[:1], CoreSettings(), sampling="uniform:2", progress=False)
    assert changed.built == [records[0].key] and len(reopened.load(records[0].key)) <= 2


def test_face_cache_records_an_undecodable_file_and_goes_on(ffpp_root: Path, tmp_path: Path) -> None:
    good = [r for r in faceforensics_records(ffpp_root) if r.split == "test"][:1]
    broken_path = tmp_path / "broken.mp4"
    broken_path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    broken = type(good[0])(**{**good[0].__dict__, "key": "broken", "path": broken_path})
    cache = FaceCache(tmp_path / "cache", 64, CoreSettings().face_margin)
    report = cache.build([broken, *good], CoreSettings(), sampling="uniform:2", progress=False)
    assert list(report.failed) == ["broken"] and report.built == [good[0].key]
    assert cache.entries()["broken"].status == "failed" and cache.entries()["broken"].message
