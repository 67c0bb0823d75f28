"""Configuration of the detection core, read once from `DEEPFAKE_*` environment variables.

Thresholds and fusion weights left unset here come from the model's own metadata (written by
calibration at export time), so that a served model always uses the thresholds it was tuned with.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT_VARIABLE = "DEEPFAKE_PROJECT_ROOT"


def find_project_root() -> Path:
    """The folder that holds `model_repository/`, `.cache/` and `var/`: where default paths are resolved.

    DEEPFAKE_PROJECT_ROOT when set; else the checkout this file lives in (an editable install, found by its
    `services/core/pyproject.toml`, not by counting parent folders, which breaks as soon as the package is
    installed anywhere else); else the working directory (an installed wheel, e.g. in an image whose WORKDIR
    is the project folder). Read once at import, because module-level defaults (model repository, caches,
    run folders) are derived from it.
    """
    if configured := os.environ.get(PROJECT_ROOT_VARIABLE, "").strip():
        return Path(configured).expanduser().resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "services" / "core" / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


PROJECT_ROOT = find_project_root()


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEEPFAKE_", extra="ignore")

    # --- model ---
    model_path: Path | None = Field(
        default=None, description="An ONNX file; unset means the newest version in model_repository."
    )
    model_repository: Path = PROJECT_ROOT / "model_repository" / "gpu"
    model_name: str = "deepfake_detector"
    allow_untrained_model: bool = Field(
        default=False, description="Accept a model whose metadata says it was never trained (tests only)."
    )
    onnx_threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads; 0 = all cores.")
    onnx_spinning: bool = Field(
        default=False, description="Let idle onnxruntime threads busy-wait (faster only on cores nothing else uses)."
    )

    # --- limits, checked before heavy work ---
    max_file_bytes: int = 512 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_frame_pixels: int = 3840 * 2160
    max_duration_s: float = 1800.0
    max_total_frames: int = 30 * 1800 * 2

    # --- sampling: unset = what the model was trained on (its metadata), so serving matches training ---
    sampling: str | None = Field(
        default=None, description="uniform:N, fps:R or windows:K; unset = the model's metadata sampling."
    )
    sequence_length: int | None = Field(
        default=None, ge=1, description="Frames per BiLSTM window; unset = the model's metadata sequence_length."
    )

    # --- faces ---
    face_detector: str = Field(default="yuface", pattern="^(yuface|dlib)$")
    detection_max_side: int = Field(default=640, ge=160, description="Frames are downscaled to this before detection.")
    min_face_size: int = Field(default=36, ge=8, description="Smallest face side, in original pixels.")
    min_detection_score: float = 0.6
    max_faces_per_frame: int = 8
    face_size: int | None = Field(default=None, description="Aligned crop side; unset = the model's input size.")
    face_margin: float = Field(default=0.25, ge=0.0, le=1.0, description="Context around the face template.")
    track_iou: float = 0.3
    face_key_interval: int = Field(
        default=6,
        ge=1,
        description="Most sampled frames between two detector runs inside a window; faces are followed by their "
        "landmarks in between. 1 = detect on every frame.",
    )
    face_track_max_gap_s: float = Field(
        default=0.25, gt=0.0, description="Sampled frames further apart than this are never followed, always detected."
    )
    min_track_frames: int = Field(default=1, ge=1)

    # --- scoring ---
    cnn_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    lstm_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    fake_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    uncertain_low: float | None = Field(default=None, gt=0.0, lt=1.0)
    # Photos only; they win over fake_threshold / uncertain_low, which otherwise apply to photos too.
    image_fake_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    image_uncertain_low: float | None = Field(default=None, gt=0.0, lt=1.0)

    # --- explanations ---
    heatmap_frames_per_track: int = Field(default=3, ge=0)

    @field_validator("sampling")
    @classmethod
    def _valid_sampling(cls, value: str | None) -> str | None:
        """Refuse a spec the planner cannot read at start-up; an empty one (a blanked env var) means unset."""
        from deepfake_core.media.sampling import parse_sampling

        if value is None or not value.strip():
            return None
        parse_sampling(value)
        return value


@lru_cache(maxsize=1)
def get_settings() -> CoreSettings:
    return CoreSettings()
