"""Sharded face caching on the miniature FaceForensics++ tree: kill and resume, crashes, merge equals one go."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from deepfake_core.settings import CoreSettings
from deepfake_training.cli import main
from deepfake_training.data.face_cache import CacheEntry, FaceCache, cache_one_video, read_manifest
from deepfake_training.data.face_shards import (
    CRASHED,
    ShardSpecError,
    build_shard,
    manifest_path,
    parse_shard,
    shard_of,
    shard_records,
)
from deepfake_training.datasets import MediaRecord, faceforensics_records

SAMPLING = "uniform:3"
PROJECT = Path(__file__).resolve().parents[2]


def crash_on_key(record: MediaRecord, sampling: str, directory: str, face_size: int) -> CacheEntry:
    """A worker that dies like a segfaulting decoder on the video named by CRASH_KEY."""
    if record.key == os.environ.get("CRASH_KEY"):
        os._exit(139)
    return cache_one_video(record, sampling, directory, face_size)


def kill_shard_on_key(record: MediaRecord, sampling: str, directory: str, face_size: int) -> CacheEntry:
    """The shard process is killed (SIGKILL, as by the OOM killer or a node loss) while this video is cached."""
    if record.key == os.environ.get("KILL_KEY"):
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(1)
    return cache_one_video(record, sampling, directory, face_size)


@pytest.fixture(scope="module")
def records(ffpp_root: Path) -> list[MediaRecord]:
    return faceforensics_records(ffpp_root, manipulations=["Deepfakes"])


def test_shards_partition_the_records_and_reject_a_bad_spec(records: list[MediaRecord]) -> None:
    parts = [shard_records(records, i, 3) for i in range(3)]
    assert sorted(r.key for part in parts for r in part) == sorted(r.key for r in records)
    assert all(shard_of(r.key, 3) == i for i, part in enumerate(parts) for r in part)
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ShardSpecError, match="I/N"):
            parse_shard(bad)


def test_a_killed_shard_resumes_without_redoing_finished_videos(
    records: list[MediaRecord], ffpp_root: Path, tmp_path: Path
) -> None:
    cache = FaceCache(tmp_path, 64, CoreSettings().face_margin)
    mine = shard_records(records, 0, 1)
    killed_at = mine[3].key  # workers=1: videos run in order, so exactly three finish before the kill
    script = (
        "import sys; from pathlib import Path; from deepfake_core.settings import CoreSettings\n"
        "from deepfake_training.datasets import faceforensics_records\n"
        "from deepfake_training.data.face_cache import FaceCache\n"
        "from deepfake_training.data.face_shards import build_shard\n"
        "from tests.training.test_face_shards import kill_shard_on_key\n"
        f"records = faceforensics_records(Path({str(ffpp_root)!r}), manipulations=['Deepfakes'])\n"
        f"cache = FaceCache(Path({str(tmp_path)!r}), 64, CoreSettings().face_margin)\n"
        f"build_shard(cache, records, CoreSettings(), {SAMPLING!r}, (0, 1), workers=1, progress=False,"
        " job=kill_shard_on_key)\n"
    )
    environment = {**os.environ, "KILL_KEY": killed_at, "PYTHONPATH": str(PROJECT)}
    killed = subprocess.run([sys.executable, "-c", script], env=environment, cwd=PROJECT, timeout=300, check=False)
    assert killed.returncode == -signal.SIGKILL
    finished = read_manifest(manifest_path(cache, 0, 1))
    assert sorted(finished) == sorted(r.key for r in mine[:3])
    assert all(entry.status == "ok" for entry in finished.values())

    resumed = build_shard(cache, records, CoreSettings(), SAMPLING, (0, 1), workers=1, progress=False)
    assert sorted(resumed.skipped) == sorted(finished)  # nothing finished is redone
    assert sorted(resumed.built) == sorted(r.key for r in mine[3:]) and not resumed.failed
    again = build_shard(cache, records, CoreSettings(), SAMPLING, (0, 1), workers=1, progress=False)
    assert not again.built and len(again.skipped) == len(mine)  # a finished shard is a no-op


def test_a_crashing_worker_costs_only_its_video(records: list[MediaRecord], tmp_path: Path, monkeypatch) -> None:
    cache = FaceCache(tmp_path, 64, CoreSettings().face_margin)
    chosen = records[:5]
    monkeypatch.setenv("CRASH_KEY", chosen[2].key)
    report = build_shard(cache, chosen, CoreSettings(), SAMPLING, (0, 1), workers=2, progress=False, job=crash_on_key)
    assert report.failed == {chosen[2].key: CRASHED}
    assert sorted(report.built + report.no_face) == sorted(r.key for r in chosen if r is not chosen[2])
    rerun = build_shard(cache, chosen, CoreSettings(), SAMPLING, (0, 1), workers=2, progress=False, job=crash_on_key)
    assert not rerun.built and not rerun.failed and len(rerun.skipped) == 5  # the crash is recorded, not retried
    monkeypatch.delenv("CRASH_KEY")
    retried = build_shard(cache, chosen, CoreSettings(), SAMPLING, (0, 1), workers=1, progress=False, retry_failed=True)
    assert retried.built == [chosen[2].key]


def test_merging_shards_equals_caching_in_one_go(records: list[MediaRecord], ffpp_root: Path, tmp_path: Path) -> None:
    one_go = FaceCache(tmp_path / "one-go", 64, CoreSettings().face_margin)
    one_go.build(records, CoreSettings(), sampling=SAMPLING, workers=1, progress=False)
    common = ["--dataset", f"ffpp={ffpp_root}", "--dataset-option", "ffpp.manipulations=[Deepfakes]", "--size", "64",
              "--sampling", SAMPLING, "--cache-root", str(tmp_path / "sharded"), "--workers", "2"]  # fmt: skip
    for shard in ("0/2", "1/2"):
        assert main(["cache", *common, "--shard", shard]) == 0
    assert main(["cache-merge", "--size", "64", "--cache-root", str(tmp_path / "sharded")]) == 0
    merged = FaceCache(tmp_path / "sharded", 64, CoreSettings().face_margin)
    expected, found = one_go.entries(), merged.entries()
    assert sorted(found) == sorted(expected) == sorted(r.key for r in records)

    def comparable(entry: CacheEntry) -> dict[str, object]:
        return {k: v for k, v in entry.to_dict().items() if k != "seconds"}

    for key, entry in expected.items():
        assert comparable(found[key]) == comparable(entry)
        if entry.status == "ok":
            a, b = one_go.load(key), merged.load(key)
            np.testing.assert_array_equal(a.crops, b.crops)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-4)
            np.testing.assert_array_equal(a.track_ids, b.track_ids)
    index = json.loads(merged.index_path.read_text())
    assert index["face_size"] == 64 and len(index["entries"]) == len(records)
