"""The two training phases of the paper, resumable and deterministic.

Phase 1 trains the CNN with attention (and its frame head) on single frames; phase 2 trains the BiLSTM
(and its sequence head) on sequences of `sequence_length` frames, either on cached features of the
frozen CNN (cheap: the CNN runs once per sequence) or end to end (`phase2_finetune_cnn`, for GPUs).
Both use AdamW, focal loss, warm-up + cosine learning rate, and write a checkpoint every
`checkpoint_every` steps that `resume=True` continues from with the same batches it would have seen.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from deepfake_core.model.network import DetectorConfig, HybridDeepfakeDetector
from torch import nn
from torch.utils.data import DataLoader, Sampler

from deepfake_training.config import TrainingConfig
from deepfake_training.data.samples import ClipItem, FaceSynthesizer, FrameDataset, make_clip, to_tensor
from deepfake_training.learning.adversarial import pgd_attack
from deepfake_training.learning.checkpoints import load_checkpoint, save_checkpoint
from deepfake_training.learning.distributed import RankBatches, any_rank, current
from deepfake_training.learning.losses import focal_loss, region_loss
from deepfake_training.learning.runtime import (
    amp_dtype,
    autocast,
    configure_speed,
    select_device,
    uses_amp,
    uses_grad_scaler,
)
from deepfake_training.tracking import Tracker

log = logging.getLogger(__name__)

T = TypeVar("T")
Validator = Callable[[HybridDeepfakeDetector], dict[str, float | None]]


def build_model(config: TrainingConfig) -> HybridDeepfakeDetector:
    """A freshly initialised detector (seeded by the caller) of the configured shape."""
    return HybridDeepfakeDetector(
        DetectorConfig(
            input_size=config.input_size,
            lstm_hidden=config.lstm_hidden,
            dropout=config.dropout,
            sequence_length=config.sequence_length,
        )
    )


def cnn_parameters(model: HybridDeepfakeDetector) -> list[nn.Parameter]:
    return [*model.backbone.parameters(), *model.spatial_attention.parameters(), *model.frame_head.parameters()]


def temporal_parameters(model: HybridDeepfakeDetector) -> list[nn.Parameter]:
    return [*model.temporal.parameters(), *model.sequence_head.parameters()]


def freeze_batch_norm(module: nn.Module) -> None:
    """Batch-norm layers of `module` normalise with their running statistics and stop updating them."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


class FramePhase(nn.Module):
    """Phase 1's forward as a module's `forward`, so DistributedDataParallel and torch.compile can wrap it
    (they only see `forward`): (frame logits, fake CAMs or None)."""

    def __init__(self, model: HybridDeepfakeDetector, with_cams: bool) -> None:
        super().__init__()
        self.model = model
        self.with_cams = with_cams

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.with_cams:
            return self.model.frame_logits_and_cams(images)
        return self.model.frame_only(images), None


class SequencePhase(nn.Module):
    """Phase 2's forward over cached CNN features, as a module's `forward` for DistributedDataParallel."""

    def __init__(self, model: HybridDeepfakeDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.sequence_from_features(features)


def _data_parallel(module: nn.Module, device: torch.device, find_unused: bool = False) -> nn.Module:
    """`module` under DistributedDataParallel (gradients averaged over the ranks at each backward).

    Only parameters that require a gradient are synchronised; `find_unused` when the forward leaves some of
    them idle (phase 1 leaves the BiLSTM idle), at the cost of a graph traversal per step.
    """
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        module, device_ids=[device.index or 0] if device.type == "cuda" else None, find_unused_parameters=find_unused
    )


def _phase1_forward(
    model: HybridDeepfakeDetector, config: TrainingConfig, device: torch.device
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]] | None:
    """The wrapped phase-1 forward for several processes or the speed mode; None = call the model directly."""
    context = current()
    if not context.enabled and not config.speed_mode:
        return None
    forward: nn.Module = FramePhase(model, config.cam_region_weight > 0)
    if context.enabled:
        forward = _data_parallel(forward, device, find_unused=True)
    if config.speed_mode and device.type == "cuda":
        return torch.compile(forward)  # type: ignore[return-value]
    return forward


def _prepare_phase1_model(model: HybridDeepfakeDetector, config: TrainingConfig) -> None:
    """Batch-norm handling and memory layout as configured (the defaults change nothing)."""
    if config.batch_norm == "sync" and current().enabled:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config.batch_norm == "frozen":
        freeze_batch_norm(model)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)


def learning_rate_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up to `base`, then cosine decay to 5% of it at `total`."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass
class PhaseResult:
    phase: str
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per logging window
    validation: dict[str, float | None] = field(default_factory=dict)
    stopped_early: bool = False

    def first_last_loss(self) -> tuple[float, float]:
        return (self.losses[0], self.losses[-1]) if self.losses else (math.nan, math.nan)


class EpochBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Batches of (epoch, index, step) for steps `start`..`total`-1: epoch e is a permutation seeded by (seed, e).

    With `group` > 1, runs of `group` consecutive indices (a real frame and its fake) move as one unit, so
    they always share a batch. The epoch travels with each index, so DataLoader workers need no shared
    state to make the same sample.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int, total: int, group: int = 1) -> None:
        if size < batch_size:
            raise ValueError(f"the training pool ({size}) is smaller than one batch ({batch_size})")
        if batch_size % group or size % group:
            raise ValueError(f"batch size {batch_size} and pool size {size} must be multiples of {group}")
        self.size, self.batch_size, self.seed, self.start, self.total = size, batch_size, seed, start, total
        self.group = group
        self.per_epoch = size // batch_size

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        cached: tuple[int, np.ndarray] | None = None
        for step in range(self.start, self.total):
            epoch, position = divmod(step, self.per_epoch)
            if cached is None or cached[0] != epoch:
                units = np.random.default_rng((self.seed, epoch)).permutation(self.size // self.group)
                cached = (epoch, (units[:, None] * self.group + np.arange(self.group)).reshape(-1))
            chosen = cached[1][position * self.batch_size : (position + 1) * self.batch_size]
            yield [(epoch, int(i), step) for i in chosen]


class _EpochIndexed(torch.utils.data.Dataset):
    def __init__(self, dataset: FrameDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int, int]:
        epoch, index, step = key
        self.dataset.set_epoch(epoch, step)
        return self.dataset[index]


def train_frames(
    model: HybridDeepfakeDetector,
    dataset: FrameDataset,
    config: TrainingConfig,
    run_dir: Path,
    tracker: Tracker | None = None,
    validator: Validator | None = None,
    resume: bool = True,
    steps: int | None = None,
    learning_rate: float | None = None,
    log_every: int = 10,
    batches: Iterable[tuple[torch.Tensor, ...]] | None = None,
) -> PhaseResult:
    """Phase 1: the CNN branch on single frames, with PGD on `pgd_fraction` of each batch.

    `batches` replaces the in-memory pool's loader (e.g. `streaming.stream_batches` over face shards): this
    process's batches for the remaining steps, already split by rank.
    """
    device = select_device(config)
    context = current()
    configure_speed(config)
    total = config.phase1_steps if steps is None else steps
    base_lr = config.learning_rate if learning_rate is None else learning_rate
    checkpoint_path = Path(run_dir) / "checkpoints" / "phase1.pt"
    model.to(device).train()
    _prepare_phase1_model(model, config)
    parameters = cnn_parameters(model)
    optimizer = torch.optim.AdamW(parameters, lr=base_lr, weight_decay=config.weight_decay)
    amp = uses_amp(config, device)
    dtype = amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=uses_grad_scaler(config, device))
    start, losses = _resume_phase(checkpoint_path, model, optimizer, scaler) if resume else (0, [])
    if start:
        log.info("phase 1: resuming at step %d of %d", start, total)
    if start >= total:
        return PhaseResult("phase1", total, 0.0, losses)

    group = 2 if config.paired_fakes else 1
    if context.enabled:
        # Each rank its own dropout masks; the weights are rank 0's (DistributedDataParallel broadcasts them).
        torch.manual_seed(config.seed * 7919 + context.rank * 104_729 + start)
    forward = _phase1_forward(model, config, device)
    loader: Iterable[tuple[torch.Tensor, ...]]
    if batches is not None:
        loader = batches
    else:
        sampler: Sampler[list] = EpochBatchSampler(len(dataset), config.batch_size, config.seed, start, total, group)
        if context.enabled:
            sampler = RankBatches(sampler, config.batch_size, context.rank, context.world_size, group)
        loader = DataLoader(
            _EpochIndexed(dataset),
            batch_sampler=sampler,
            num_workers=config.loader_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            # Its own generator: an iterator otherwise draws its worker seed from the global RNG, which would
            # shift dropout masks after a resume (the global state is restored from the checkpoint).
            generator=torch.Generator().manual_seed(config.seed),
        )
    adversarial_count = int(round(config.pgd_fraction * config.batch_size))
    started = time.perf_counter()
    window: list[float] = []
    step = start
    stopped_early = False
    for images, labels, _kinds, regions in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        lr = learning_rate_at(step, total, base_lr, config.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if adversarial_count:
            images = _with_adversarial(
                model, images, labels, adversarial_count, config, step, context.rank, context.world_size, amp, dtype
            )
        if config.batch_norm == "frozen":
            freeze_batch_norm(model)  # the attack's eval/train switch put them back in train mode
        with autocast(amp, device, dtype):
            if forward is not None:
                logits, cams = forward(images)
            elif config.cam_region_weight > 0:
                logits, cams = model.frame_logits_and_cams(images)
            else:
                logits = model.frame_only(images)
        loss = focal_loss(logits, labels, config.focal_gamma)
        if config.cam_region_weight > 0:
            loss = loss + config.cam_region_weight * region_loss(cams, regions.to(device, non_blocking=True))
        optimiser_step(loss, optimizer, scaler, parameters, config.grad_clip)
        window.append(float(loss.detach()))
        step += 1
        if step % log_every == 0 or step == total:
            losses.append(float(np.mean(window)))
            elapsed = time.perf_counter() - started
            rate = (step - start) * config.batch_size / max(elapsed, 1e-9)  # global batch: all ranks together
            if context.is_main:
                log.info("phase 1 step %d/%d loss %.4f lr %.2e %.1f img/s", step, total, losses[-1], lr, rate)
            if tracker and context.is_main:
                tracker.log_metrics({"phase1/loss": losses[-1], "phase1/lr": lr, "phase1/images_per_s": rate}, step)
            window = []
        if config.eval_every and validator and context.is_main and step % config.eval_every == 0 and step < total:
            _validate(validator, model, tracker, "phase1", step)
            if config.batch_norm == "frozen":
                freeze_batch_norm(model)
        if (step % config.checkpoint_every == 0 or step == total) and context.is_main:
            _save_phase(checkpoint_path, model, optimizer, scaler, step, losses)
        over_time = bool(config.max_minutes) and (time.perf_counter() - started) / 60.0 > (config.max_minutes or 0)
        if batches is not None and step >= total:
            break
        if config.max_minutes and any_rank(over_time, device) and step < total:
            log.warning("phase 1: stopped at step %d of %d: past max_minutes=%s", step, total, config.max_minutes)
            if context.is_main:
                _save_phase(checkpoint_path, model, optimizer, scaler, step, losses)
            stopped_early = True
            break
    result = PhaseResult("phase1", step, time.perf_counter() - started, losses, stopped_early=stopped_early)
    if validator and context.is_main:
        result.validation = _validate(validator, model, tracker, "phase1", step)
    return result


def _with_adversarial(
    model: HybridDeepfakeDetector,
    images: torch.Tensor,
    labels: torch.Tensor,
    count: int,
    config: TrainingConfig,
    step: int,
    rank: int = 0,
    world_size: int = 1,
    amp: bool = False,
    dtype: torch.dtype = torch.float16,
) -> torch.Tensor:
    """Replace `count` random samples of the global batch by PGD versions of themselves (labels unchanged).

    `images` are this process's rows of the global batch (rank `rank` of `world_size` holds rows
    [rank * n, (rank + 1) * n)). The samples and their random starts are drawn for the global batch from the
    step's seed, exactly as one process draws them, and the attack runs in eval mode (no batch statistics), so
    the ranks together attack the same samples from the same starts as one process does.
    """
    share = len(images)
    offset = rank * share
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    chosen = torch.randperm(share * world_size, generator=generator)[:count]
    noise = torch.rand((count, *images.shape[1:]), generator=generator)
    mine = (chosen >= offset) & (chosen < offset + share)
    if not bool(mine.any()):
        return images
    local = (chosen[mine] - offset).to(images.device)
    originals = images[local]
    start = (originals + (noise[mine].to(images.device) * 2 - 1) * config.pgd_epsilon).clamp(0.0, 1.0)
    adversarial = pgd_attack(
        model,
        _attack_forward(model, amp, dtype, images.device),
        originals,
        labels[local],
        lambda logits, targets: focal_loss(logits, targets, config.focal_gamma),
        epsilon=config.pgd_epsilon,
        steps=config.pgd_steps,
        step_size=config.effective_pgd_step_size,
        start=start,
    )
    images = images.clone()
    images[local] = adversarial
    return images


def _attack_forward(
    model: HybridDeepfakeDetector, amp: bool, dtype: torch.dtype, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The attack's forward: the CNN branch, under the same autocast as the training step."""
    if not amp:
        return model.frame_only

    def forward(images: torch.Tensor) -> torch.Tensor:
        with autocast(True, device, dtype):
            return model.frame_only(images).float()

    return forward


def optimiser_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    parameters: Sequence[nn.Parameter],
    grad_clip: float,
) -> None:
    """One update of every phase: clear, backward (scaled for float16), unscale, clip the norm, step.

    With a disabled scaler (float32, bfloat16) scaling and unscaling are no-ops and `scaler.step` is
    `optimizer.step`, so the float32 phases take this same path bit for bit.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(parameters, grad_clip)
    scaler.step(optimizer)
    scaler.update()


def _resume_phase(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> tuple[int, list[float]]:
    """(step, losses) of a phase checkpoint loaded into model, optimiser, scaler and torch's RNG; (0, []) if none.

    Under torchrun rank 0 alone writes checkpoints, so rank 0 alone reads one and hands it to the others: after
    torchrun restarts a job whose rank died, every rank resumes at rank 0's step with rank 0's weights and
    optimiser state, even when the run folder is not on a volume the ranks share (a multi-node job).
    """
    context = current()
    state = load_checkpoint(path) if context.is_main and path.is_file() else None
    if context.enabled:
        state = _broadcast(state)
    if state is None:
        return 0, []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], list(state["losses"])


def _save_phase(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    step: int,
    losses: list[float],
) -> None:
    save_checkpoint(
        path,
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scaler=scaler.state_dict(),
        step=step,
        losses=losses,
        torch_rng=torch.get_rng_state(),
    )


def _validate(
    validator: Validator, model: HybridDeepfakeDetector, tracker: Tracker | None, phase: str, step: int
) -> dict[str, float | None]:
    metrics = validator(model)
    model.train()
    log.info("%s step %d validation: %s", phase, step, {k: v for k, v in metrics.items() if v is not None})
    if tracker:
        tracker.log_metrics({f"{phase}/val_{k}": v for k, v in metrics.items()}, step)
    return metrics


# --- phase 2 ---------------------------------------------------------------------------------------------
# Under torchrun every rank trains phase 2 on its share of each global batch (RankBatches), like phase 1, and
# rank 0 alone writes checkpoints and logs; the frozen-CNN features are computed by all ranks, a share each.


def make_training_clips(
    items: Sequence[ClipItem],
    synthesizer: FaceSynthesizer,
    config: TrainingConfig,
    seed: int,
    indices: Sequence[int] | None = None,
) -> Iterator[tuple[np.ndarray, int]]:
    """Clips for phase 2 (of `indices`, default all), each from its own seed (seed, index): the same on every run."""
    for index in range(len(items)) if indices is None else indices:
        rng = np.random.default_rng((seed, 2, index))
        yield make_clip(items[index], synthesizer, config.sequence_length, rng, config), items[index].label


def cache_clip_features(
    model: HybridDeepfakeDetector,
    items: Sequence[ClipItem],
    synthesizer: FaceSynthesizer,
    config: TrainingConfig,
    path: Path,
    batch_clips: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen-CNN features [N, T, 2048] (float16 on disk) and labels of the phase-2 clips; reused on resume.

    Under torchrun rank r computes clips r, r + W, ... and the ranks gather them: each clip's features are
    the same whichever rank computes them (eval mode, per-clip seeds). Rank 0 reads and writes the file and
    hands it to the others, so the path need not be on a shared volume.
    """
    path = Path(path)
    context = current()
    cached = _read_features(path, len(items)) if context.is_main else None
    if context.enabled:
        cached = _broadcast(cached)
    if cached is not None:
        return cached
    device = select_device(config)
    model.to(device).eval()
    started = time.perf_counter()
    mine = list(range(context.rank, len(items), context.world_size))
    features = _clip_features(model, make_training_clips(items, synthesizer, config, config.seed, mine), config,
                              device, batch_clips)  # fmt: skip
    if context.enabled:
        import torch.distributed as dist

        shares: list[np.ndarray | None] = [None] * context.world_size
        dist.all_gather_object(shares, features)
        stacked = np.empty((len(items), *features.shape[1:]), dtype=np.float16)
        for rank, share in enumerate(shares):
            stacked[rank :: context.world_size] = share
    else:
        stacked = features
    label_array = np.array([item.label for item in items], dtype=np.int64)
    if context.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.stem + ".tmp.npz")
        np.savez(temporary, features=stacked, labels=label_array)
        temporary.replace(path)
        log.info("phase 2: features of %d clips in %.1f s", len(items), time.perf_counter() - started)
    return stacked.astype(np.float32), label_array


def _read_features(path: Path, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached features of `count` clips, or None when the file is missing or holds another clip set."""
    if not path.is_file():
        return None
    with np.load(path) as archive:
        if len(archive["labels"]) != count:
            return None
        return archive["features"].astype(np.float32), archive["labels"]


def _broadcast(value: T) -> T:
    """Rank 0's `value` on every rank."""
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def _clip_features(
    model: HybridDeepfakeDetector,
    clips: Iterable[tuple[np.ndarray, int]],
    config: TrainingConfig,
    device: torch.device,
    batch_clips: int,
) -> np.ndarray:
    """Pooled CNN features [N, T, 2048] (float16) of `clips`, `batch_clips` at a time."""
    features: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        faces = to_tensor(np.stack(batch)).to(device)
        with torch.inference_mode(), autocast(uses_amp(config, device), device, amp_dtype(config, device)):
            features.append(model.forward_features(faces).float().cpu().numpy().astype(np.float16))
        batch.clear()

    for clip, _label in clips:
        batch.append(clip)
        if len(batch) == batch_clips:
            flush()
    if batch:
        flush()
    width = model.temporal.input_size
    return np.concatenate(features) if features else np.empty((0, config.sequence_length, width), np.float16)


def _phase2_batches(size: int, batch_size: int, seed: int, start: int, total: int) -> Iterable[list]:
    """This process's share of each phase-2 global batch (the whole batch for one process)."""
    batches: Sampler[list] = EpochBatchSampler(size, batch_size, seed, start, total)
    context = current()
    if context.enabled:
        batches = RankBatches(batches, batch_size, context.rank, context.world_size)
    return batches


def train_sequences_frozen(
    model: HybridDeepfakeDetector,
    features: np.ndarray,
    labels: np.ndarray,
    config: TrainingConfig,
    run_dir: Path,
    tracker: Tracker | None = None,
    resume: bool = True,
    steps: int | None = None,
    log_every: int = 20,
) -> PhaseResult:
    """Phase 2 over cached frozen-CNN features: only the BiLSTM and its head learn."""
    device = select_device(config)
    context = current()
    total = config.phase2_steps if steps is None else steps
    checkpoint_path = Path(run_dir) / "checkpoints" / "phase2.pt"
    model.to(device).train()
    parameters = temporal_parameters(model)
    optimizer = torch.optim.AdamW(parameters, lr=config.phase2_learning_rate, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    start, losses = _resume_phase(checkpoint_path, model, optimizer, scaler) if resume else (0, [])
    features_t = torch.from_numpy(features)
    labels_t = torch.from_numpy(labels)
    batch_size = min(config.phase2_batch_size, len(labels))
    batches = _phase2_batches(len(labels), batch_size, config.seed + 2, start, total)
    cnn = cnn_parameters(model)
    trainable = [p.requires_grad for p in cnn]
    for parameter in cnn:
        parameter.requires_grad_(False)  # the CNN is frozen: not one of the parameters ranks synchronise
    forward = _data_parallel(SequencePhase(model), device) if context.enabled else model.sequence_from_features
    started = time.perf_counter()
    window: list[float] = []
    step = start
    try:
        for batch in batches:
            index = torch.tensor([i for _, i, _ in batch])
            lr = learning_rate_at(step, total, config.phase2_learning_rate, min(config.warmup_steps, total // 10))
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = forward(features_t[index].to(device))
            loss = focal_loss(logits, labels_t[index].to(device), config.focal_gamma)
            optimiser_step(loss, optimizer, scaler, parameters, config.grad_clip)
            window.append(float(loss.detach()))
            step += 1
            losses, window = _phase2_step_done(
                "phase2", step, total, log_every, losses, window, tracker, {"phase2/lr": lr}
            )
            if (step % config.checkpoint_every == 0 or step == total) and context.is_main:
                _save_phase(checkpoint_path, model, optimizer, scaler, step, losses)
    finally:
        for parameter, required in zip(cnn, trainable, strict=True):
            parameter.requires_grad_(required)
    log.info("phase 2: %d steps in %.1f s, loss %s", step - start, time.perf_counter() - started, losses[-1:] or "-")
    return PhaseResult("phase2", step, time.perf_counter() - started, losses)


def _phase2_step_done(
    phase: str,
    step: int,
    total: int,
    log_every: int,
    losses: list[float],
    window: list[float],
    tracker: Tracker | None,
    extra: dict[str, float],
) -> tuple[list[float], list[float]]:
    """(losses, window) after a step: every `log_every` steps the window's mean joins the losses and is logged."""
    if step % log_every and step != total:
        return losses, window
    losses = [*losses, float(np.mean(window))]
    if tracker and current().is_main:
        tracker.log_metrics({f"{phase}/loss": losses[-1], **extra}, step)
    return losses, []


def train_sequences_end_to_end(
    model: HybridDeepfakeDetector,
    items: Sequence[ClipItem],
    synthesizer: FaceSynthesizer,
    config: TrainingConfig,
    run_dir: Path,
    tracker: Tracker | None = None,
    resume: bool = True,
    steps: int | None = None,
    log_every: int = 10,
) -> PhaseResult:
    """Phase 2 with the CNN fine-tuned too, at a tenth of the rate: loss = focal(sequence) + focal(frames).

    The CNN's batch-norm statistics stay frozen (eval mode) while its weights learn: a phase-2 batch is a
    few clips of 30 near-identical frames of a few people, whose statistics would overwrite the ones
    phase 1 gathered over thousands of independent faces (measured: with them in train mode the held-out
    frame AUC fell from 0.765 after phase 1 to 0.71 after 60 steps). Frozen statistics also make each
    rank's share of a batch compute what one process computes for it.
    """
    device = select_device(config)
    context = current()
    total = config.phase2_steps if steps is None else steps
    checkpoint_path = Path(run_dir) / "checkpoints" / "phase2.pt"
    model.to(device).train()
    freeze_batch_norm(model.backbone)
    parameters = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": cnn_parameters(model), "lr": config.phase2_learning_rate * 0.1},
            {"params": temporal_parameters(model), "lr": config.phase2_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    amp = uses_amp(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=uses_grad_scaler(config, device))
    start, losses = _resume_phase(checkpoint_path, model, optimizer, scaler) if resume else (0, [])
    batch_size = min(config.phase2_batch_size, len(items))
    batches = _phase2_batches(len(items), batch_size, config.seed + 2, start, total)
    forward = _data_parallel(model, device) if context.enabled else model
    started = time.perf_counter()
    window: list[float] = []
    step = start
    for batch in batches:
        clips, clip_labels = [], []
        for epoch, index, _ in batch:
            rng = np.random.default_rng((config.seed, 3, epoch, index))
            clips.append(make_clip(items[index], synthesizer, config.sequence_length, rng, config))
            clip_labels.append(items[index].label)
        faces = to_tensor(np.stack(clips)).to(device)
        labels = torch.tensor(clip_labels, device=device)
        scale = learning_rate_at(step, total, 1.0, min(config.warmup_steps, total // 10))
        for group, base in zip(optimizer.param_groups, (0.1, 1.0), strict=True):
            group["lr"] = config.phase2_learning_rate * base * scale
        with autocast(amp, device, amp_dtype(config, device)):
            outputs = forward(faces)
        frame_labels = labels[:, None].expand(-1, faces.shape[1]).reshape(-1)
        loss = focal_loss(outputs["sequence_logits"], labels, config.focal_gamma) + focal_loss(
            outputs["frame_logits"].reshape(-1, 2), frame_labels, config.focal_gamma
        )
        optimiser_step(loss, optimizer, scaler, parameters, config.grad_clip)
        window.append(float(loss.detach()))
        step += 1
        losses, window = _phase2_step_done("phase2", step, total, log_every, losses, window, tracker, {})
        if (step % config.checkpoint_every == 0 or step == total) and context.is_main:
            _save_phase(checkpoint_path, model, optimizer, scaler, step, losses)
    return PhaseResult("phase2", step, time.perf_counter() - started, losses)
