"""Face detectors behind one interface: YuNet-style CNN (`yuface`, default) and dlib's HOG detector.

Both detect on a frame downscaled to `detection_max_side` (detection cost grows with pixels, accuracy
barely does) and report boxes in original-frame pixels with a score in [0, 1].
"""

from __future__ import annotations

import ctypes
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from deepfake_core.result import Box
from deepfake_core.settings import CoreSettings


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box in original-image pixels; `score` is the detector's confidence in [0, 1]."""

    x: float
    y: float
    width: float
    height: float
    score: float

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2.0, self.y + self.height / 2.0

    def iou(self, other: FaceBox) -> float:
        """Intersection over union; 0 for disjoint or empty boxes."""
        left, top = max(self.x, other.x), max(self.y, other.y)
        right = min(self.x + self.width, other.x + other.width)
        bottom = min(self.y + self.height, other.y + other.height)
        intersection = max(0.0, right - left) * max(0.0, bottom - top)
        union = self.area + other.area - intersection
        return intersection / union if union > 0 else 0.0

    def to_result_box(self) -> Box:
        return Box(x=self.x, y=self.y, width=self.width, height=self.height)


class FaceDetector(Protocol):
    """Finds faces in one BGR uint8 frame; boxes are in the frame's own pixels.

    `max_side` lowers the detector's own detection resolution for this call (never raises it): the
    faces stage passes it when it already knows how large the faces it looks for are.
    """

    name: str

    def detect(self, image_bgr: np.ndarray, max_side: int | None = None) -> list[FaceBox]: ...


def detection_side(own: int, requested: int | None) -> int:
    """The longer side to detect at: the detector's own, or a smaller one asked for."""
    return own if requested is None else max(1, min(own, requested))


def downscale_for_detection(image_bgr: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most `max_side`; return the image and the factor applied.

    Never enlarges: small frames keep their pixels. INTER_AREA keeps small faces from aliasing away.
    The result is C-contiguous because yuface reads the buffer assuming a packed `width * 3` stride.
    """
    height, width = image_bgr.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image_bgr), factor


def _box_in_original(
    x: float, y: float, width: float, height: float, score: float, factor: float, shape: tuple[int, ...]
) -> FaceBox:
    """Map a box from the downscaled image back to the original and clip it to the frame."""
    frame_height, frame_width = shape[:2]
    left, top = max(0.0, x / factor), max(0.0, y / factor)
    right = min(float(frame_width), (x + width) / factor)
    bottom = min(float(frame_height), (y + height) / factor)
    return FaceBox(left, top, max(0.0, right - left), max(0.0, bottom - top), min(1.0, max(0.0, score)))


class YuFaceDetector:
    """libfacedetection's CNN (package `yuface`, weights compiled into the wheel, BSD licence).

    About 50 ms per 640x360 frame on one core of the 2-core machine this project is measured on (9 ms at
    320x180: the cost grows faster than the pixel count); it finds faces down to about 10 px at detection
    scale. Each calling thread runs it single-threaded (see `_single_threaded_openmp`): callers
    parallelise across frames instead.
    """

    name = "yuface"

    # The smallest face the settings promise (min_face_size) is never searched for below this many pixels
    # at detection scale: what the 640 px cap gives a 36 px face in a 1280x720 frame. A smaller picture (most
    # photos) is therefore shrunk too, to the side that keeps that promise, never below MIN_SIDE.
    SMALLEST_FACE_PX = 18.0
    MIN_SIDE = 160

    def __init__(self, max_side: int = 640, min_score: float = 0.6, min_face_size: float = 36.0) -> None:
        import yuface  # imported here so the dlib path does not need it

        self._detect = yuface.detect
        self._set_openmp_threads = _bundled_openmp_setter(Path(yuface.__file__).parent)
        self._thread_state = threading.local()
        self.max_side = max_side
        self.min_score = min_score
        self.min_face_size = min_face_size

    def detect(self, image_bgr: np.ndarray, max_side: int | None = None) -> list[FaceBox]:
        self._single_threaded_openmp()
        small, factor = downscale_for_detection(image_bgr, detection_side(self.own_side(image_bgr), max_side))
        scores, boxes, _ = self._detect(small, self.min_score)
        # yuface reports confidence as an integer percentage.
        return [
            _box_in_original(*(float(v) for v in box), float(score) / 100.0, factor, image_bgr.shape)
            for score, box in zip(scores, boxes, strict=True)
        ]

    def own_side(self, image_bgr: np.ndarray) -> int:
        """The longer side this picture is searched at: small enough to be cheap (detection costs ~5x more at
        640x360 than at 320x180), large enough to keep min_face_size at SMALLEST_FACE_PX, at most max_side."""
        longest = max(image_bgr.shape[:2])
        needed = math.ceil(longest * self.SMALLEST_FACE_PX / max(self.min_face_size, 1.0))
        return min(self.max_side, max(self.MIN_SIDE, needed))

    def _single_threaded_openmp(self) -> None:
        """Limit yuface's OpenMP team to one thread, once per calling thread.

        Its bundled libgomp otherwise starts one busy-waiting thread per core on every call; on a
        shared or thread-pooled CPU those spinners starve each other (measured on 2 busy cores: 150 ms
        per frame instead of 30). The setting is per thread in libgomp, hence the thread-local flag,
        and it touches only yuface's private copy of the library, not torch's or anyone else's.
        """
        if self._set_openmp_threads is None or getattr(self._thread_state, "limited", False):
            return
        self._set_openmp_threads(1)
        self._thread_state.limited = True


def _bundled_openmp_setter(package_dir: Path) -> Callable[[int], object] | None:
    """`omp_set_num_threads` of the libgomp that the yuface wheel vendors, if it vendors one."""
    for library in sorted(package_dir.parent.glob("yuface.libs/libgomp*.so*")):
        try:
            return ctypes.CDLL(str(library)).omp_set_num_threads
        except (OSError, AttributeError):
            continue
    return None


def _logistic(margin: float) -> float:
    return 1.0 / (1.0 + math.exp(-margin))


class DlibHogDetector:
    """dlib's HOG + linear SVM frontal face detector, the dependency-light alternative.

    Its 80 px window misses small faces, so the downscaled frame is upsampled `upsample` times.
    dlib scores are SVM margins, not probabilities: a logistic maps dlib's own decision boundary
    (margin 0) to 0.5, so `min_score` 0.6 asks for a margin of at least 0.41.
    """

    name = "dlib"

    def __init__(self, max_side: int = 640, min_score: float = 0.6, upsample: int = 1) -> None:
        import dlib

        # A dlib detector keeps the last image's feature pyramid inside itself, so concurrent calls
        # must not share one. Each caller borrows an idle instance; building one takes ~0.3 s, so
        # they are kept for reuse rather than made per call or per (short-lived) thread.
        self._make = dlib.get_frontal_face_detector
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle.put(self._make())
        self.max_side = max_side
        self.min_score = min_score
        self.upsample = upsample

    def detect(self, image_bgr: np.ndarray, max_side: int | None = None) -> list[FaceBox]:
        small, factor = downscale_for_detection(image_bgr, detection_side(self.max_side, max_side))
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        min_margin = math.log(self.min_score / (1.0 - self.min_score)) if 0.0 < self.min_score < 1.0 else 0.0
        try:
            detector = self._idle.get_nowait()
        except queue.Empty:
            detector = self._make()
        try:
            rectangles, margins, _ = detector.run(gray, self.upsample, min_margin)
        finally:
            self._idle.put(detector)
        return [
            _box_in_original(
                float(rect.left()),
                float(rect.top()),
                float(rect.width()),
                float(rect.height()),
                _logistic(margin),
                factor,
                image_bgr.shape,
            )
            for rect, margin in zip(rectangles, margins, strict=True)
        ]


class FilteredDetector:
    """Applies the settings every detector shares: score and size floors, and a cap on faces per frame.

    The cap keeps the largest faces, which are the subjects of a video rather than passers-by; equal
    sizes fall back to the more confident box.
    """

    def __init__(self, detector: FaceDetector, min_score: float, min_face_size: float, max_faces: int) -> None:
        self.inner = detector
        self.name = detector.name
        self.min_score = min_score
        self.min_face_size = min_face_size
        self.max_faces = max_faces

    def detect(self, image_bgr: np.ndarray, max_side: int | None = None) -> list[FaceBox]:
        kept = [
            box
            for box in self.inner.detect(image_bgr, max_side)
            if box.score >= self.min_score and min(box.width, box.height) >= self.min_face_size
        ]
        kept.sort(key=lambda box: (box.area, box.score), reverse=True)
        return kept[: self.max_faces]


_DETECTORS: dict[str, Callable[[CoreSettings], FaceDetector]] = {
    "yuface": lambda s: YuFaceDetector(s.detection_max_side, s.min_detection_score, s.min_face_size),
    "dlib": lambda s: DlibHogDetector(s.detection_max_side, s.min_detection_score),
}


def make_detector(settings: CoreSettings) -> FaceDetector:
    """The detector named by `settings.face_detector`, with the shared score/size/count filters applied."""
    detector = _DETECTORS[settings.face_detector](settings)
    return FilteredDetector(
        detector, settings.min_detection_score, settings.min_face_size, settings.max_faces_per_frame
    )
