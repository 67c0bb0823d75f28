"""68-point facial landmarks from dlib's shape predictor (iBUG 300-W layout), fitted inside a face box.

The 100 MB predictor ships in the `face-recognition-models` wheel; it is loaded once per process.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.faces.detectors import FaceBox

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

# The predictor was trained on dlib HOG boxes, which sit lower and are wider and shorter than the
# boxes of other detectors. Fitting from a box of the wrong shape doubles the landmark error
# (measured: 6.4% -> 3.3% of the eye distance for yuface boxes after this correction), so each
# detector's box is first mapped to dlib's convention:
# (centre x shift, centre y shift) as fractions of the box size, then (width, height) scale factors.
_TO_DLIB_BOX: dict[str, tuple[float, float, float, float]] = {
    "yuface": (0.0, 0.065, 1.118, 0.84),
    "dlib": (0.0, 0.0, 1.0, 1.0),
}

# Context around the box converted to grayscale: the predictor's features are pixel pairs that may
# fall a little outside the box.
_ROI_PADDING = 0.5

_models_lock = threading.Lock()
_models: dict[str, Any] = {}


def dlib_model_path(file_name: str) -> Path:
    """Where a dlib model of the `face-recognition-models` wheel is, found without importing the package.

    Importing that package pulls in `pkg_resources`, which recent setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "models" / file_name
        if candidate.is_file():
            return candidate
    raise DetectionError(
        ErrorCode.MODEL_NOT_FOUND,
        f"The dlib model {file_name} was not found; install it with `pip install face-recognition-models==0.3.0`.",
    )


def load_dlib_model(kind: str, file_name: str) -> Any:
    """The process-wide dlib model `dlib.<kind>(file)`, loaded on first use by one thread only."""
    if file_name not in _models:
        with _models_lock:
            if file_name not in _models:
                import dlib

                _models[file_name] = getattr(dlib, kind)(str(dlib_model_path(file_name)))
    return _models[file_name]


def predictor_path() -> Path:
    return dlib_model_path(PREDICTOR_FILE)


def load_predictor() -> Any:
    """The 68-point shape predictor (about 0.5 s to load, once per process)."""
    return load_dlib_model("shape_predictor", PREDICTOR_FILE)


class LandmarkFitter:
    """Fits 68 landmarks to a face found by the named detector (`yuface` or `dlib`).

    Safe to share between threads: the predictor is read-only once loaded.
    """

    def __init__(self, detector_name: str = "yuface") -> None:
        if detector_name not in _TO_DLIB_BOX:
            raise ValueError(f"No box convention known for detector '{detector_name}'.")
        self.box_adjustment = _TO_DLIB_BOX[detector_name]
        self._predictor = load_predictor()

    def fit(self, image_bgr: np.ndarray, box: FaceBox) -> np.ndarray:
        """Landmarks as a 68x2 float32 array of (x, y) in the image's pixels."""
        import dlib

        left, top, right, bottom = self._dlib_box(box)
        roi_left, roi_top, roi = self._grayscale_roi(image_bgr, left, top, right, bottom)
        rectangle = dlib.rectangle(
            round(left - roi_left), round(top - roi_top), round(right - roi_left), round(bottom - roi_top)
        )
        shape = self._predictor(roi, rectangle)
        points = np.array([(part.x, part.y) for part in shape.parts()], dtype=np.float32)
        points += np.array([roi_left, roi_top], dtype=np.float32)
        return points

    def _dlib_box(self, box: FaceBox) -> tuple[float, float, float, float]:
        shift_x, shift_y, scale_w, scale_h = self.box_adjustment
        center_x, center_y = box.center
        center_x += shift_x * box.width
        center_y += shift_y * box.height
        half_w, half_h = box.width * scale_w / 2.0, box.height * scale_h / 2.0
        return center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h

    @staticmethod
    def _grayscale_roi(
        image_bgr: np.ndarray, left: float, top: float, right: float, bottom: float
    ) -> tuple[int, int, np.ndarray]:
        """Only the neighbourhood of the face is converted, not the whole frame."""
        height, width = image_bgr.shape[:2]
        pad_x, pad_y = (right - left) * _ROI_PADDING, (bottom - top) * _ROI_PADDING
        x0, y0 = max(0, int(left - pad_x)), max(0, int(top - pad_y))
        x1, y1 = min(width, int(right + pad_x) + 1), min(height, int(bottom + pad_y) + 1)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"The face box ({left:.0f}, {top:.0f}, {right:.0f}, {bottom:.0f}) lies outside the image.")
        roi = cv2.cvtColor(image_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        return x0, y0, np.ascontiguousarray(roi)
