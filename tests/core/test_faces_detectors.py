"""Face detectors on real photos: faces found, no faces invented, boxes in original pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from deepfake_core.faces.detectors import DlibHogDetector, FaceBox, YuFaceDetector, make_detector
from deepfake_core.result import Box
from deepfake_core.settings import CoreSettings
from skimage import data as skimage_data

# Faces a person counts in each photo (frontal or three-quarter, at least ~60 px tall).
FACES_IN_PHOTO = {
    "sample1.jpg": 3,
    "sample2.jpg": 3,
    "sample3.jpg": 3,
    "sample4.jpg": 4,
    "sample5.jpg": 5,
    "sample6.jpg": 4,
    "insightface_t1.jpg": 6,
    "astronaut.png": 1,
}


def read_photo(media_dir: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(media_dir / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def no_face_images() -> dict[str, np.ndarray]:
    return {
        "cat": cv2.cvtColor(skimage_data.chelsea(), cv2.COLOR_RGB2BGR),
        "coffee": cv2.cvtColor(skimage_data.coffee(), cv2.COLOR_RGB2BGR),
        "rocket": cv2.cvtColor(skimage_data.rocket(), cv2.COLOR_RGB2BGR),
        "grey": np.full((480, 640, 3), 128, dtype=np.uint8),
    }


@pytest.fixture(scope="module")
def yuface_detector():
    return make_detector(CoreSettings(face_detector="yuface"))


@pytest.fixture(scope="module")
def dlib_detector():
    return make_detector(CoreSettings(face_detector="dlib"))


@pytest.fixture(scope="module")
def photos(media_dir: Path) -> dict[str, np.ndarray]:
    return {name: read_photo(media_dir, name) for name in FACES_IN_PHOTO}


def assert_boxes_valid(boxes: list[FaceBox], image: np.ndarray, settings: CoreSettings) -> None:
    height, width = image.shape[:2]
    for box in boxes:
        assert 0 <= box.x and box.x + box.width <= width + 1e-6
        assert 0 <= box.y and box.y + box.height <= height + 1e-6
        assert min(box.width, box.height) >= settings.min_face_size
        assert settings.min_detection_score <= box.score <= 1.0


def test_yuface_finds_the_faces_in_real_photos(yuface_detector, photos) -> None:
    settings = CoreSettings()
    found = {}
    for name, image in photos.items():
        boxes = yuface_detector.detect(image)
        assert_boxes_valid(boxes, image, settings)
        found[name] = len(boxes)
        # No invented faces, and at most one real face missed per photo.
        assert FACES_IN_PHOTO[name] - 1 <= len(boxes) <= FACES_IN_PHOTO[name], (name, len(boxes))
    assert sum(found.values()) >= sum(FACES_IN_PHOTO.values()) - 2, found


def test_dlib_finds_faces_where_yuface_does(yuface_detector, dlib_detector, photos) -> None:
    """The HOG detector misses turned faces, but what it finds must be faces the CNN also finds."""
    settings = CoreSettings(face_detector="dlib")
    total = 0
    for name, image in photos.items():
        boxes = dlib_detector.detect(image)
        assert_boxes_valid(boxes, image, settings)
        assert len(boxes) <= FACES_IN_PHOTO[name], name
        reference = yuface_detector.detect(image)
        for box in boxes:
            assert max(box.iou(other) for other in reference) > 0.3, (name, box)
        total += len(boxes)
    assert total >= 0.6 * sum(FACES_IN_PHOTO.values())
    assert len(dlib_detector.detect(photos["astronaut.png"])) == 1


@pytest.mark.parametrize("detector_name", ["yuface", "dlib"])
def test_images_without_faces_give_no_face(detector_name: str) -> None:
    detector = make_detector(CoreSettings(face_detector=detector_name))
    for name, image in no_face_images().items():
        assert detector.detect(image) == [], name


def test_boxes_are_in_original_pixels_whatever_the_detection_scale(yuface_detector, photos) -> None:
    """A 3x larger copy is detected at the same (downscaled) size, so its box must come back 3x larger."""
    image = photos["astronaut.png"]
    (small,) = yuface_detector.detect(image)
    (large,) = yuface_detector.detect(cv2.resize(image, None, fx=3.0, fy=3.0, interpolation=cv2.INTER_CUBIC))
    scaled = FaceBox(small.x * 3, small.y * 3, small.width * 3, small.height * 3, small.score)
    assert large.iou(scaled) > 0.8


def test_yuface_reads_frames_that_are_views_with_padded_rows(photos) -> None:
    """Decoders hand out frames whose rows are padded; yuface assumes packed rows and found nothing."""
    image = photos["astronaut.png"]
    padded = np.zeros((image.shape[0], image.shape[1] + 32, 3), dtype=np.uint8)
    padded[:, : image.shape[1]] = image
    view = padded[:, : image.shape[1]]
    assert not view.flags.c_contiguous
    detector = YuFaceDetector(max_side=640, min_score=0.6)
    assert len(detector.detect(view)) == 1
    assert detector.detect(view) == detector.detect(image)


def test_max_faces_keeps_the_largest(photos) -> None:
    image = photos["sample5.jpg"]
    everyone = make_detector(CoreSettings()).detect(image)
    two = make_detector(CoreSettings(max_faces_per_frame=2)).detect(image)
    assert len(everyone) > 2 and len(two) == 2
    assert sorted(box.area for box in two) == sorted(box.area for box in everyone)[-2:]


def test_min_face_size_and_score_filter(photos) -> None:
    image = photos["insightface_t1.jpg"]
    assert make_detector(CoreSettings(min_face_size=400)).detect(image) == []
    strict = make_detector(CoreSettings(min_detection_score=0.99)).detect(image)
    lenient = make_detector(CoreSettings(min_detection_score=0.3)).detect(image)
    assert len(strict) < len(lenient)


def test_dlib_margins_become_scores_in_the_unit_interval(photos) -> None:
    detector = DlibHogDetector(max_side=640, min_score=0.3)
    scores = [box.score for box in detector.detect(photos["insightface_t1.jpg"])]
    assert scores and all(0.3 <= score < 1.0 for score in scores)


def test_face_box_geometry() -> None:
    box = FaceBox(10, 20, 30, 40, 0.9)
    assert box.area == 1200
    assert box.center == (25, 40)
    assert box.iou(box) == pytest.approx(1.0)
    assert box.iou(FaceBox(100, 100, 10, 10, 0.9)) == 0.0
    half = FaceBox(25, 20, 30, 40, 0.9)  # shifted by half its width: overlap 15x40
    assert box.iou(half) == pytest.approx(600 / (1200 + 1200 - 600))
    assert box.to_result_box() == Box(x=10, y=20, width=30, height=40)


def test_yuface_searches_small_pictures_at_the_side_that_keeps_the_smallest_face_findable() -> None:
    detector = YuFaceDetector(max_side=640, min_face_size=36)

    def side(height: int, width: int) -> int:
        return detector.own_side(np.zeros((height, width, 3), np.uint8))

    assert side(720, 1280) == 640, "a 36 px face in a 720p frame is 18 px at 640: the cap"
    assert side(1280, 1920) == 640
    assert side(512, 512) == 256, "a 36 px face in a 512 px photo is 18 px at 256"
    assert side(900, 900) == 450
    assert side(200, 300) == YuFaceDetector.MIN_SIDE == 160, "never below the floor"
    assert YuFaceDetector(max_side=640, min_face_size=12).own_side(np.zeros((512, 512, 3), np.uint8)) == 640


def test_a_face_at_the_smallest_promised_size_is_still_found_in_a_small_photo(photos) -> None:
    """A 40 px face in a 600 px picture: searched at 300 px, where it is 20 px."""
    settings = CoreSettings()
    (face,) = make_detector(settings).detect(photos["astronaut.png"])
    x, y, w, h = (int(v) for v in (face.x, face.y, face.width, face.height))
    crop = photos["astronaut.png"][max(0, y - h // 2) : y + h + h // 2, max(0, x - w // 2) : x + w + w // 2]
    scale = 40 / w  # the face becomes ~40 px wide
    small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((600, 600, 3), 120, np.uint8)
    canvas[280 : 280 + small.shape[0], 300 : 300 + small.shape[1]] = small

    boxes = make_detector(settings).detect(canvas)

    assert len(boxes) == 1
    assert boxes[0].iou(FaceBox(300 + (x - max(0, x - w // 2)) * scale, 280 + (y - max(0, y - h // 2)) * scale,
                                w * scale, h * scale, 1.0)) > 0.4  # fmt: skip
