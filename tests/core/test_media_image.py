"""Image decoding: every accepted format to BGR uint8, EXIF orientation, and unusual pixel modes."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.image import decode_image
from PIL import Image

from tests.utils.media_factory import encode_image, jpeg_with_orientation, photo


@pytest.fixture(scope="module")
def picture(media_dir) -> np.ndarray:
    return photo(360)  # 360 x 240: wider than tall, so a turn shows in the shape


@pytest.mark.parametrize("kind", ["png", "bmp"])
def test_lossless_formats_decode_to_the_exact_pixels(picture, kind):
    decoded = decode_image(encode_image(picture, kind), kind)

    assert decoded.dtype == np.uint8 and decoded.shape == picture.shape
    assert np.array_equal(decoded, picture)


def test_lossless_webp_decodes_to_the_exact_pixels(picture):
    assert np.array_equal(decode_image(encode_image(picture, "webp", lossless=True), "webp"), picture)


@pytest.mark.parametrize("kind", ["jpeg", "webp"])
def test_lossy_formats_decode_close_to_the_original_in_bgr_order(picture, kind):
    decoded = decode_image(encode_image(picture, kind, quality=95), kind)

    assert decoded.shape == picture.shape
    assert np.abs(decoded.astype(int) - picture).mean() < 3
    # Swapped channels would be far off on a real photo.
    assert np.abs(decoded[..., ::-1].astype(int) - picture).mean() > 3 * np.abs(decoded.astype(int) - picture).mean()


def test_decodes_from_a_path_too(media_dir):
    path = media_dir / "sample4.jpg"

    assert np.array_equal(decode_image(path, "jpeg"), decode_image(path.read_bytes(), "jpeg"))


@pytest.mark.parametrize(
    ("orientation", "turn"),
    [(3, cv2.ROTATE_180), (6, cv2.ROTATE_90_CLOCKWISE), (8, cv2.ROTATE_90_COUNTERCLOCKWISE)],
)
def test_exif_orientation_turns_the_picture_upright(picture, orientation, turn):
    stored = decode_image(jpeg_with_orientation(picture, 1), "jpeg")

    shown = decode_image(jpeg_with_orientation(picture, orientation), "jpeg")

    # Same compressed pixels, so the displayed picture is exactly the stored one turned.
    assert np.array_equal(shown, cv2.rotate(stored, turn))


def test_mirrored_exif_orientation_is_applied(picture):
    stored = decode_image(jpeg_with_orientation(picture, 1), "jpeg")

    assert np.array_equal(decode_image(jpeg_with_orientation(picture, 2), "jpeg"), stored[:, ::-1])


def test_grey_png_becomes_three_equal_channels(picture):
    grey = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)

    decoded = decode_image(encode_image(grey, "png"), "png")

    assert decoded.shape == (*grey.shape, 3)
    for channel in range(3):
        assert np.array_equal(decoded[..., channel], grey)


def test_sixteen_bit_png_is_scaled_to_eight_bits(picture):
    grey16 = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257

    decoded = decode_image(encode_image(grey16, "png"), "png")

    assert decoded.dtype == np.uint8
    assert np.array_equal(decoded[..., 0], (grey16 // 257).astype(np.uint8))


def test_transparent_pixels_are_shown_on_white(picture):
    bgra = cv2.cvtColor(picture, cv2.COLOR_BGR2BGRA)
    bgra[:, : picture.shape[1] // 2, 3] = 0  # left half fully transparent

    decoded = decode_image(encode_image(bgra, "png"), "png")

    assert decoded.shape == picture.shape
    assert (decoded[:, : picture.shape[1] // 2] == 255).all()
    assert np.array_equal(decoded[:, picture.shape[1] // 2 :], picture[:, picture.shape[1] // 2 :])


def test_palette_png_decodes_to_colour(picture):
    palette = Image.fromarray(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)).quantize(64)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")

    decoded = decode_image(buffer.getvalue(), "png")

    expected = cv2.cvtColor(np.asarray(palette.convert("RGB")), cv2.COLOR_RGB2BGR)
    assert np.array_equal(decoded, expected)


def test_truncated_jpeg_is_corrupt(media_dir):
    data = (media_dir / "sample5.jpg").read_bytes()

    with pytest.raises(DetectionError) as caught:
        decode_image(data[: len(data) // 2], "jpeg")

    assert caught.value.code is ErrorCode.CORRUPT_MEDIA
    assert "truncated" in caught.value.message
