"""Alignment: the similarity transform is exact on synthetic points and puts real faces on the template."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from deepfake_core.faces.align import (
    ARCFACE_TEMPLATE_112,
    align_face,
    alignment_matrix,
    five_points,
    similarity_transform,
    template_points,
)
from deepfake_core.faces.detectors import make_detector
from deepfake_core.faces.landmarks import LandmarkFitter
from deepfake_core.settings import CoreSettings

SIZE = 112
MARGIN = 0.25


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.c_[points, np.ones(len(points))] @ np.asarray(matrix).T


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    angle = np.deg2rad(angle_deg)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([rotation, [[tx], [ty]]])


def landmarks_with_five_points(points: np.ndarray) -> np.ndarray:
    """A 68-point array whose eye centres, nose tip and mouth corners are `points`."""
    landmarks = np.zeros((68, 2), dtype=np.float32)
    landmarks[36:42] = points[0]
    landmarks[42:48] = points[1]
    landmarks[30] = points[2]
    landmarks[48] = points[3]
    landmarks[54] = points[4]
    return landmarks


class Face:
    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        self.image = image
        self.landmarks = landmarks


def find_faces(image: np.ndarray) -> list[Face]:
    detector = make_detector(CoreSettings())
    fitter = LandmarkFitter()
    return [Face(image, fitter.fit(image, box)) for box in detector.detect(image)]


@pytest.fixture(scope="module")
def photo_faces(media_dir: Path) -> list[Face]:
    faces = []
    for name in ("sample3.jpg", "sample6.jpg", "insightface_t1.jpg", "astronaut.png"):
        faces.extend(find_faces(cv2.imread(str(media_dir / name), cv2.IMREAD_COLOR)))
    assert len(faces) >= 12
    return faces


# ------------------------------------------------------------------ pure maths


def test_template_without_margin_is_the_arcface_layout() -> None:
    assert np.allclose(template_points(112, 0.0), ARCFACE_TEMPLATE_112)
    with_margin = template_points(224, 0.25)
    centre = np.array([111.5, 111.5])
    # Margin shrinks the layout towards the crop centre, by 1 / (1 + 2 * margin).
    spread = np.linalg.norm(with_margin - with_margin.mean(axis=0), axis=1)
    plain = np.linalg.norm(template_points(224, 0.0) - template_points(224, 0.0).mean(axis=0), axis=1)
    assert np.allclose(spread, plain / 1.5)
    assert np.all(np.abs(with_margin - centre) < 112)


@pytest.mark.parametrize("angle,scale,tx,ty", [(0, 1, 0, 0), (20, 0.5, 300, -40), (-35, 3.2, -10, 700)])
def test_similarity_transform_recovers_a_known_transform(angle, scale, tx, ty) -> None:
    source = template_points(SIZE, MARGIN)
    known = similarity(angle, scale, tx, ty)
    estimated = similarity_transform(source, apply(known, source))
    assert np.allclose(estimated, known, atol=1e-9)


def test_alignment_matrix_inverts_the_warp_that_placed_the_face() -> None:
    """Landmarks made by warping the template out into a frame must be mapped exactly back onto it."""
    frame_to_crop = similarity(-25, 0.4, 13, -70)
    crop_to_frame = cv2.invertAffineTransform(frame_to_crop)
    landmarks = landmarks_with_five_points(apply(crop_to_frame, template_points(SIZE, MARGIN)))
    assert np.allclose(alignment_matrix(landmarks, SIZE, MARGIN), frame_to_crop, atol=1e-4)


def test_a_mirrored_face_is_not_aligned_by_reflecting() -> None:
    mirrored = template_points(SIZE, MARGIN) * [-1, 1]
    matrix = similarity_transform(mirrored, template_points(SIZE, MARGIN))
    assert np.linalg.det(matrix[:, :2]) > 0


def test_five_points_needs_68_landmarks() -> None:
    with pytest.raises(ValueError, match="68x2"):
        five_points(np.zeros((5, 2)))


# ------------------------------------------------------------------ real faces


def test_real_eye_centres_land_on_the_template(photo_faces) -> None:
    template = template_points(SIZE, MARGIN)
    errors = []
    for face in photo_faces:
        aligned = align_face(face.image, face.landmarks, SIZE, MARGIN)
        eyes = apply(aligned.matrix, five_points(face.landmarks))[:2]
        errors.append(np.linalg.norm(eyes - template[:2], axis=1))
    errors = np.concatenate(errors)
    # Faces differ from the template's proportions, so the least-squares fit leaves a little residual.
    assert float(np.median(errors)) < 2.0
    assert float(errors.max()) < 5.0


def test_crop_is_rgb_of_the_warped_frame(photo_faces) -> None:
    """Also covers large faces, which are pyramid-reduced before warping: same geometry, less aliasing."""
    face = max(photo_faces, key=lambda f: np.ptp(f.landmarks[:, 0]))
    aligned = align_face(face.image, face.landmarks, SIZE, MARGIN)
    assert aligned.crop_rgb.shape == (SIZE, SIZE, 3) and aligned.crop_rgb.dtype == np.uint8
    assert np.sqrt(np.linalg.det(aligned.matrix[:, :2])) < 0.5  # this face does take the reduced path
    blurred = cv2.GaussianBlur(face.image, (0, 0), 1.5)
    plain = cv2.warpAffine(blurred, aligned.matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)
    plain_rgb = cv2.cvtColor(plain, cv2.COLOR_BGR2RGB)
    difference = np.abs(aligned.crop_rgb.astype(float) - plain_rgb).mean()
    one_pixel_off = np.abs(np.roll(aligned.crop_rgb, 1, axis=1).astype(float) - plain_rgb).mean()
    bgr_order = np.abs(aligned.crop_rgb.astype(float) - plain).mean()
    assert difference < 0.5 * one_pixel_off
    assert difference < 0.5 * bgr_order


def test_small_faces_are_warped_directly(photo_faces) -> None:
    face = min(photo_faces, key=lambda f: np.ptp(f.landmarks[:, 0]))
    aligned = align_face(face.image, face.landmarks, SIZE, MARGIN)
    plain = cv2.warpAffine(face.image, aligned.matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(aligned.crop_rgb, cv2.cvtColor(plain, cv2.COLOR_BGR2RGB))


def test_face_at_the_frame_edge_replicates_the_border(photo_faces) -> None:
    face = photo_faces[0]
    left = int(face.landmarks[:, 0].min())
    cut = face.image[:, left + 5 :]  # the frame now ends inside the face
    landmarks = face.landmarks - [left + 5, 0]
    crop = align_face(cut, landmarks, SIZE, MARGIN).crop_rgb
    assert crop.shape == (SIZE, SIZE, 3)
    assert (crop.reshape(-1, 3) == 0).all(axis=1).mean() < 0.01  # no black fill


@pytest.mark.parametrize("angle", [20, -20])
def test_alignment_undoes_a_rotation_of_the_photo(media_dir: Path, angle: float) -> None:
    image = cv2.imread(str(media_dir / "sample3.jpg"), cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    rotated = cv2.warpAffine(image, rotation, (width, height), borderMode=cv2.BORDER_REPLICATE)
    originals, turned = find_faces(image), find_faces(rotated)
    assert len(originals) == len(turned) == 3
    crops = [align_face(f.image, f.landmarks, SIZE, MARGIN).crop_rgb.astype(float) for f in originals]
    for face in turned:
        # Pair each rotated face with its original by where the original's nose lands after rotating.
        noses = [apply(rotation, f.landmarks[30:31])[0] for f in originals]
        original = int(np.argmin([np.linalg.norm(nose - face.landmarks[30]) for nose in noses]))
        crop = align_face(face.image, face.landmarks, SIZE, MARGIN).crop_rgb.astype(float)
        same_person = np.abs(crop - crops[original]).mean()
        other_people = min(np.abs(crop - other).mean() for k, other in enumerate(crops) if k != original)
        assert same_person < 8.0
        assert same_person < 0.3 * other_people
