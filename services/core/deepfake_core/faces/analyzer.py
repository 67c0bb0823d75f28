"""The faces stage of the pipeline: sampled frames in, tracks of aligned face crops out.

Frames are independent until tracking, so detection, landmarks and alignment run on a small
thread pool (yuface, dlib and OpenCV release the GIL); tracking then links the results in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from deepfake_core.faces.align import align_face
from deepfake_core.faces.detectors import FaceDetector, make_detector
from deepfake_core.faces.landmarks import LandmarkFitter
from deepfake_core.faces.tracking import FaceObservation, FaceTrack, track_faces
from deepfake_core.media.frames import DecodedFrame
from deepfake_core.settings import CoreSettings

# More threads than this only contend with each other (and with yuface's own OpenMP threads).
MAX_WORKERS = 4


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

    def observe(self, frame: DecodedFrame) -> list[FaceObservation]:
        """Every face of one frame, aligned; largest first."""
        observations = []
        for box in self.detector.detect(frame.image):
            landmarks = self.landmarks.fit(frame.image, box)
            aligned = align_face(frame.image, landmarks, self.face_size, self.settings.face_margin)
            observations.append(
                FaceObservation(
                    frame_index=frame.index,
                    timestamp_s=frame.timestamp_s,
                    box=box,
                    landmarks=landmarks,
                    crop_rgb=aligned.crop_rgb,
                    matrix=aligned.matrix,
                )
            )
        return observations

    def analyze(self, frames: list[DecodedFrame], progress: Callable[[float], None] | None = None) -> list[FaceTrack]:
        """Tracks with at least `settings.min_track_frames` faces; [] when no face was found.

        `progress` receives the fraction of frames done, from the calling thread.
        """
        ordered = sorted(frames, key=lambda frame: frame.index)
        per_frame: list[list[FaceObservation]] = []
        if self.workers > 1 and len(ordered) > 1:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="faces") as pool:
                for observations in pool.map(self.observe, ordered):
                    per_frame.append(observations)
                    _report(progress, len(per_frame), len(ordered))
        else:
            for frame in ordered:
                per_frame.append(self.observe(frame))
                _report(progress, len(per_frame), len(ordered))
        tracks = track_faces(per_frame, self.settings.track_iou)
        kept = [track for track in tracks if len(track.observations) >= self.settings.min_track_frames]
        return [FaceTrack(track_id, track.observations) for track_id, track in enumerate(kept)]


def _report(progress: Callable[[float], None] | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done / total if total else 1.0)
