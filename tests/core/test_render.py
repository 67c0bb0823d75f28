"""Heatmap overlays: PNGs that decode, at the right size, coloured where the heatmap is hot, inside the face only."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from deepfake_core.explain.render import (
    MAX_FRAME_SIDE,
    face_outline,
    overlay_face_heatmap,
    render_face_overlay,
    render_frame_overlay,
)

CROP = 112


def gaussian_heatmap(size: int, centre: tuple[float, float], sigma: float = 8.0) -> np.ndarray:
    rows, columns = np.mgrid[0:size, 0:size]
    column, row = centre
    heat = np.exp(-((columns - column) ** 2 + (rows - row) ** 2) / (2 * sigma**2))
    return (heat / heat.max()).astype(np.float32)


def decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def redness(image_bgr: np.ndarray) -> np.ndarray:
    return image_bgr[..., 2].astype(np.int32) - image_bgr[..., 0].astype(np.int32)


def frame_to_crop(centre: tuple[float, float], side: float, angle_degrees: float) -> np.ndarray:
    """The alignment matrix for a square face of `side` pixels at `centre`, tilted by `angle_degrees`."""
    crop_from_frame = cv2.getRotationMatrix2D(centre, angle_degrees, CROP / side)
    crop_from_frame[:, 2] += np.array([CROP / 2, CROP / 2]) - np.array(centre)
    return crop_from_frame


@pytest.fixture(scope="module")
def photo(media_dir: Path) -> np.ndarray:
    return cv2.imread(str(media_dir / "astronaut.png"))  # 512x512 BGR


def test_face_overlay_is_a_png_of_the_crop_with_the_hot_spot_where_the_heatmap_peaks(photo: np.ndarray) -> None:
    crop_rgb = cv2.cvtColor(cv2.resize(photo[20:180, 150:310], (CROP, CROP)), cv2.COLOR_BGR2RGB)
    peak = (80, 30)  # (x, y)
    overlay = decode(render_face_overlay(crop_rgb, gaussian_heatmap(CROP, peak)))
    assert overlay.shape == (CROP, CROP, 3)

    gain = redness(overlay) - redness(cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    row, column = np.unravel_index(np.argmax(gain), gain.shape)
    assert abs(column - peak[0]) <= 6 and abs(row - peak[1]) <= 6
    assert gain[100, 10] < 0  # cold corner: blue, not red


def test_face_overlay_resizes_a_coarser_heatmap_to_the_crop() -> None:
    crop_rgb = np.full((CROP, CROP, 3), 128, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[3, 3] = 1.0  # bottom-right cell
    gain = redness(decode(render_face_overlay(crop_rgb, heat)))
    assert gain[CROP - 5, CROP - 5] > 50 > gain[5, 5]


def test_frame_overlay_colours_the_face_region_only(photo: np.ndarray) -> None:
    centre, side = (230.0, 110.0), 150.0
    matrix = frame_to_crop(centre, side, angle_degrees=15.0)
    crop_peak = (80.0, 30.0)
    overlay = decode(render_frame_overlay(photo, gaussian_heatmap(CROP, crop_peak), matrix))
    assert overlay.shape == photo.shape

    outline = face_outline(matrix, CROP, CROP).astype(np.float32)
    changed = np.abs(overlay.astype(np.int32) - photo.astype(np.int32)).max(axis=2) > 0
    rows, columns = np.nonzero(changed)
    distances = np.array(
        [cv2.pointPolygonTest(outline, (float(x), float(y)), True) for x, y in zip(columns, rows, strict=True)]
    )
    assert distances.min() >= -3.0, "colour or outline found outside the face region"
    inside = np.array(
        [[cv2.pointPolygonTest(outline, (float(x), float(y)), True) > 3 for x in range(512)] for y in range(512)]
    )
    assert changed[inside].mean() > 0.95  # the whole face region is tinted

    # The hottest point lands where the crop's hot spot maps back to in the frame.
    expected = cv2.invertAffineTransform(matrix) @ np.array([*crop_peak, 1.0])
    gain = np.where(inside, redness(overlay) - redness(photo), -1000)
    row, column = np.unravel_index(np.argmax(gain), gain.shape)
    assert np.hypot(column - expected[0], row - expected[1]) <= 8


def test_frame_overlay_is_downscaled_to_the_report_size() -> None:
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    matrix = frame_to_crop((960.0, 540.0), 300.0, angle_degrees=0.0)
    overlay = decode(render_frame_overlay(frame, gaussian_heatmap(CROP, (56, 56)), matrix))
    assert overlay.shape == (720, MAX_FRAME_SIDE, 3)
    # The face (now 200 px wide, centred) is tinted; a corner is untouched.
    assert redness(overlay)[360, 640] > 50
    np.testing.assert_array_equal(overlay[10, 10], [90, 90, 90])


def test_a_face_partly_outside_the_frame_is_clipped_not_an_error() -> None:
    frame = np.full((200, 300, 3), 60, np.uint8)
    matrix = frame_to_crop((290.0, 10.0), 80.0, angle_degrees=0.0)
    result = overlay_face_heatmap(frame, np.ones((CROP, CROP), np.float32), matrix)
    assert result.shape == frame.shape
    assert (result[0:40, 260:300] != 60).any() and (result[100:, :200] == 60).all()


def test_bad_inputs_are_refused_with_a_reason() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    heat = np.zeros((CROP, CROP), np.float32)
    with pytest.raises(ValueError, match="invertible"):
        render_frame_overlay(frame, heat, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="uint8"):
        render_face_overlay(np.zeros((CROP, CROP, 3), np.float32), heat)
    with pytest.raises(ValueError, match="heatmap"):
        render_frame_overlay(frame, np.zeros((1, CROP, CROP), np.float32), frame_to_crop((50.0, 50.0), 40.0, 0.0))


def test_png_encoding_is_lossless(photo: np.ndarray) -> None:
    """The fast zlib settings (level 1, RLE after the up filter) change the file size, never a pixel."""
    from deepfake_core.explain.render import encode_png

    png = encode_png(photo)

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), photo)
