"""Whether the heatmaps point at the manipulation, measured on synthetic fakes, whose manipulated region is known.

For each fake face: the share of the positive fake-CAM mass (what the rendered heatmap shows) that lies in the
manipulated region on the CAM grid, beside the share of the grid that region covers (what a heatmap blind to the
manipulation scores on average), and whether the heatmap's peak cell is mostly manipulated. Grad-CAM on a coarse
grid (4 x 4 at 112 px) is a rough locator at best: these numbers say how rough, for a given model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from deepfake_core.contract import to_model_input
from deepfake_core.inference.onnx_backend import OnnxBackend
from deepfake_core.model.network import feature_map_size

from deepfake_training.data.augment import region_grid, resize_face
from deepfake_training.data.samples import FaceTrackData
from deepfake_training.synthesis.sbi import random_self_blend

BATCH = 32


@dataclass(frozen=True)
class Localisation:
    faces: int
    mass_in_region: float  # mean share of the positive CAM mass inside the region (faces with any evidence)
    region_share: float  # mean share of the grid the region covers: the score of a heatmap blind to it
    peak_in_region: float  # share of faces whose peak cell is at least half manipulated

    def to_dict(self) -> dict[str, float | int]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def cam_scores(cam: np.ndarray, grid: np.ndarray) -> tuple[float | None, bool]:
    """(share of the positive CAM mass inside `grid`, None without positive evidence; peak cell manipulated)."""
    positive = np.maximum(cam, 0.0)
    total = float(positive.sum())
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return (float((positive * grid).sum() / total) if total > 0 else None), bool(grid[peak] >= 0.5)


def measure_localisation(
    model_path: Path, tracks: Sequence[FaceTrackData], input_size: int, faces: int = 96, seed: int = 7
) -> Localisation:
    """SBI fakes of `faces` frames spread evenly over all frames of `tracks` (held-out people), scored by the ONNX
    model at `model_path` through the serving backend."""
    if not tracks:
        raise ValueError("no tracks to make fakes from")
    rng = np.random.default_rng(seed)
    side = feature_map_size(input_size)
    images, grids = [], []
    frames = [(track, index) for track in tracks for index in range(len(track))]
    for position in np.unique(np.linspace(0, len(frames) - 1, min(faces, len(frames))).astype(int)):
        track, index = frames[position]
        fake, region = random_self_blend(track.crops[index], track.landmarks[index], rng)
        images.append(resize_face(fake, input_size))
        grids.append(region_grid(resize_face(np.ascontiguousarray(region, dtype=np.float32), input_size), side))
    batch = to_model_input(np.stack(images))[:, None]  # one-frame clips
    backend = OnnxBackend(Path(model_path))
    try:
        cams = np.concatenate(
            [backend.infer(batch[i : i + BATCH]).frame_cams[:, 0] for i in range(0, len(batch), BATCH)]
        )
    finally:
        backend.close()
    scored = [cam_scores(cam, grid) for cam, grid in zip(cams, grids, strict=True)]
    masses = [mass for mass, _ in scored if mass is not None]
    return Localisation(
        faces=len(scored),
        mass_in_region=float(np.mean(masses)) if masses else 0.0,
        region_share=float(np.mean([grid.sum() / grid.size for grid in grids])),
        peak_in_region=float(np.mean([peak for _, peak in scored])),
    )
