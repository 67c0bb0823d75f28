"""The faces stage of the pipeline: sampled frames in, tracks of aligned face crops out.

The detector runs on key frames only (a few per BiLSTM window); on the frames between, each face is
followed by its own landmarks (`propagation.py`), and a segment whose ends disagree (a face came or went)
falls back to detecting on every frame. The first key frame of a window is searched at the detector's full
resolution; the window's later key frames only re-anchor faces already known, so they are searched at the
resolution those faces need (`refresh_side`: a fifth of the cost on a 720p talking head). Frames and
segments are independent until tracking, so they run on a small thread pool; tracking then links the
results in order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepfake_core.faces.align import align_face
from deepfake_core.faces.detectors import FaceBox, FaceDetector, make_detector
from deepfake_core.faces.landmarks import LandmarkFitter
from deepfake_core.faces.propagation import anchor_box, box_from_landmarks, key_positions, run_starts
from deepfake_core.faces.tracking import FaceObservation, FaceTrack, track_faces
from deepfake_core.media.frames import DecodedFrame
from deepfake_core.settings import CoreSettings

# Which crops this face stage makes: raised whenever a change to detection, landmarks, alignment or tracking gives
# other crops for the same file and settings. Training's face cache and identity embeddings key on it, so they
# are rebuilt with the crops serving now makes. 2: later key frames searched at their faces' resolution, small
# pictures below the 640 px cap.
FACE_STAGE_VERSION = 2
# More threads than this only contend with each other (and with yuface's own OpenMP threads).
MAX_WORKERS = 4
# A window's later key frames are searched at a resolution where its smallest known face is at least this
# many pixels (yuface finds faces down to ~10 px; the margin covers a face that shrinks or turns away), and
# never below REFRESH_MIN_SIDE on the longer side.
REFRESH_FACE_PX = 64
REFRESH_MIN_SIDE = 320

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


class FaceAnalyzer:
    """Detect, fit landmarks, align and track the faces of a list of decoded frames.

    Build one per process and reuse it: the detector and the 100 MB landmark model load once.
    """

    def __init__(
        self,
        settings: CoreSettings,
        face_size: int,
        detector: FaceDetector | None = None,
        workers: int | None = None,
    ) -> None:
        self.settings = settings
        self.face_size = face_size
        self.detector = detector or make_detector(settings)
        self.landmarks = LandmarkFitter(self.detector.name)
        self.workers = workers or default_workers()

    def observe(self, frame: DecodedFrame, max_side: int | None = None) -> list[FaceObservation]:
        """Every face of one frame, detected (at most at `max_side`) and aligned; largest first."""
        return [
            self._observation(frame, box, self.landmarks.fit(frame.image, box))
            for box in self.detector.detect(frame.image, max_side)
        ]

    def analyze(
        self, frames: list[DecodedFrame], progress: Callable[[float], None] | None = None, *, full: bool = False
    ) -> list[FaceTrack]:
        """Tracks with at least `settings.min_track_frames` faces; [] when no face was found.

        `full` runs the detector on every frame (the reference the key-frame path is tested against).
        `progress` receives the fraction of frames done, from the calling thread.
        """
        ordered = sorted(frames, key=lambda frame: frame.index)
        interval = 1 if full else self.settings.face_key_interval
        timestamps = [f.timestamp_s for f in ordered]
        keys = key_positions(timestamps, interval, self.settings.face_track_max_gap_s)
        starts = set(run_starts(timestamps, self.settings.face_track_max_gap_s))
        per_frame: list[list[FaceObservation]] = [[] for _ in ordered]
        done = 0
        with self._mapper(len(keys)) as run:
            # Window starts at full resolution, then the window's other key frames at what its faces need.
            first = [p for p in keys if full or p in starts]
            later = [p for p in keys if not (full or p in starts)]
            for position, observations in zip(first, run(self.observe, [ordered[p] for p in first]), strict=True):
                per_frame[position] = observations
                done += 1
                _report(progress, done, len(ordered))
            sides = [self.refresh_side(per_frame[max(q for q in first if q <= p)], ordered[p]) for p in later]
            for position, observations in zip(
                later, run(self.observe, [ordered[p] for p in later], sides), strict=True
            ):
                per_frame[position] = observations
                done += 1
                _report(progress, done, len(ordered))
            segments = [(start, end) for start, end in zip(keys, keys[1:], strict=False) if end - start > 1]
            work = [(ordered, start, end, per_frame[start], per_frame[end]) for start, end in segments]
            for (start, end), inner in zip(segments, run(self._segment, work), strict=True):
                per_frame[start + 1 : end] = inner
                done += end - start - 1
                _report(progress, done, len(ordered))
        tracks = track_faces(per_frame, self.settings.track_iou)
        kept = [track for track in tracks if len(track.observations) >= self.settings.min_track_frames]
        return [FaceTrack(track_id, track.observations) for track_id, track in enumerate(kept)]

    def refresh_side(self, known: list[FaceObservation], frame: DecodedFrame) -> int | None:
        """Detection side for a later key frame of a window whose first key frame found `known`.

        None (the detector's full resolution) when that frame had no face: a face may yet come in, at any size.
        """
        if not known:
            return None
        smallest = min(min(obs.box.width, obs.box.height) for obs in known)
        longest = max(frame.image.shape[:2])
        return max(REFRESH_MIN_SIDE, math.ceil(longest * REFRESH_FACE_PX / max(smallest, 1.0)))

    def _segment(
        self, args: tuple[list[DecodedFrame], int, int, list[FaceObservation], list[FaceObservation]]
    ) -> list[list[FaceObservation]]:
        """The faces of the frames strictly between two key frames: followed when both ends agree, else detected."""
        ordered, start, end, first, last = args
        inner = ordered[start + 1 : end]
        followed = self._follow(inner, first, last)
        return followed if followed is not None else [self.observe(frame) for frame in inner]

    def _follow(
        self, inner: list[DecodedFrame], first: list[FaceObservation], last: list[FaceObservation]
    ) -> list[list[FaceObservation]] | None:
        """Each face of the first key frame carried through `inner` by its landmarks; None when the segment's
        ends disagree: not the same number of faces, or a followed face that does not land on a detected one."""
        if len(first) != len(last):
            return None
        per_frame: list[list[FaceObservation]] = [[] for _ in inner]
        predicted: list[FaceBox] = []
        for start in first:
            anchor = anchor_box(start.box, start.landmarks)
            box = start.box
            for k, frame in enumerate(inner):
                try:
                    landmarks = self.landmarks.fit(frame.image, box)
                except ValueError:  # the followed box left the frame
                    return None
                box = box_from_landmarks(landmarks, anchor)
                per_frame[k].append(self._observation(frame, box, landmarks))
            predicted.append(box)
        return per_frame if _lands_on(predicted, [obs.box for obs in last], self.settings.track_iou) else None

    def _observation(self, frame: DecodedFrame, box: FaceBox, landmarks: np.ndarray) -> FaceObservation:
        aligned = align_face(frame.image, landmarks, self.face_size, self.settings.face_margin)
        return FaceObservation(
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            box=box,
            landmarks=landmarks,
            crop_rgb=aligned.crop_rgb,
            matrix=aligned.matrix,
        )

    @contextmanager
    def _mapper(
        self, size: int
    ) -> Iterator[Callable[[Callable[[_Item], _Result], Iterable[_Item]], Iterable[_Result]]]:
        """`map` on the thread pool (one pool for both passes), or in this thread for one worker."""
        if self.workers > 1 and size > 1:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="faces") as pool:
                yield pool.map
        else:
            yield map


def _lands_on(predicted: list[FaceBox], detected: list[FaceBox], min_iou: float) -> bool:
    """Whether each followed box overlaps its own detected box by at least `min_iou` (one-to-one)."""
    if not predicted:
        return True
    overlaps = np.array([[p.iou(d) for d in detected] for p in predicted])
    rows, cols = linear_sum_assignment(-overlaps)
    return len(rows) == len(predicted) and bool((overlaps[rows, cols] >= min_iou).all())


def _report(progress: Callable[[float], None] | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done / total if total else 1.0)
