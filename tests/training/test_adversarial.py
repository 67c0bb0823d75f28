"""PGD: perturbations stay within epsilon and the valid pixel range, and raise the loss."""

from __future__ import annotations

import numpy as np
import torch
from deepfake_training.config import TrainingConfig
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import to_tensor
from deepfake_training.learning.adversarial import pgd_attack
from deepfake_training.learning.losses import focal_loss
from deepfake_training.learning.trainer import build_model


def test_pgd_stays_within_epsilon_and_raises_the_loss(tiny_cache: FaceCache) -> None:
    torch.manual_seed(0)
    model = build_model(TrainingConfig(input_size=64)).eval()
    faces = tiny_cache.load("local-cap12_edit").main_track().crops[:6]
    images = to_tensor(faces)
    with torch.no_grad():
        labels = model.frame_only(images).argmax(dim=1)  # the model's own answers: a low loss to start from

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, targets, gamma=2.0)

    epsilon = 0.05
    adversarial = pgd_attack(
        model, model.frame_only, images, labels, loss_fn, epsilon=epsilon, steps=3, step_size=0.02,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    perturbation = (adversarial - images).abs()
    assert float(perturbation.max()) <= epsilon + 1e-6
    assert float(perturbation.max()) > epsilon / 2, "the attack did not move the pixels"
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    # As large a change, but random: PGD must do better than noise at the same L-inf radius.
    noise = torch.randint(0, 2, images.shape, generator=torch.Generator().manual_seed(2)).float() * 2 - 1
    noisy = (images + epsilon * noise).clamp(0.0, 1.0)
    with torch.no_grad():
        before = float(loss_fn(model.frame_only(images), labels))
        after = float(loss_fn(model.frame_only(adversarial), labels))
        random = float(loss_fn(model.frame_only(noisy), labels))
    assert after > before and after - before > 3 * abs(random - before), (before, after, random)
    assert not model.training, "the attack must leave the model's mode as it found it"


def test_focal_loss_equals_cross_entropy_at_gamma_zero_and_down_weights_easy_samples() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.0, 0.0], [-3.0, 3.0]])
    targets = torch.tensor([0, 1, 1])
    cross_entropy = torch.nn.functional.cross_entropy(logits, targets)
    assert torch.allclose(focal_loss(logits, targets, gamma=0.0), cross_entropy)
    per_sample = focal_loss(logits, targets, gamma=2.0, reduction="none")
    p_true = torch.softmax(logits, -1)[torch.arange(3), targets]
    assert torch.allclose(per_sample, -((1 - p_true) ** 2) * torch.log(p_true))
    assert np.argmin(per_sample.numpy()) == 2  # the most confident correct sample counts least
