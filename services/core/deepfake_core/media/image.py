"""Decode a still image into upright BGR uint8 pixels, whatever its mode (grey, palette, alpha, 16-bit).

Pillow decodes, because it refuses truncated files (cv2.imdecode returns a half-grey picture instead)
and only parses the format the sniffer recognised; EXIF orientation is applied so faces stand upright.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageOps

from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.frames import MediaSource
from deepfake_core.media.probe import PILLOW_DECODE_ERRORS, open_image

# Transparent pixels are shown over white, as browsers and photo viewers do.
_BACKGROUND = (255, 255, 255, 255)
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def decode_image(source: MediaSource, kind: str) -> np.ndarray:
    """The first (or only) picture of a probed image of format `kind`, as H x W x 3 BGR uint8.

    Raises DetectionError CORRUPT_MEDIA when the pixel data is truncated or damaged.
    """
    with open_image(source, kind) as image:
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
        except PILLOW_DECODE_ERRORS as error:
            raise DetectionError(
                ErrorCode.CORRUPT_MEDIA,
                f"The {kind.upper()} image could not be decoded ({error}); it may be truncated or damaged. "
                "Upload it again or re-export it.",
            ) from error
        return to_bgr(upright)


def to_bgr(image: Image.Image) -> np.ndarray:
    """BGR uint8 from any Pillow mode: 16-bit grey is scaled to 8 bits, transparency flattened on white."""
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = (np.clip(np.asarray(image), 0, 65535) // 257).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if image.mode == "F":
        grey = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND)
        image = Image.alpha_composite(background, rgba)
    if image.mode == "L":
        return cv2.cvtColor(np.asarray(image), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
