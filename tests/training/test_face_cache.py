"""The face cache's build journal: one line appended per video, compacted into index.json once, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from deepfake_core.settings import CoreSettings
from deepfake_training.data.face_cache import CacheEntry, FaceCache, cache_one_video
from deepfake_training.datasets import MediaRecord, faceforensics_records

SAMPLING = "uniform:1"  # one frame per video: the journal, not the faces, is under test
PROJECT = Path(__file__).resolve().parents[2]


def kill_build_on_key(record: MediaRecord, sampling: str, directory: str, face_size: int) -> CacheEntry:
    """The build process dies (SIGKILL, as by the OOM killer) while this video is cached: no `finally` runs."""
    if record.key == os.environ.get("KILL_KEY"):
        os.kill(os.getpid(), signal.SIGKILL)
    return cache_one_video(record, sampling, directory, face_size)


@pytest.fixture(scope="module")
def records(ffpp_root: Path) -> list[MediaRecord]:
    return faceforensics_records(ffpp_root, manipulations=["Deepfakes"])[:4]


def test_a_build_appends_per_video_and_writes_the_index_once(
    records: list[MediaRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FaceCache(tmp_path, 64, CoreSettings().face_margin)
    writes: list[int] = []
    original = FaceCache.write_index

    def counting(self: FaceCache, entries: dict[str, CacheEntry]) -> None:
        writes.append(len(entries))
        original(self, entries)

    monkeypatch.setattr(FaceCache, "write_index", counting)
    report = cache.build(records, CoreSettings(), sampling=SAMPLING, progress=False)
    assert sorted(report.built + report.no_face) == sorted(r.key for r in records) and not report.failed
    assert writes == [len(records)]  # once, at the end: not once per video
    assert not cache.journal_path.exists(), "the journal is compacted into index.json"
    index = json.loads(cache.index_path.read_text())
    assert sorted(index["entries"]) == sorted(r.key for r in records)


def test_a_killed_build_resumes_from_its_journal(records: list[MediaRecord], ffpp_root: Path, tmp_path: Path) -> None:
    killed_at = records[2].key  # workers=1: videos run in order, so exactly two finish before the kill
    script = (
        "from pathlib import Path; from deepfake_core.settings import CoreSettings\n"
        "from deepfake_training.data import face_cache\n"
        "from deepfake_training.datasets import faceforensics_records\n"
        "from tests.training.test_face_cache import kill_build_on_key\n"
        "face_cache.cache_one_video = kill_build_on_key\n"
        f"records = faceforensics_records(Path({str(ffpp_root)!r}), manipulations=['Deepfakes'])[:4]\n"
        f"cache = face_cache.FaceCache(Path({str(tmp_path)!r}), 64, CoreSettings().face_margin)\n"
        f"cache.build(records, CoreSettings(), sampling={SAMPLING!r}, workers=1, progress=False)\n"
    )
    environment = {**os.environ, "KILL_KEY": killed_at, "PYTHONPATH": str(PROJECT)}
    killed = subprocess.run([sys.executable, "-c", script], env=environment, cwd=PROJECT, timeout=300, check=False)
    assert killed.returncode == -signal.SIGKILL

    cache = FaceCache(tmp_path, 64, CoreSettings().face_margin)
    assert not cache.index_path.exists() and cache.journal_path.exists()
    finished = cache.entries()  # index.json (none yet) with the journal on top
    assert sorted(finished) == sorted(r.key for r in records[:2])

    resumed = FaceCache(tmp_path, 64, CoreSettings().face_margin).build(
        records, CoreSettings(), sampling=SAMPLING, workers=1, progress=False
    )
    assert sorted(resumed.skipped) == sorted(finished)  # nothing finished is redone
    assert sorted(resumed.built + resumed.no_face) == sorted(r.key for r in records[2:]) and not resumed.failed
    reread = FaceCache(tmp_path, 64, CoreSettings().face_margin)
    assert sorted(reread.entries()) == sorted(r.key for r in records) and not reread.journal_path.exists()


def crash_on_key(record: MediaRecord, sampling: str, directory: str, face_size: int) -> CacheEntry:
    """A worker process that dies like a segfaulting decoder on the video named by CRASH_KEY."""
    if record.key == os.environ.get("CRASH_KEY"):
        os._exit(139)
    return cache_one_video(record, sampling, directory, face_size)


def test_a_crashed_worker_costs_the_pool_only_its_video(
    records: list[MediaRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train`'s cache build (not sharded) with a process pool: the dead worker's video is recorded as failed and
    skipped; every other video is cached; the next build retries only the failed one."""
    cache = FaceCache(tmp_path, 64, CoreSettings().face_margin)
    monkeypatch.setenv("CRASH_KEY", records[1].key)
    report = cache.build(records, CoreSettings(), sampling=SAMPLING, workers=2, progress=False, job=crash_on_key)
    assert list(report.failed) == [records[1].key] and "worker process died" in report.failed[records[1].key]
    assert sorted(report.built + report.no_face) == sorted(r.key for r in records if r is not records[1])
    assert FaceCache(tmp_path, 64, CoreSettings().face_margin).entries()[records[1].key].status == "failed"
    monkeypatch.delenv("CRASH_KEY")
    again = cache.build(records, CoreSettings(), sampling=SAMPLING, workers=2, progress=False)
    assert sorted(again.skipped) == sorted(r.key for r in records if r is not records[1])
    assert again.built + again.no_face == [records[1].key] and not again.failed


def test_crops_of_another_face_stage_version_are_never_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A face-stage change that gives other crops raises FACE_STAGE_VERSION: the cache then lives in a new folder
    (rebuilt), and the identity embeddings' cache signature changes, so training never mixes old and new crops."""
    from deepfake_core.faces import analyzer
    from deepfake_training.data import face_cache, identities

    record = MediaRecord(
        key="one", path=Path(__file__), label=0, dataset="t", manipulation="real", split="train", identity="x"
    )
    before = FaceCache(tmp_path, 64, 0.25).directory
    signature = identities._signature(record, CoreSettings(), "fps:8")
    for module in (analyzer, face_cache, identities):
        monkeypatch.setattr(module, "FACE_STAGE_VERSION", analyzer.FACE_STAGE_VERSION + 1, raising=False)

    assert FaceCache(tmp_path, 64, 0.25).directory != before
    assert identities._signature(record, CoreSettings(), "fps:8") != signature
