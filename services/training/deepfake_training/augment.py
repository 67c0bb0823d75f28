"""Training augmentations of the paper (flip, rotation, Gaussian noise, brightness) plus JPEG re-compression.

Applied after the fake is made and to reals and fakes alike, so no augmentation can tell the classes apart.
Pure numpy/OpenCV on RGB uint8 crops, driven by an explicit generator: the same seed gives the same image.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_training.config import TrainingConfig


def augment(image: np.ndarray, rng: np.random.Generator, config: TrainingConfig) -> np.ndarray:
    """One augmented copy of an RGB uint8 image."""
    out = image
    if rng.random() < config.flip_probability:
        out = out[:, ::-1]
    if config.rotation_degrees > 0 and rng.random() < config.rotation_probability:
        out = rotate(out, float(rng.uniform(-config.rotation_degrees, config.rotation_degrees)))
    if rng.random() < config.jpeg_probability:
        out = jpeg_recompress(out, int(rng.integers(config.jpeg_quality_min, config.jpeg_quality_max + 1)))
    pixels = out.astype(np.float32)
    if config.colour_jitter > 0 and rng.random() < config.colour_jitter_probability:
        pixels = jitter_colour(pixels, rng, config.colour_jitter)
    if config.brightness > 0 and rng.random() < config.brightness_probability:
        pixels *= float(rng.uniform(1.0 - config.brightness, 1.0 + config.brightness))
    if config.noise_sigma > 0 and rng.random() < config.noise_probability:
        sigma = float(rng.uniform(0.0, config.noise_sigma)) * 255.0
        pixels += rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def jitter_colour(pixels: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Per-channel gain, then saturation and contrast about the image mean, each within +-amount."""
    gains = rng.uniform(1.0 - amount, 1.0 + amount, size=3).astype(np.float32)
    pixels = pixels * gains
    grey = pixels.mean(axis=-1, keepdims=True)
    pixels = grey + (pixels - grey) * np.float32(rng.uniform(1.0 - amount, 1.0 + amount))
    mean = pixels.mean()
    return mean + (pixels - mean) * np.float32(rng.uniform(1.0 - amount, 1.0 + amount))


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre; borders repeat (a black corner would be an easy, meaningless cue)."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), degrees, 1.0)
    return cv2.warpAffine(
        np.ascontiguousarray(image), matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def jpeg_recompress(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at `quality` (RGB in, RGB out)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])  # fmt: skip
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def resize_face(image: np.ndarray, size: int) -> np.ndarray:
    """Bring a cached crop to the model's input size (area averaging when shrinking)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interpolation)
