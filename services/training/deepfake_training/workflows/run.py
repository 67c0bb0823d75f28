"""One training run end to end: faces -> samples -> phase 1 -> phase 2 -> calibration -> exports -> install.

Every command (`train`, `reference`, `retrain`, `search`) is a composition of these steps over a run
folder (`RunLayout`), so a run can be inspected, resumed, evaluated again or continued later.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from deepfake_core.contract import DEFAULT_SAMPLING, ModelMetadata, to_model_input
from deepfake_core.media.sampling import parse_sampling
from deepfake_core.model.network import HybridDeepfakeDetector
from deepfake_core.settings import CoreSettings

from deepfake_training.config import TrainingConfig
from deepfake_training.data.face_cache import FaceCache, SamplingRule
from deepfake_training.data.samples import (
    ClipSet,
    FaceSynthesizer,
    FaceTrackData,
    FrameDataset,
    build_clip_pool,
    build_frame_pool,
    dataset_clip_set,
    load_tracks,
    synthetic_clip_set,
)
from deepfake_training.datasets.records import FAKE, REAL, MediaRecord
from deepfake_training.evaluation.calibration import Calibration, calibrate
from deepfake_training.evaluation.localisation import Localisation, measure_localisation
from deepfake_training.evaluation.reports import write_report
from deepfake_training.evaluation.scorer import (
    Evaluation,
    OnnxScorer,
    TorchScorer,
    evaluate_model,
    evaluate_scores,
    fit_fusion_weight,
    score_clips,
    summary_line,
)
from deepfake_training.learning.checkpoints import load_imagenet_backbone, load_model, save_model
from deepfake_training.learning.distributed import current
from deepfake_training.learning.runtime import export_check_providers, seed_everything, select_device
from deepfake_training.learning.trainer import (
    PhaseResult,
    build_model,
    cache_clip_features,
    train_frames,
    train_sequences_end_to_end,
    train_sequences_frozen,
)
from deepfake_training.synthesis.swap import assert_identity_disjoint
from deepfake_training.tracking import Tracker
from deepfake_training.workflows.exports import INT8_MAX_AUC_DROP, export_all, update_metadata

log = logging.getLogger(__name__)

MODEL_NAME = "deepfake_detector"


class RunLayout:
    """Where a run keeps its files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ensure(self) -> RunLayout:
        for folder in (self.root, self.checkpoints, self.exports, self.reports, self.clips):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    checkpoints = property(lambda self: self.root / "checkpoints")
    exports = property(lambda self: self.root / "exports")
    reports = property(lambda self: self.root / "reports")
    clips = property(lambda self: self.root / "clips")
    config = property(lambda self: self.root / "config.json")
    model = property(lambda self: self.root / "model.pt")
    data = property(lambda self: self.root / "data.json")
    summary = property(lambda self: self.root / "summary.json")
    val_clips = property(lambda self: self.clips / "val.npz")
    test_clips = property(lambda self: self.clips / "test.npz")
    phase2_features = property(lambda self: self.checkpoints / "phase2_features.npz")


# --- data -----------------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    cache: FaceCache
    records: list[MediaRecord]
    train_tracks: list[FaceTrackData]
    val_clips: ClipSet
    test_clips: ClipSet | None

    def describe(self) -> dict[str, object]:
        by_split: dict[str, dict[str, int]] = {}
        for record in self.records:
            split = by_split.setdefault(record.split, {"files": 0, "identities": 0})
            split["files"] += 1
        for split in by_split:
            by_split[split]["identities"] = len({r.identity for r in self.records if r.split == split})
        return {
            "cache": str(self.cache.directory),
            "splits": by_split,
            "train_faces": int(sum(len(t) for t in self.train_tracks)),
            "train_tracks": len(self.train_tracks),
            "val_clips": len(self.val_clips),
            "val_frames": self.val_clips.frame_count(),
            "test_clips": len(self.test_clips) if self.test_clips else 0,
            "test_frames": self.test_clips.frame_count() if self.test_clips else 0,
        }


def build_cache(
    records: Sequence[MediaRecord],
    cache_root: Path,
    face_size: int,
    settings: CoreSettings,
    sampling: SamplingRule,
    workers: int,
    progress: bool = True,
) -> FaceCache:
    """The face cache at `face_size` with every record's faces in it (built or resumed; logs a summary)."""
    cache = FaceCache(cache_root, face_size, settings.face_margin)
    cache.build(records, settings, sampling=sampling, workers=workers, progress=progress)
    return cache


def prepare_data(
    records: Sequence[MediaRecord],
    cache: FaceCache,
    config: TrainingConfig,
    layout: RunLayout,
    val_stride: int | None = None,
    test_stride: int | None = None,
    max_train_frames_per_video: int | None = None,
    max_train_videos: int | None = None,
) -> TrainingData:
    """Tracks of the training split, and the fixed validation and test clips (made once, then reloaded).

    A split whose records include fakes is evaluated on them (one clip per video, `eval_frames_per_video`
    frames); a split of reals only is evaluated on SBI and swap fakes made from its own faces.
    `max_train_videos` loads only that many training videos, evenly spread over the split: when phase 1 streams
    from face shards, the tracks in memory serve phase 2's clips alone (`phase2_sequences` of them), so memory
    no longer grows with the dataset.
    """
    assert_identity_disjoint([r.identity for r in records], [r.split for r in records])
    ready = cache.ready(records)
    train_records = [r for r in ready if r.split == "train"]
    if max_train_videos is not None and len(train_records) > max_train_videos:
        chosen = np.linspace(0, len(train_records) - 1, max_train_videos).round().astype(int)
        train_records = [train_records[k] for k in chosen]
    train = load_tracks(cache, train_records, max_train_frames_per_video)
    if not train:
        raise ValueError("no training faces: the face cache holds none of the training split's records")
    clips = {}
    for split, stride, path in (
        ("val", val_stride, layout.val_clips),
        ("test", test_stride, layout.test_clips),
    ):
        chosen = [r for r in ready if r.split == split]
        if path.is_file():
            clips[split] = ClipSet.load(path)
            continue
        if not chosen:
            clips[split] = None
            continue
        tracks = load_tracks(cache, chosen)
        if any(r.label == FAKE for r in chosen):
            clip_set = dataset_clip_set(split, tracks, config.input_size, config.eval_frames_per_video)
        else:
            clip_set = synthetic_clip_set(
                split,
                tracks,
                config.input_size,
                config.sequence_length,
                stride or config.sequence_length,
                seed=config.seed + (1 if split == "val" else 2),
            )
        clip_set.save(path)
        clips[split] = clip_set
    if clips.get("val") is None:
        raise ValueError("no validation faces: calibration needs records in the 'val' split")
    data = TrainingData(cache, list(records), train, clips["val"], clips.get("test"))
    if current().is_main:  # under torchrun the other ranks read what rank 0 wrote
        layout.data.write_text(
            json.dumps({"records": [r.to_dict() for r in records], "summary": data.describe()}, indent=1)
        )
    return data


def records_of_run(layout: RunLayout) -> list[MediaRecord]:
    return [MediaRecord.from_dict(r) for r in json.loads(layout.data.read_text())["records"]]


# --- training -------------------------------------------------------------------------------------------


@dataclass
class TrainingOutcome:
    model: HybridDeepfakeDetector
    phase1: PhaseResult
    phase2: PhaseResult
    seconds: float


def frame_validator(
    clips: ClipSet, config: TrainingConfig, max_frames: int = 400
) -> Callable[[HybridDeepfakeDetector], dict]:
    """Frame-level AUC of the CNN branch on an even subset of validation frames (cheap enough to run often)."""
    step = max(1, clips.frame_count() // max_frames)

    def validate(model: HybridDeepfakeDetector) -> dict[str, float | None]:
        from deepfake_training.evaluation.metrics import area_under_roc

        frames = np.concatenate(clips.faces)[::step]
        labels = clips.frame_labels()[::step]
        scores = []
        device = select_device(config)
        model.eval()
        with torch.inference_mode():
            for begin in range(0, len(frames), 64):
                batch = torch.from_numpy(to_model_input(frames[begin : begin + 64]))
                scores.append(torch.softmax(model.frame_only(batch.to(device)).float(), -1)[:, 1].cpu().numpy())
        return {"frame_auc": area_under_roc(labels, np.concatenate(scores))}

    return validate


def train_model(
    data: TrainingData,
    config: TrainingConfig,
    layout: RunLayout,
    tracker: Tracker | None = None,
    resume: bool = True,
    initial: HybridDeepfakeDetector | None = None,
    pool_transform: Callable[[list], list] | None = None,
    extra_tracks: Sequence[FaceTrackData] = (),
    phase1_lr: float | None = None,
    validate: bool = True,
    imagenet_weights: Path | None = None,
    phase1_shards: str | Path | None = None,
    stream_transform: Callable[[Iterator[tuple[torch.Tensor, ...]]], Iterator[tuple[torch.Tensor, ...]]] | None = None,
) -> TrainingOutcome:
    """Phase 1 then phase 2; `initial` continues from an existing model (continual learning);
    `imagenet_weights` starts the backbone from a torchvision resnext50_32x4d state dict; `phase1_shards`
    streams phase 1 from face shards (`deepfake-train shards`) instead of the in-memory pool (a resumed
    streamed run keeps its weights and step count, not the exact batch order); `stream_transform` rewrites the
    streamed batches (retrain mixes its new fakes in with it).

    Under torchrun every rank trains both phases on its share of each global batch (phase 2's frozen
    features are computed a share per rank and gathered); rank 0 alone writes the features file and the model.
    """
    started = time.perf_counter()
    seed_everything(config.seed)
    model = initial if initial is not None else build_model(config)
    if imagenet_weights is not None:
        loaded = load_imagenet_backbone(model, imagenet_weights)
        log.info("backbone: %d ImageNet tensors from %s", loaded, imagenet_weights)
    tracks = [*data.train_tracks, *extra_tracks]
    synthesizer = FaceSynthesizer(tracks, config.input_size)
    pool = build_frame_pool(tracks, config, config.seed, min_items_per_identity=_min_items(tracks))
    if pool_transform:
        pool = pool_transform(pool)
    kinds = {kind: sum(1 for item in pool if item.kind == kind) for kind in ("real", "fake", "sbi", "swap")}
    log.info("phase 1 pool: %s", kinds)
    if tracker:
        tracker.log_params({f"pool_{k}": v for k, v in kinds.items()})
    dataset = FrameDataset(pool, synthesizer, config, config.seed)
    validator = frame_validator(data.val_clips, config) if validate else None
    batches = None
    if phase1_shards is not None:
        from deepfake_training.data.streaming import FaceShardStream, shard_paths, stream_batches

        stream = FaceShardStream(shard_paths(phase1_shards), config, config.seed)
        share = config.batch_size // current().world_size
        batches = stream_batches(stream, share, config.phase1_steps, config.loader_workers)
        if stream_transform is not None:
            batches = stream_transform(batches)
    phase1 = train_frames(
        model, dataset, config, layout.root, tracker, validator, resume=resume, learning_rate=phase1_lr,
        batches=batches,
    )  # fmt: skip
    clip_pool = build_clip_pool(
        tracks, config.sequence_length, config.sequence_length // 2, config.swap_fraction, config.seed
    )
    if len(clip_pool) > config.phase2_sequences:
        chosen = np.random.default_rng((config.seed, 22)).choice(len(clip_pool), config.phase2_sequences, replace=False)
        clip_pool = [clip_pool[k] for k in sorted(chosen)]
    if not clip_pool or config.phase2_steps == 0:
        log.warning("phase 2 skipped: %s", "no video long enough for a sequence" if not clip_pool else "0 steps")
        phase2 = PhaseResult("phase2", 0, 0.0)
    elif config.phase2_finetune_cnn:
        phase2 = train_sequences_end_to_end(model, clip_pool, synthesizer, config, layout.root, tracker, resume)
    else:
        if not resume and current().is_main:
            layout.phase2_features.unlink(missing_ok=True)
        features, labels = cache_clip_features(model, clip_pool, synthesizer, config, layout.phase2_features)
        phase2 = train_sequences_frozen(model, features, labels, config, layout.root, tracker, resume)
    model.cpu().eval()
    if current().is_main:
        save_model(layout.model, model, training_config=config.model_dump())
    return TrainingOutcome(model, phase1, phase2, time.perf_counter() - started)


def _min_items(tracks: Sequence[FaceTrackData]) -> int:
    """Photos give one face per identity against a video's hundreds: lift each identity to 1/4 of the median video."""
    video_lengths = [len(t) for t in tracks if not t.is_image]
    return int(np.median(video_lengths) // 4) if video_lengths else 0


# --- calibration, export, install -----------------------------------------------------------------------


@dataclass
class ExportSummary:
    calibration: Calibration  # videos (see calibrate_by_media)
    metadata: ModelMetadata
    files: dict[str, str]
    sizes_mb: dict[str, float]
    val_auc: dict[str, dict[str, float | None]]  # precision -> {video, frame}
    drift: dict[str, dict[str, float | None]]  # precision -> AUC change vs fp32
    inference_ms_per_clip: dict[str, float]
    int8_adopted: bool
    serving_precision: str
    serving_file: str
    installed_version: int | None = None
    fusion: dict[str, object] = field(default_factory=dict)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    image_calibration: Calibration | None = None  # photos; None = photos use the video thresholds

    def to_dict(self) -> dict[str, object]:
        skipped = ("evaluations", "calibration", "image_calibration", "metadata")
        data = {k: v for k, v in asdict(self).items() if k not in skipped}
        data["calibration"] = self.calibration.to_dict()
        data["image_calibration"] = self.image_calibration.to_dict() if self.image_calibration else None
        data["metadata"] = {**asdict(self.metadata)}
        return data


def next_version(repository: Path, name: str = MODEL_NAME) -> int:
    from deepfake_core.serving.model_repository import latest_version, model_dir

    found = [latest_version(model_dir(repository, variant, name)) for variant in ("gpu", "cpu")]
    return max((v for v in found if v is not None), default=0) + 1


def calibrate_export_install(
    model: HybridDeepfakeDetector,
    data: TrainingData,
    config: TrainingConfig,
    layout: RunLayout,
    precisions: Sequence[str] = ("fp32", "fp16", "int8"),
    repository: Path | None = None,
    serve: str = "auto",
    extra_metadata: dict[str, str] | None = None,
    tracker: Tracker | None = None,
    sampling: str = DEFAULT_SAMPLING,
    sequence_fps: float = 0.0,
) -> ExportSummary:
    """Calibrate on validation clips, export every precision, measure each one's AUC and speed, install one.

    `sampling` and `sequence_fps` go into the model's metadata: serving samples videos into windows of
    `sequence_length` frames `1/sequence_fps` s apart, exactly what the BiLSTM was trained on (`serving_sampling`).

    `serve`: 'auto' installs INT8 when its validation AUC (video level) is within INT8_MAX_AUC_DROP of FP32's,
    else FP32; or name a precision. `repository=None` installs nothing.
    """
    val = data.val_clips
    reference = score_clips(val, TorchScorer(model), config.sequence_length)
    fusion_table: dict[float, float | None] = {}
    if config.fit_fusion_weights:
        total = config.cnn_weight + config.lstm_weight
        cnn_weight, fusion_table = fit_fusion_weight(val, reference, config.cnn_weight / total)
        config = config.with_overrides({"cnn_weight": cnn_weight, "lstm_weight": round(1.0 - cnn_weight, 4)})
        rounded = {w: None if a is None else round(a, 4) for w, a in fusion_table.items()}
        log.info("fusion: cnn %.1f / lstm %.1f; val video AUC by cnn weight %s", cnn_weight, 1 - cnn_weight, rounded)
    torch_eval = evaluate_scores("torch", val, reference, 0.5, config.cnn_weight, config.lstm_weight)
    calibration, image_calibration = calibrate_by_media(val, torch_eval.video_scores, config)
    log.info("calibration (videos): %s; (photos): %s", calibration, image_calibration)
    version = next_version(repository) if repository is not None else 0
    metadata = ModelMetadata(
        name=MODEL_NAME,
        version=str(version),
        input_size=config.input_size,
        sequence_length=config.sequence_length,
        trained=True,
        fake_threshold=calibration.fake_threshold,
        uncertain_low=calibration.uncertain_low,
        cnn_weight=config.cnn_weight,
        lstm_weight=config.lstm_weight,
        sampling=sampling,
        sequence_fps=sequence_fps,
        image_fake_threshold=image_calibration.fake_threshold if image_calibration else None,
        image_uncertain_low=image_calibration.uncertain_low if image_calibration else None,
        extra={
            "calibration_target_fpr": repr(config.target_fpr),
            "calibration_fpr": f"{calibration.achieved_fpr:.4f}",
            "calibration_tpr": f"{calibration.achieved_tpr:.4f}",
            "val_video_auc": f"{torch_eval.overall.video.auc or 0:.4f}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra_metadata or {}),
        },
    )
    calibration_clips = _calibration_clips(val)
    exported = export_all(model, layout.exports, metadata, calibration_clips, precisions)
    providers = export_check_providers(config.device)  # the training device's: CUDA first on a GPU machine
    val_auc: dict[str, dict[str, float | None]] = {}
    evaluations: dict[str, Evaluation] = {"torch": torch_eval}
    speed: dict[str, float] = {}
    for precision, item in exported.items():
        scorer = OnnxScorer(item.path, providers=providers)
        evaluation = evaluate_model(
            f"onnx-{precision}", val, scorer, config.sequence_length, calibration.fake_threshold,
            config.cnn_weight, config.lstm_weight, calibration.uncertain_low,
        )  # fmt: skip
        evaluations[precision] = evaluation
        val_auc[precision] = {"video": evaluation.overall.video.auc, "frame": evaluation.overall.frame.auc}
        speed[precision] = clip_latency_ms(scorer, config)
        log.info("%s; %.0f ms per %d-frame clip", summary_line(evaluation), speed[precision], config.sequence_length)
    drift = {
        p: {
            level: (
                None
                if val_auc[p][level] is None or val_auc["fp32"][level] is None
                else float(val_auc[p][level] - val_auc["fp32"][level])
            )  # fmt: skip
            for level in ("video", "frame")
        }
        for p in val_auc
    }
    int8_adopted = (
        "int8" in drift and drift["int8"]["video"] is not None and drift["int8"]["video"] >= -INT8_MAX_AUC_DROP
    )
    if "int8" in drift and drift["int8"]["frame"] is not None:
        int8_adopted = int8_adopted and drift["int8"]["frame"] >= -INT8_MAX_AUC_DROP
    serving = ("int8" if int8_adopted else "fp32") if serve == "auto" else serve
    if serving not in exported:
        raise ValueError(f"cannot serve {serving}: it was not exported (exported: {sorted(exported)})")
    decision = {
        "int8_adopted": str(int8_adopted).lower(),
        "int8_val_auc_drift": f"{drift.get('int8', {}).get('video') or 0:+.5f}",
        "fp16_val_auc_drift": f"{drift.get('fp16', {}).get('video') or 0:+.5f}",
    }
    update_metadata([e.path for e in exported.values()], extra=decision)
    summary = ExportSummary(
        calibration=calibration,
        metadata=metadata,
        files={p: str(e.path) for p, e in exported.items()},
        sizes_mb={p: round(e.size_bytes / 1e6, 1) for p, e in exported.items()},
        val_auc=val_auc,
        drift=drift,
        inference_ms_per_clip=speed,
        int8_adopted=int8_adopted,
        serving_precision=serving,
        serving_file=str(exported[serving].path),
        fusion={
            "cnn_weight": config.cnn_weight,
            "lstm_weight": config.lstm_weight,
            "val_video_auc_by_cnn_weight": {str(w): a for w, a in fusion_table.items()},
        },  # fmt: skip
        evaluations=evaluations,
        image_calibration=image_calibration,
    )
    if repository is not None:
        from deepfake_core.serving.model_repository import install_model

        summary.installed_version = install_model(exported[serving].path, Path(repository), version=version)
        log.info("installed %s as version %d in %s", exported[serving].path.name, summary.installed_version, repository)
    if tracker:
        tracker.log_metrics({f"calibration/{k}": v for k, v in calibration.to_dict().items()})
        for precision, aucs in val_auc.items():
            tracker.log_metrics(
                {f"val/{precision}_video_auc": aucs["video"], f"val/{precision}_frame_auc": aucs["frame"]}
            )
            tracker.log_metrics({f"speed/{precision}_ms_per_clip": speed[precision]})
    return summary


def serving_sampling(training_sampling: str) -> tuple[str, float]:
    """(serving sampling, window frame rate) that reproduce the training windows of a face cache sampling.

    Training clips are consecutive cached frames; a cache sampled at `fps:R` gives windows of frames 1/R s
    apart, which `windows:K` reproduces when the model says `sequence_fps` R. Any other cache sampling
    spaces frames by the video's length, which no fixed spacing reproduces: serving then uses consecutive
    frames (sequence_fps 0).
    """
    strategy = parse_sampling(training_sampling)
    return DEFAULT_SAMPLING, strategy.value if strategy.kind == "fps" else 0.0


def run_sampling(layout: RunLayout) -> tuple[str, float]:
    """The serving sampling a run's earlier export recorded (re-export and retraining keep it)."""
    exported = layout.exports / "model.fp32.onnx"
    if not exported.is_file():
        return DEFAULT_SAMPLING, 0.0
    from deepfake_core.model.export import read_metadata

    metadata = read_metadata(exported)
    return metadata.sampling, metadata.sequence_fps


def calibrate_by_media(
    val: ClipSet, scores: np.ndarray, config: TrainingConfig
) -> tuple[Calibration, Calibration | None]:
    """Video thresholds from video clips, photo thresholds from photo files, each where both classes exist.

    A photo is scored by the CNN alone and a video by the fusion of CNN and BiLSTM over many frames: the
    two scores are distributed differently (photos' real scores ran higher), so one threshold for both
    is wrong for at least one. Photos are calibrated as files, the way serving decides them (`photo_files`).
    Without video clips (a photo-only set) the video thresholds come from every clip.
    """
    labels, photo = np.asarray(val.labels), np.asarray(val.is_image, dtype=bool)
    video = ~photo if len(np.unique(labels[~photo])) == 2 else np.ones(len(labels), dtype=bool)
    calibration = calibrate(labels[video], scores[video], config.target_fpr, config.uncertain_fnr)
    file_labels, file_scores = photo_files(val, scores)
    if len(np.unique(file_labels)) < 2:
        return calibration, None
    return calibration, calibrate(file_labels, file_scores, config.target_fpr, config.uncertain_fnr)


def photo_files(clips: ClipSet, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Photo faces regrouped into files, scored as serving scores a photo: by its most suspicious face.

    A real photo scores the highest of its faces. Each fake face stands for a photo in which that one face
    was manipulated and the others were not: it scores the highest of itself and its photo's other real
    faces. So a group photo of five real people counts as one real file with five chances to look fake,
    which is what a 'fake' threshold must survive.
    """
    by_file: dict[str, list[int]] = {}
    for k in np.flatnonzero(np.asarray(clips.is_image, dtype=bool)):
        by_file.setdefault(clips.keys[k].split("@")[0].split("#")[0], []).append(int(k))
    labels, file_scores = [], []
    for members in by_file.values():
        reals = [k for k in members if clips.labels[k] == REAL]
        if reals:
            labels.append(REAL)
            file_scores.append(max(float(scores[k]) for k in reals))
        for k in (k for k in members if clips.labels[k] != REAL):
            others = [float(scores[j]) for j in reals if clips.keys[j] != clips.keys[k]]
            labels.append(FAKE)
            file_scores.append(max([float(scores[k]), *others]))
    return np.array(labels, dtype=np.int64), np.array(file_scores, dtype=np.float64)


def _calibration_clips(clips: ClipSet, count: int = 24, frames: int = 8) -> list[np.ndarray]:
    """A spread of validation clips (reals and fakes), cut to `frames` frames each, for INT8 ranges."""
    chosen = np.linspace(0, len(clips) - 1, min(count, len(clips))).round().astype(int)
    return [clips.faces[k][:frames] for k in chosen]


def clip_latency_ms(scorer: OnnxScorer, config: TrainingConfig, repeats: int = 3) -> float:
    """Median wall time of one `sequence_length`-frame clip through an exported model on the scorer's providers."""
    faces = np.random.default_rng(0).random(
        (1, config.sequence_length, 3, config.input_size, config.input_size), dtype=np.float32
    )
    scorer(faces)  # warm-up: onnxruntime allocates on the first run
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        scorer(faces)
        times.append((time.perf_counter() - begin) * 1000)
    return float(np.median(times))


def evaluate_held_out(
    summary: ExportSummary,
    data: TrainingData,
    config: TrainingConfig,
    layout: RunLayout,
    tracker: Tracker | None = None,
) -> Evaluation | None:
    """The served file on the held-out test clips, with the calibrated threshold; writes reports/test/."""
    if data.test_clips is None:
        return None
    evaluation = evaluate_model(
        f"served-{summary.serving_precision}",
        data.test_clips,
        OnnxScorer(Path(summary.serving_file), providers=export_check_providers(config.device)),
        config.sequence_length,
        summary.calibration.fake_threshold,
        summary.metadata.cnn_weight,
        summary.metadata.lstm_weight,
        summary.calibration.uncertain_low,
    )
    summary.evaluations["test"] = evaluation
    log.info(summary_line(evaluation))
    shown = [evaluation]
    if summary.serving_precision != "fp32":
        fp32 = evaluate_model(
            "onnx-fp32", data.test_clips,
            OnnxScorer(Path(summary.files["fp32"]), providers=export_check_providers(config.device)),
            config.sequence_length,
            summary.calibration.fake_threshold, summary.metadata.cnn_weight, summary.metadata.lstm_weight,
            summary.calibration.uncertain_low,
        )  # fmt: skip
        summary.evaluations["test_fp32"] = fp32
        log.info(summary_line(fp32))
        shown.append(fp32)
    paths = write_report(shown, layout.reports / "heldout", "Held-out identities")
    if tracker:
        tracker.log_metrics(
            {"test/video_auc": evaluation.overall.video.auc, "test/frame_auc": evaluation.overall.frame.auc}
        )
        for path in paths.values():
            tracker.log_artifact(path, "reports/heldout")
    return evaluation


def heatmap_localisation(summary: ExportSummary, data: TrainingData, config: TrainingConfig) -> Localisation | None:
    """How well the served model's heatmaps find the manipulation in SBI fakes of the held-out (else val) people."""
    for split in ("test", "val"):
        records = [r for r in data.records if r.split == split and r.label == REAL]
        tracks = load_tracks(data.cache, data.cache.ready(records))
        if tracks:
            localisation = measure_localisation(Path(summary.serving_file), tracks, config.input_size)
            log.info("heatmap localisation on %s fakes: %s", split, localisation.to_dict())
            return localisation
    return None


def load_run_model(layout: RunLayout) -> HybridDeepfakeDetector:
    model, _ = load_model(layout.model)
    return model
