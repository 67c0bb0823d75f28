"""Every number of the training recipe in one validated document, and where runs, caches and MLflow live.

`TrainingConfig` defaults are the paper's recipe (section IV); a YAML/JSON file and `--set key=value`
overrides change any of them, and the whole document is logged to MLflow with each run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from deepfake_core.settings import PROJECT_ROOT
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CACHE_ROOT = PROJECT_ROOT / ".cache" / "faces"
DEFAULT_RUNS_ROOT = PROJECT_ROOT / "var" / "runs"  # ignored by git: checkpoints, clips, exports, reports
DEFAULT_MLRUNS = PROJECT_ROOT / "mlruns"


class TrainingConfig(BaseModel):
    """The training recipe. Values default to the paper; the reference model overrides a few for CPU time."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = 1234
    # --- network shape (the architecture itself is fixed) ---
    input_size: int = Field(default=224, ge=64, multiple_of=16)
    sequence_length: int = Field(default=30, ge=2)
    lstm_hidden: int = Field(default=256, ge=1)
    dropout: float = Field(default=0.3, ge=0.0, lt=1.0)
    # --- optimisation ---
    learning_rate: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    batch_size: int = Field(default=32, ge=2)
    focal_gamma: float = Field(default=2.0, ge=0.0)
    warmup_steps: int = Field(default=50, ge=0, description="Linear learning-rate warm-up, then cosine decay.")
    grad_clip: float = Field(default=5.0, gt=0.0)
    # --- phase 1: the CNN with attention on single frames ---
    phase1_steps: int = Field(default=3000, ge=0)
    # --- phase 2: the BiLSTM on sequences over the frozen (or fine-tuned) CNN ---
    phase2_steps: int = Field(default=600, ge=0)
    phase2_batch_size: int = Field(default=16, ge=2)
    phase2_learning_rate: float = Field(default=1e-3, gt=0.0)
    phase2_sequences: int = Field(default=256, ge=2, description="Sequences whose frozen CNN features are cached.")
    phase2_finetune_cnn: bool = Field(default=False, description="Train the CNN end to end in phase 2 (GPU).")
    # --- data: synthetic fakes ---
    paired_fakes: bool = Field(
        default=True,
        description="Each fake sits in its batch next to the real frame it was made from, both augmented alike "
        "(as in SBI): the only difference the network sees is the manipulation. Implies half fakes.",
    )
    fake_fraction: float = Field(default=0.5, gt=0.0, lt=1.0, description="Share of fakes when not paired.")
    sbi_strength: float = Field(
        default=1.0, ge=0.5, le=4.0, description="SBI colour/geometry jitter scale; 1 = the SBI paper's ranges."
    )
    sbi_strength_start: float | None = Field(
        default=None, ge=0.5, le=4.0, description="Curriculum: SBI strength at step 0, eased to sbi_strength."
    )
    curriculum_steps: int = Field(default=200, ge=1, description="Steps over which the SBI strength eases down.")
    swap_fraction: float = Field(default=0.3, ge=0.0, le=1.0, description="Share of synthetic fakes made by swaps.")
    dataset_fake_fraction: float = Field(
        default=1.0, ge=0.0, le=1.0, description="With a real dataset: share of fakes taken from its fake videos."
    )
    # --- augmentation (applied to reals and fakes alike) ---
    flip_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    rotation_degrees: float = Field(default=15.0, ge=0.0, le=45.0)
    rotation_probability: float = Field(default=0.3, ge=0.0, le=1.0)
    colour_jitter: float = Field(
        default=0.15,
        ge=0.0,
        le=0.5,
        description="Whole-image colour jitter (per-channel gain, saturation, contrast), +-fraction; beyond the "
        "paper's list: with few identities it stops the network from learning each person's skin colour.",
    )
    colour_jitter_probability: float = Field(default=0.8, ge=0.0, le=1.0)
    noise_sigma: float = Field(default=0.1, ge=0.0, le=0.5, description="Maximum Gaussian noise sigma (0..1).")
    noise_probability: float = Field(default=0.2, ge=0.0, le=1.0)
    brightness: float = Field(default=0.2, ge=0.0, le=0.9, description="Brightness jitter, +-fraction.")
    brightness_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    jpeg_quality_min: int = Field(default=40, ge=5, le=100)
    jpeg_quality_max: int = Field(default=95, ge=5, le=100)
    jpeg_probability: float = Field(default=0.3, ge=0.0, le=1.0)
    # --- adversarial training ---
    cam_region_weight: float = Field(
        default=0.0,
        ge=0.0,
        description="Weight of the region loss (losses.region_loss) on synthetic fakes in phase 1: pulls the "
        "heatmap onto the manipulated pixels. 0 = the paper's recipe.",
    )
    pgd_fraction: float = Field(default=0.1, ge=0.0, le=1.0, description="Share of each batch replaced by PGD.")
    pgd_epsilon: float = Field(default=0.05, ge=0.0, le=1.0, description="L-inf radius on [0, 1] pixels.")
    pgd_steps: int = Field(default=3, ge=1)
    pgd_step_size: float | None = Field(default=None, gt=0.0, description="Default 2.5 * epsilon / steps.")
    # --- evaluation and calibration ---
    eval_frames_per_video: int = Field(default=32, ge=1)
    target_fpr: float = Field(default=0.032, gt=0.0, lt=0.5, description="FPR of the 'fake' threshold (paper).")
    uncertain_fnr: float = Field(default=0.05, gt=0.0, lt=0.5, description="Fakes allowed below the band.")
    cnn_weight: float = Field(default=0.6, ge=0.0, le=1.0)
    lstm_weight: float = Field(default=0.4, ge=0.0, le=1.0)
    fit_fusion_weights: bool = Field(
        default=True, description="Grid-search cnn_weight (lstm = 1 - cnn) on validation video clips, as the paper."
    )
    # --- runtime ---
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = Field(default=True, description="float16 autocast + grad scaling on CUDA only.")
    amp_dtype: Literal["float16", "bfloat16"] = Field(
        default="float16", description="Autocast type with mixed_precision (bfloat16 needs no gradient scaler)."
    )
    cpu_autocast: bool = Field(default=False, description="bfloat16 autocast on CPU too (CPUs with AMX/AVX512-BF16).")
    channels_last: bool = Field(default=False, description="NHWC memory layout in phase 1 (faster on tensor cores).")
    speed_mode: bool = Field(
        default=False,
        description="Give up bit-exact reruns for speed: cudnn.benchmark, TF32, non-deterministic kernels, "
        "torch.compile of the phase-1 forward on CUDA. Off = the deterministic default.",
    )
    batch_norm: Literal["batch", "sync", "frozen"] = Field(
        default="batch",
        description="Phase-1 batch norm: 'batch' normalises with each process's batch (one process: the whole "
        "batch); 'sync' with the global batch across torchrun processes (SyncBatchNorm, GPUs only); 'frozen' "
        "with running statistics that stop updating (a pretrained start, or small per-GPU batches).",
    )
    threads: int = Field(default=0, ge=0, description="torch intra-op threads; 0 = torch's default.")
    loader_workers: int = Field(default=0, ge=0, description="DataLoader worker processes (0 = main process).")
    checkpoint_every: int = Field(default=200, ge=1, description="Steps between resumable checkpoints.")
    eval_every: int = Field(default=0, ge=0, description="Steps between validation passes; 0 = end of phase.")
    max_minutes: float | None = Field(
        default=None, gt=0.0, description="Wall-clock guard per phase: stop early (and log it) past this."
    )

    @model_validator(mode="after")
    def _ordered_ranges(self) -> TrainingConfig:
        if self.jpeg_quality_min > self.jpeg_quality_max:
            raise ValueError("jpeg_quality_min must not exceed jpeg_quality_max")
        if self.paired_fakes and self.batch_size % 2:
            raise ValueError("batch_size must be even with paired_fakes (each batch holds real/fake pairs)")
        if self.cnn_weight + self.lstm_weight <= 0:
            raise ValueError("cnn_weight + lstm_weight must be positive")
        return self

    @property
    def effective_pgd_step_size(self) -> float:
        return self.pgd_step_size if self.pgd_step_size is not None else 2.5 * self.pgd_epsilon / self.pgd_steps

    def with_overrides(self, overrides: dict[str, Any]) -> TrainingConfig:
        return TrainingConfig.model_validate({**self.model_dump(), **overrides})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> TrainingConfig:
        """A YAML or JSON file with any subset of the fields."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of config fields, got {type(data).__name__}")
        return cls.model_validate(data)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings -> dict; values are parsed as YAML scalars (numbers, booleans, null)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Override '{pair}' is not key=value")
        overrides[key.strip()] = yaml.safe_load(raw)
    return overrides


class TrainingSettings(BaseSettings):
    """Where things live; read from `DEEPFAKE_TRAIN_*` variables (and MLflow's own `MLFLOW_TRACKING_URI`)."""

    model_config = SettingsConfigDict(env_prefix="DEEPFAKE_TRAIN_", extra="ignore")

    cache_root: Path = DEFAULT_CACHE_ROOT
    runs_root: Path = DEFAULT_RUNS_ROOT
    mlflow_tracking_uri: str | None = Field(
        default=None, description="An MLflow server URI; unset = MLFLOW_TRACKING_URI, else a local store."
    )
    mlflow_experiment: str = "deepfake-detector"
    mlflow_registered_model: str = Field(
        default="deepfake-detector",
        description="Registered model of `retrain`'s gate: each candidate a version aliased 'staging', the one "
        "promoted aliased 'production'.",
    )
    cache_workers: int = Field(default=2, ge=1, description="Processes that detect and align faces in parallel.")
    s3_endpoint: str | None = Field(
        default=None,
        description="S3 endpoint URL for s3:// face shards (e.g. http://minio:9000); unset = AWS S3 (boto3's default).",
    )
    s3_access_key: str | None = Field(default=None, description="Unset = boto3's credential chain (AWS_* variables).")
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    optuna_storage: str | None = Field(
        default=None,
        description="Optuna storage URL shared by parallel `search` processes (sqlite:///search.db on one machine, "
        "postgresql://... across pods); unset = one process, the study in memory.",
    )
    distributed_timeout_minutes: float = Field(
        default=180.0, gt=0, description="How long torchrun ranks wait for each other (rank 0 may build a cache)."
    )
