"""The face cache: every video's faces detected, aligned and stored once, so epochs never decode video.

Layout under `<root>/s<size>-m<margin>/`: one `faces/<key>.npz` per video (crops RGB uint8, landmarks in
crop pixels, frame indices, timestamps, track ids), `index.json` (the record and status of every video) and,
while a build runs, `index.jsonl`: one line appended per finished video (an append costs the same at 20,000
videos as at 10, where rewriting index.json cost 0.72 s per video), compacted into index.json when the build
ends and read on top of it until then, so a killed build resumes without redoing a finished video.
Faces come from the serving code's own face stage (`deepfake_core.assembly.build_detector`, without a model),
so training crops match production crops pixel for pixel. Building is parallel over videos (one process per
worker) and shows a progress bar.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from deepfake_core.faces.analyzer import FACE_STAGE_VERSION
from deepfake_core.settings import CoreSettings
from tqdm import tqdm

from deepfake_training.datasets.records import MediaRecord

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
JOURNAL_FILE = "index.jsonl"  # entries finished since index.json was last written
FORMAT_VERSION = 1
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._-]+$")

SamplingRule = str | Callable[[MediaRecord], str]


@dataclass
class CachedFaces:
    """The aligned faces of one video (or photo), all tracks; arrays share their first axis."""

    key: str
    crops: np.ndarray  # [N, S, S, 3] uint8 RGB
    landmarks: np.ndarray  # [N, 68, 2] float32, crop pixels
    frame_indices: np.ndarray  # [N] int32
    timestamps: np.ndarray  # [N] float32
    track_ids: np.ndarray  # [N] int32

    def __len__(self) -> int:
        return len(self.crops)

    def select(self, positions: np.ndarray | Sequence[int]) -> CachedFaces:
        positions = np.asarray(positions, dtype=np.int64)
        return CachedFaces(
            key=self.key,
            crops=self.crops[positions],
            landmarks=self.landmarks[positions],
            frame_indices=self.frame_indices[positions],
            timestamps=self.timestamps[positions],
            track_ids=self.track_ids[positions],
        )

    def tracks(self) -> list[CachedFaces]:
        """One `CachedFaces` per track, in track-id order."""
        return [self.select(np.flatnonzero(self.track_ids == t)) for t in np.unique(self.track_ids)]

    def main_track(self) -> CachedFaces:
        """The track seen in the most frames (the person the video is about); ties go to the larger face."""
        tracks = self.tracks()
        if not tracks:
            return self
        return max(tracks, key=lambda t: (len(t), float(np.ptp(t.landmarks[:, :, 0], axis=1).mean())))


@dataclass
class CacheEntry:
    """What the index knows about one video: its record, how it was sampled and what was found."""

    record: MediaRecord
    status: str  # "ok", "no_face" or "failed"
    sampling: str
    count: int = 0
    tracks: int = 0
    file: str | None = None
    message: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": self.record.to_dict(),
            "status": self.status,
            "sampling": self.sampling,
            "count": self.count,
            "tracks": self.tracks,
            "file": self.file,
            "message": self.message,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheEntry:
        return cls(**{**data, "record": MediaRecord.from_dict(data["record"])})


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{len(self.built)} cached, {len(self.skipped)} already cached, {len(self.no_face)} without a face, "
            f"{len(self.failed)} failed in {self.seconds:.1f} s"
        )


class FaceCache:
    """Aligned faces of many videos at one face size and margin."""

    def __init__(self, root: Path, face_size: int, margin: float) -> None:
        self.face_size = int(face_size)
        self.margin = float(margin)
        # The face stage's version in the name: crops the serving code no longer makes are never trained on.
        self.directory = Path(root) / f"s{self.face_size}-m{self.margin:g}-f{FACE_STAGE_VERSION}"
        self._entries: dict[str, CacheEntry] | None = None

    # --- reading ---------------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_FILE

    @property
    def journal_path(self) -> Path:
        return self.directory / JOURNAL_FILE

    def entries(self) -> dict[str, CacheEntry]:
        """index.json, with the journal of a build that has not compacted it yet (one killed mid-way) on top."""
        if self._entries is None:
            self._entries = {}
            if self.index_path.is_file():
                data = json.loads(self.index_path.read_text())
                self._entries = {key: CacheEntry.from_dict(value) for key, value in data["entries"].items()}
            self._entries.update(read_manifest(self.journal_path))
        return self._entries

    def ready(self, records: Iterable[MediaRecord]) -> list[MediaRecord]:
        """Those of `records` whose faces are cached (status ok)."""
        entries = self.entries()
        return [r for r in records if r.key in entries and entries[r.key].status == "ok"]

    def load(self, key: str) -> CachedFaces:
        entry = self.entries().get(key)
        if entry is None or entry.status != "ok" or entry.file is None:
            raise KeyError(f"no cached faces for {key!r} in {self.directory}; build the cache first")
        with np.load(self.directory / entry.file) as archive:
            return CachedFaces(
                key=key,
                crops=archive["crops"],
                landmarks=archive["landmarks"],
                frame_indices=archive["frame_indices"],
                timestamps=archive["timestamps"],
                track_ids=archive["track_ids"],
            )

    # --- building --------------------------------------------------------------------------------

    def build(
        self,
        records: Sequence[MediaRecord],
        settings: CoreSettings,
        sampling: SamplingRule = "uniform:32",
        workers: int = 1,
        progress: bool = True,
        job: Callable[[MediaRecord, str, str, int], CacheEntry] | None = None,
    ) -> BuildReport:
        """Detect, align and store the faces of every record not cached yet with the same sampling.

        Failed videos are recorded with their error and retried on the next build; one bad file never
        stops the others, and with `workers` > 1 a worker process that dies (a native crash, the OOM killer)
        costs only the video it was running (`face_shards.run_isolated`). `job` is the per-video function
        (default `cache_one_video`; tests pass one that crashes).
        """
        started = time.perf_counter()
        report = BuildReport()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "faces").mkdir(exist_ok=True)
        entries = self.entries()
        todo: list[tuple[MediaRecord, str]] = []
        for record in records:
            check_record_key(record.key)
            spec = sampling(record) if callable(sampling) else sampling
            done = entries.get(record.key)
            if done and done.sampling == spec and done.status in ("ok", "no_face") and self._file_ok(done):
                report.skipped.append(record.key)
                entries[record.key] = CacheEntry(**{**done.__dict__, "record": record})
            else:
                todo.append((record, spec))
        settings_json = settings.model_dump_json()
        bar = tqdm(total=len(todo), desc=f"faces {self.face_size}px", unit="video", disable=not progress or not todo)
        try:
            with self.journal_path.open("a") as journal:
                for entry in self._run(todo, settings_json, workers, job or cache_one_video):
                    entries[entry.record.key] = entry
                    append_entry(journal, entry)
                    {"ok": report.built, "no_face": report.no_face}.get(entry.status, []).append(entry.record.key)
                    if entry.status == "failed":
                        report.failed[entry.record.key] = entry.message
                        log.warning("face cache: %s failed: %s", entry.record.key, entry.message)
                    bar.update(1)
        finally:
            bar.close()
            self.write_index(entries)
        report.seconds = time.perf_counter() - started
        log.info("face cache %s: %s", self.directory, report.summary())
        return report

    def _file_ok(self, entry: CacheEntry) -> bool:
        return entry.status == "no_face" or (entry.file is not None and (self.directory / entry.file).is_file())

    def _run(
        self,
        todo: list[tuple[MediaRecord, str]],
        settings_json: str,
        workers: int,
        job: Callable[[MediaRecord, str, str, int], CacheEntry],
    ) -> Iterable[CacheEntry]:
        jobs = [(record, spec, str(self.directory), self.face_size) for record, spec in todo]
        if workers <= 1 or len(jobs) <= 1:
            init_face_worker(settings_json, self.face_size, threads=0)
            for item in jobs:
                yield job(*item)
            return
        # The sharded build's pool: a dead worker process costs its own video, not every video still queued.
        # Imported here because face_shards builds on this module.
        from deepfake_training.data.face_shards import run_isolated

        yield from run_isolated(jobs, settings_json, self.face_size, workers, job)

    def write_index(self, entries: dict[str, CacheEntry]) -> None:
        """Make `entries` the index: index.json written whole (atomically), then the journal it absorbed dropped."""
        self._entries = entries
        data = {
            "format": FORMAT_VERSION,
            "face_size": self.face_size,
            "margin": self.margin,
            "entries": {key: entry.to_dict() for key, entry in sorted(entries.items())},
        }
        temporary = self.index_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        os.replace(temporary, self.index_path)
        self.journal_path.unlink(missing_ok=True)  # a kill before this line only leaves lines index.json holds


def check_record_key(key: str) -> None:
    """A record key names files (`faces/<key>.npz`): refuse one that is not a plain, safe file name."""
    if not _SAFE_KEY.match(key):
        raise ValueError(f"record key {key!r} is not a safe file name")


# --- append-only manifests: the build journal here, the shard manifests in face_shards.py ----------------


def read_manifest(path: Path) -> dict[str, CacheEntry]:
    """Entries of one manifest, the last line of a key winning; a line cut short by a kill is ignored."""
    entries: dict[str, CacheEntry] = {}
    if not path.is_file():
        return entries
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = CacheEntry.from_dict(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            log.warning("%s:%d: unreadable manifest line skipped (%s)", path, number, error)
            continue
        entries[entry.record.key] = entry
    return entries


def append_entry(handle: TextIO, entry: CacheEntry) -> None:
    """One JSON line, flushed to disk: a killed build loses at most the video it was writing."""
    handle.write(json.dumps(entry.to_dict()) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


# --- worker side (one face stage per process) -------------------------------------------------------------

_worker_state: dict[str, Any] = {}


def init_face_worker(settings_json: str, face_size: int, threads: int) -> None:
    """Load the face stage of this process once (a pool initializer): the serving one, without a model."""
    import cv2
    from deepfake_core.assembly import build_detector

    if threads:
        cv2.setNumThreads(threads)
    settings = CoreSettings.model_validate_json(settings_json)
    key = (settings_json, face_size)
    if _worker_state.get("key") != key:
        face_stage = build_detector(settings, with_model=False, face_size=face_size, face_workers=threads or None)
        face_stage.analyzer  # noqa: B018 - load the face models now, not in the first video's time
        _worker_state.update(key=key, face_stage=face_stage)


def cache_one_video(record: MediaRecord, sampling: str, directory: str, face_size: int) -> CacheEntry:
    """Find, align and store the faces of one video in `directory` (after `init_face_worker` in this process)."""
    from deepfake_core.errors import DetectionError
    from deepfake_core.media.sampling import parse_sampling

    started = time.perf_counter()
    try:
        found = _worker_state["face_stage"].find_faces(record.path, parse_sampling(sampling))
        tracks = found.tracks
    except DetectionError as error:
        return CacheEntry(record, "failed", sampling, message=error.message, seconds=time.perf_counter() - started)
    observations = [(track.track_id, obs) for track in tracks for obs in track.observations]
    if not observations:
        return CacheEntry(record, "no_face", sampling, seconds=time.perf_counter() - started)
    landmarks = np.stack([crop_landmarks(obs.landmarks, obs.matrix) for _, obs in observations])
    arrays = {
        "crops": np.stack([obs.crop_rgb for _, obs in observations]).astype(np.uint8),
        "landmarks": landmarks.astype(np.float32),
        "frame_indices": np.array([obs.frame_index for _, obs in observations], dtype=np.int32),
        "timestamps": np.array([obs.timestamp_s for _, obs in observations], dtype=np.float32),
        "track_ids": np.array([track_id for track_id, _ in observations], dtype=np.int32),
    }
    relative = f"faces/{record.key}.npz"
    target = Path(directory) / relative
    temporary = target.with_name(target.stem + ".tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, target)
    return CacheEntry(
        record,
        "ok",
        sampling,
        count=len(observations),
        tracks=len(tracks),
        file=relative,
        seconds=time.perf_counter() - started,
    )


def crop_landmarks(landmarks_frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """68 landmarks from frame pixels to crop pixels with the alignment's 2x3 matrix."""
    points = np.asarray(landmarks_frame, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]
