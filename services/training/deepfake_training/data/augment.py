"""Training augmentations of the paper (flip, rotation, Gaussian noise, brightness) plus JPEG re-compression.

Applied after the fake is made and to reals and fakes alike, so no augmentation can tell the classes apart;
a real and its paired fake share one draw (samples.FrameDataset), so they are even compressed alike.
Pure numpy/OpenCV on RGB uint8 crops, driven by an explicit generator: the same seed gives the same image.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_training.config import TrainingConfig

# Share of JPEG re-compressions made of two passes at independent qualities. Some synthetic fakes carry a
# JPEG pass on the pasted face only (synthesis.options.source_jpeg_probability); double compression of the
# whole image, reals included, keeps "traces of two compressions" from meaning "fake".
DOUBLE_JPEG_PROBABILITY = 0.5


def augment(image: np.ndarray, rng: np.random.Generator, config: TrainingConfig) -> np.ndarray:
    """One augmented copy of an RGB uint8 image."""
    return augment_with_region(image, None, rng, config)[0]


def augment_with_region(
    image: np.ndarray, region: np.ndarray | None, rng: np.random.Generator, config: TrainingConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """`augment`, with the manipulated region (float [H, W]) of a synthetic fake moved by the same flip and
    rotation, so that it still covers the manipulated pixels. The same draws as `augment`, in the same order."""
    out = image
    if rng.random() < config.flip_probability:
        out = out[:, ::-1]
        region = region[:, ::-1] if region is not None else None
    if config.rotation_degrees > 0 and rng.random() < config.rotation_probability:
        degrees = float(rng.uniform(-config.rotation_degrees, config.rotation_degrees))
        out = rotate(out, degrees)
        region = rotate(np.ascontiguousarray(region), degrees) if region is not None else None
    if rng.random() < config.jpeg_probability:
        out = compress(out, rng, config)
    pixels = out.astype(np.float32)
    if config.colour_jitter > 0 and rng.random() < config.colour_jitter_probability:
        pixels = jitter_colour(pixels, rng, config.colour_jitter)
    if config.brightness > 0 and rng.random() < config.brightness_probability:
        pixels *= float(rng.uniform(1.0 - config.brightness, 1.0 + config.brightness))
    if config.noise_sigma > 0 and rng.random() < config.noise_probability:
        sigma = float(rng.uniform(0.0, config.noise_sigma)) * 255.0
        pixels += rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8), region


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


def compress(image: np.ndarray, rng: np.random.Generator, config: TrainingConfig) -> np.ndarray:
    """A JPEG re-compression at a quality from the config's range: one pass, or DOUBLE_JPEG_PROBABILITY of the
    time an earlier pass at another drawn quality first (an upload of an already compressed video)."""
    quality = int(rng.integers(config.jpeg_quality_min, config.jpeg_quality_max + 1))
    if rng.random() < DOUBLE_JPEG_PROBABILITY:
        image = jpeg_recompress(image, int(rng.integers(config.jpeg_quality_min, config.jpeg_quality_max + 1)))
    return jpeg_recompress(image, quality)


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


def region_grid(region: np.ndarray | None, side: int) -> np.ndarray:
    """The manipulated region averaged onto the model's `side` x `side` CAM grid (zeros when unknown)."""
    if region is None:
        return np.zeros((side, side), dtype=np.float32)
    grid = cv2.resize(np.ascontiguousarray(region, dtype=np.float32), (side, side), interpolation=cv2.INTER_AREA)
    return np.clip(grid, 0.0, 1.0).astype(np.float32)
