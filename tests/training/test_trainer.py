"""The training loop's shared pieces: one PGD helper for one process and for each rank's rows, one checkpoint
resume for every phase (a resumed phase ends on the weights of an uninterrupted one)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from deepfake_training.config import TrainingConfig
from deepfake_training.learning import trainer
from deepfake_training.learning.trainer import _with_adversarial, build_model, train_sequences_frozen

CONFIG = TrainingConfig(input_size=64, batch_size=8, pgd_steps=2, pgd_epsilon=0.05, dropout=0.0, lstm_hidden=8,
                        sequence_length=4, phase2_steps=4, phase2_batch_size=4, warmup_steps=1,
                        checkpoint_every=2)  # fmt: skip


def test_ranks_attack_exactly_the_rows_one_process_attacks() -> None:
    torch.manual_seed(0)
    model = build_model(CONFIG)
    images = torch.rand((8, 3, 64, 64), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1] * 4)
    whole = _with_adversarial(model, images, labels, 3, CONFIG, step=5)
    shares = [_with_adversarial(model, images[4 * r : 4 * r + 4], labels[4 * r : 4 * r + 4], 3, CONFIG, step=5,
                                rank=r, world_size=2) for r in (0, 1)]  # fmt: skip
    attacked = {int(k) for k in torch.nonzero((whole != images).flatten(1).any(1)).flatten()}
    assert len(attacked) == 3, "three samples of the global batch are attacked"
    together = torch.cat(shares)
    assert {int(k) for k in torch.nonzero((together != images).flatten(1).any(1)).flatten()} == attacked
    assert float((together - whole).abs().max()) < 1e-5
    assert float((whole - images).abs().max()) <= CONFIG.pgd_epsilon + 1e-6
    # Another step draws other samples or starts: the draw follows the step's seed.
    assert not torch.equal(_with_adversarial(model, images, labels, 3, CONFIG, step=6), whole)


def test_a_resumed_phase2_ends_on_the_weights_of_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    features = np.random.default_rng(0).standard_normal((8, 4, 2048)).astype(np.float32)
    labels = np.array([0, 1] * 4, dtype=np.int64)
    saved = trainer._save_phase

    def keep_step_two(path: Path, model: torch.nn.Module, *args: object, **kwargs: object) -> None:
        saved(path, model, *args, **kwargs)  # type: ignore[arg-type]
        if args[2] == 2:  # (optimizer, scaler, step, losses)
            shutil.copy2(path, tmp_path / "step2.pt")

    monkeypatch.setattr(trainer, "_save_phase", keep_step_two)
    torch.manual_seed(3)
    whole = build_model(CONFIG)
    start = {k: v.clone() for k, v in whole.state_dict().items()}
    first = train_sequences_frozen(whole, features, labels, CONFIG, tmp_path / "whole", resume=False, log_every=1)
    assert (tmp_path / "step2.pt").is_file()
    interrupted = tmp_path / "interrupted" / "checkpoints"
    interrupted.mkdir(parents=True)
    shutil.copy2(tmp_path / "step2.pt", interrupted / "phase2.pt")
    torch.manual_seed(99)  # other initial weights: only the checkpoint can bring it onto the same path
    resumed_model = build_model(CONFIG)
    resumed = train_sequences_frozen(resumed_model, features, labels, CONFIG, interrupted.parent, log_every=1)
    assert resumed.steps == first.steps == 4 and resumed.losses == first.losses
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[name]), name
    assert any(not torch.equal(value, start[name]) for name, value in whole.state_dict().items())
    assert all(p.requires_grad for p in whole.parameters()), "the frozen phase gives the CNN its gradients back"


def test_the_adversarial_step_runs_under_the_training_steps_autocast() -> None:
    """bf16 autocast covers PGD's forward passes too (on CPU with cpu_autocast, as on a GPU): the backbone computes
    in bfloat16 during the attack, and in float32 when autocast is off."""
    torch.manual_seed(0)
    model = build_model(CONFIG).train()
    seen: list[torch.dtype] = []
    handle = model.backbone.register_forward_hook(lambda _module, _inputs, output: seen.append(output.dtype))
    images, labels = torch.rand(8, 3, 64, 64), torch.tensor([0, 1] * 4)
    config = CONFIG.with_overrides({"pgd_steps": 1})
    try:
        attacked = _with_adversarial(model, images, labels, 2, config, 0, amp=True, dtype=torch.bfloat16)
        assert seen and set(seen) == {torch.bfloat16} and attacked.dtype == torch.float32
        seen.clear()
        _with_adversarial(model, images, labels, 2, config, 0)
        assert seen and set(seen) == {torch.float32}
    finally:
        handle.remove()


def test_batch_norm_and_memory_layout_are_what_the_recipe_says() -> None:
    """`batch_norm=frozen` keeps every batch-norm layer on its running statistics, `batch` trains them, `sync`
    without a process group (one process) leaves plain batch norm; `channels_last` lays the weights out NHWC."""
    for choice, training in (("batch", True), ("frozen", False), ("sync", True)):
        model = build_model(CONFIG.with_overrides({"batch_norm": choice})).train()
        trainer._prepare_phase1_model(model, CONFIG.with_overrides({"batch_norm": choice}))
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms and all(m.training == training for m in norms), choice
        assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    model = build_model(CONFIG)
    trainer._prepare_phase1_model(model, CONFIG.with_overrides({"channels_last": True}))
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert not model.backbone.conv1.weight.is_contiguous()  # NHWC, not the default NCHW


def test_speed_mode_turns_on_cudnn_autotuning_and_tf32_and_the_default_leaves_them_off() -> None:
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())  # fmt: skip
    try:
        torch.backends.cudnn.benchmark = False
        trainer.configure_speed(CONFIG)
        assert torch.backends.cudnn.benchmark is False  # the deterministic default changes nothing
        trainer.configure_speed(CONFIG.with_overrides({"speed_mode": True}))
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = before[0], before[1]
        torch.backends.cudnn.allow_tf32 = before[2]
        torch.use_deterministic_algorithms(before[3], warn_only=before[4])
