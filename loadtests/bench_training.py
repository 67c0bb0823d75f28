"""Phase-1 training cost on this machine: seconds per step of the full detector by input size and batch,
and the cost of making samples (SBI, swap, augmentation). Prints a table; asserts nothing.

  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \
    .venv/bin/python loadtests/bench_training.py --sizes 64 96 112 128 --batch 24
  .venv/bin/python loadtests/bench_training.py --faces --workers 1 2   # face extraction, videos/s per core
  .venv/bin/python loadtests/bench_training.py --stream                # streamed samples/s from tar shards
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from deepfake_training.config import TrainingConfig
from deepfake_training.learning.losses import focal_loss
from deepfake_training.learning.runtime import malloc_tuning_missing
from deepfake_training.learning.trainer import build_model, cnn_parameters


def step_seconds(size: int, batch: int, steps: int, pgd_fraction: float) -> float:
    torch.manual_seed(0)
    config = TrainingConfig(input_size=size, batch_size=batch, pgd_fraction=pgd_fraction, pgd_steps=1)
    model = build_model(config).train()
    optimizer = torch.optim.AdamW(cnn_parameters(model), lr=1e-3, weight_decay=0.01)
    images = torch.rand(batch, 3, size, size)
    labels = torch.randint(0, 2, (batch,))
    times = []
    for step in range(steps + 1):
        started = time.perf_counter()
        if pgd_fraction:
            from deepfake_training.learning.trainer import _with_adversarial

            images = _with_adversarial(model, images, labels, max(1, round(pgd_fraction * batch)), config, step)
        loss = focal_loss(model.frame_only(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step allocates everything
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def synthesis_ms(size: int, count: int = 50) -> dict[str, float]:
    from deepfake_training.data.augment import augment
    from deepfake_training.synthesis.sbi import random_self_blend
    from deepfake_training.synthesis.swap import random_face_swap

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    # A plausible face layout: a 68-point template scaled into the crop.
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    landmarks = np.stack([size / 2 + size * 0.3 * np.cos(angles), size / 2 + size * 0.35 * np.sin(angles)], -1)
    landmarks[[0, 16]] = [[size * 0.2, size * 0.5], [size * 0.8, size * 0.5]]
    results = {}
    for name, make in (
        ("sbi", lambda: random_self_blend(image, landmarks, rng)),
        ("swap", lambda: random_face_swap(image, landmarks, image, landmarks, rng)),
        ("augment", lambda: augment(image, rng, TrainingConfig())),
    ):
        started = time.perf_counter()
        for _ in range(count):
            make()
        results[name] = (time.perf_counter() - started) / count * 1000
    return results


def face_extraction(media_dir: Path, workers: int, sampling: str, size: int) -> tuple[int, float]:
    """(videos, seconds) to cache the offline videos' faces as one shard with `workers` processes."""
    from deepfake_core.settings import CoreSettings
    from deepfake_training.data.face_cache import FaceCache
    from deepfake_training.data.face_shards import build_shard
    from deepfake_training.datasets import local_media_records

    records = [r for r in local_media_records(media_dir) if r.path.suffix in (".mp4", ".mov")]
    with tempfile.TemporaryDirectory() as root:
        cache = FaceCache(Path(root), size, CoreSettings().face_margin)
        started = time.perf_counter()
        report = build_shard(cache, records, CoreSettings(), sampling, (0, 1), workers=workers, progress=False)
        seconds = time.perf_counter() - started
    if report.failed:
        print(f"  failed: {report.failed}")
    return len(records), seconds


def stream_rate(size: int, faces: int = 2000, batch: int = 32) -> tuple[float, float]:
    """(samples/s written, samples/s streamed with SBI pairs and augmentation) for `faces` random crops."""
    from deepfake_training.data.streaming import FaceShardStream, ShardWriter, shard_paths
    from torch.utils.data import DataLoader

    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    landmarks = np.stack([size / 2 + size * 0.3 * np.cos(angles), size / 2 + size * 0.35 * np.sin(angles)], -1)
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        writer = ShardWriter(Path(root), samples_per_shard=500, image_format="jpg")
        for family in range(faces // 20):
            meta = {"family": f"f{family}", "label": 0}
            writer.add_family([(crop, landmarks, {**meta, "frame": k}) for k in range(20)])
        writer.close()
        written = faces / (time.perf_counter() - started)
        stream = FaceShardStream(shard_paths(Path(root)), TrainingConfig(input_size=size), seed=0, shuffle_buffer=256)
        started, count = time.perf_counter(), 0
        for images, *_ in DataLoader(stream, batch_size=batch):
            count += len(images)
        return written, count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 112, 128])
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--pgd-fraction", type=float, default=0.0)
    parser.add_argument("--faces", action="store_true", help="face extraction (cache) videos/s per core")
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--sampling", default="uniform:32")
    parser.add_argument("--media-dir", type=Path, default=Path(".cache/media"))
    parser.add_argument("--stream", action="store_true", help="tar shard write/stream samples/s")
    args = parser.parse_args()
    if args.faces:
        print("| workers | videos | s | videos/s | videos/s per worker |")
        print("|---|---|---|---|---|")
        for workers in args.workers:
            videos, seconds = face_extraction(args.media_dir, workers, args.sampling, args.sizes[0])
            print(
                f"| {workers} | {videos} | {seconds:.1f} | {videos / seconds:.2f} | {videos / seconds / workers:.2f} |"
            )
        return
    if args.stream:
        print("| input | written samples/s | streamed samples/s (pairs, SBI, augmentation) |")
        print("|---|---|---|")
        for size in args.sizes:
            written, streamed = stream_rate(size)
            print(f"| {size} | {written:.0f} | {streamed:.0f} |")
        return
    missing = malloc_tuning_missing()
    print(f"torch threads {torch.get_num_threads()}; malloc tuning {'off: ' + ', '.join(missing) if missing else 'on'}")
    print("| input | batch | s/step | images/s | SBI ms | swap ms | augment ms |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        seconds = step_seconds(size, args.batch, args.steps, args.pgd_fraction)
        costs = synthesis_ms(size)
        print(f"| {size} | {args.batch} | {seconds:.2f} | {args.batch / seconds:.1f} | {costs['sbi']:.1f} | "
              f"{costs['swap']:.1f} | {costs['augment']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
