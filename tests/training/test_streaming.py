"""Streaming face shards: pairs stay together, ranks and workers split the shards, memory stays flat as the data
grows tenfold, and phase 1 trains from the stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from deepfake_training.config import TrainingConfig
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import KINDS, load_tracks
from deepfake_training.data.streaming import (
    FaceShardStream,
    ShardWriter,
    mix_in_fakes,
    read_shard,
    shard_paths,
    stream_batches,
    upload_shards,
    write_face_shards,
)
from deepfake_training.datasets import FAKE, REAL
from deepfake_training.learning.distributed import DistributedContext
from deepfake_training.learning.trainer import build_model, train_frames
from torch.utils.data import DataLoader

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def faces(tiny_cache: FaceCache) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real aligned faces (crop, landmarks) of the session cache, upscaled to 128 px to weigh like real crops."""
    records = [e.record for e in tiny_cache.entries().values()]
    tracks = load_tracks(tiny_cache, tiny_cache.ready(records))
    return [(cv2.resize(t.crops[k], (128, 128)), t.landmarks[k] * 2.0) for t in tracks for k in range(len(t))]


def write_families(directory: Path, faces: list[tuple[np.ndarray, np.ndarray]], families: int, frames: int) -> Path:
    """`families` pairs of videos (a real one and a fake made from it) of `frames` faces each."""
    writer = ShardWriter(directory, samples_per_shard=120, image_format="png")
    for family in range(families):
        samples = []
        for label, video in ((REAL, f"real{family}"), (FAKE, f"fake{family}")):
            for frame in range(frames):
                crop, landmarks = faces[(family * frames + frame + label * 7) % len(faces)]
                meta = {"video": video, "frame": frame, "family": f"real{family}", "label": label}
                samples.append((crop, landmarks, meta))
        writer.add_family(samples)
    writer.close()
    return directory


def test_cache_to_shards_keeps_families_whole_and_batches_keep_pairs(tiny_cache: FaceCache, tmp_path: Path) -> None:
    records = [e.record for e in tiny_cache.entries().values() if e.record.split == "train"]
    index = write_face_shards(tiny_cache, records, tmp_path, samples_per_shard=50, max_frames_per_video=20)
    shards = shard_paths(tmp_path)
    assert len(shards) >= 2 and json.loads(index.read_text())["face_size"] == tiny_cache.face_size
    seen_families: dict[str, int] = {}
    for number, shard in enumerate(shards):
        for sample in read_shard(str(shard)):
            assert seen_families.setdefault(sample.family, number) == number  # a family never spans shards
            assert sample.crop.shape == (64, 64, 3) and sample.landmarks.shape == (68, 2)
    config = TrainingConfig(input_size=64, batch_size=8)
    stream = FaceShardStream(shards, config, seed=1, shuffle_buffer=16)
    reals = sum(1 for shard in shards for s in read_shard(str(shard)) if s.label == REAL)
    # spawned workers, as stream_batches starts them: a fork of this process would inherit the suite's threads
    # and open connections (a forked worker hung in kombu's after-fork hook in a full run)
    batches = list(DataLoader(stream, batch_size=4, num_workers=2, multiprocessing_context="spawn"))
    labels = torch.cat([b[1] for b in batches])
    kinds = torch.cat([b[2] for b in batches])
    assert len(labels) == 2 * reals  # every real face once per epoch, each followed by its fake
    assert labels[0::2].eq(REAL).all() and labels[1::2].eq(FAKE).all()
    assert set(kinds[1::2].tolist()) <= {KINDS.index("sbi"), KINDS.index("fake")}


def test_ranks_and_workers_read_disjoint_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FaceShardStream([f"s{k}.tar" for k in range(7)], TrainingConfig(input_size=64), seed=2)
    mine = []
    for rank in (0, 1, 2):
        monkeypatch.setattr("deepfake_training.data.streaming.current", lambda rank=rank: DistributedContext(rank, 3))
        mine.append(stream.my_shards())
    assert sorted(s for part in mine for s in part) == sorted(stream.shards)
    stream.set_epoch(1)
    assert stream.my_shards() != mine[2] or len(mine[2]) <= 1  # each epoch reshuffles which rank reads what


def test_loader_memory_stays_flat_as_the_data_grows_tenfold(faces, tmp_path: Path) -> None:
    growth = {}
    for families in (8, 80):  # 480 and 4,800 faces of 128 px: 24 MB and 236 MB decoded
        directory = write_families(tmp_path / f"f{families}", faces, families, frames=30)
        environment = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("stream_rss.py")), str(directory)],
                              env=environment, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["samples"] == 2 * families * 30  # every real once, each with its fake
        growth[families] = result["growth_mb"]
    print(f"loader RSS growth over one epoch: {growth[8]:.1f} MB (480 faces), {growth[80]:.1f} MB (4,800 faces)")
    assert growth[80] < 50 and growth[80] - growth[8] < 50  # holding the split would add ~200 MB


def test_phase_one_trains_from_the_stream(tiny_cache: FaceCache, tmp_path: Path) -> None:
    records = [e.record for e in tiny_cache.entries().values() if e.record.split == "train"]
    write_face_shards(tiny_cache, records, tmp_path / "shards", samples_per_shard=40, max_frames_per_video=8)
    config = TrainingConfig(input_size=64, batch_size=4, phase1_steps=2, warmup_steps=1, pgd_steps=1)
    stream = FaceShardStream(shard_paths(tmp_path / "shards"), config, seed=config.seed, shuffle_buffer=8)
    model = build_model(config)
    before = model.frame_head.weight.detach().clone()
    result = train_frames(model, None, config, tmp_path / "run", resume=False, log_every=1,  # type: ignore[arg-type]
                          batches=stream_batches(stream, config.batch_size, config.phase1_steps))  # fmt: skip
    assert result.steps == 2 and len(result.losses) == 2 and all(np.isfinite(result.losses))
    assert not torch.equal(model.frame_head.weight, before)
    assert (tmp_path / "run" / "checkpoints" / "phase1.pt").is_file()


@pytest.fixture(scope="module")
def streamed_run(ffpp_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(run folder, shards folder): `train --shards` on the miniature FF++ tree (Deepfakes), cache and shards made
    by the CLI; the cache stays configured (DEEPFAKE_TRAIN_CACHE_ROOT) for the module's tests."""
    from deepfake_training.cli import main

    root = tmp_path_factory.mktemp("streamed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPFAKE_TRAIN_CACHE_ROOT", str(root / "cache"))
        patch.setenv("DEEPFAKE_TRAIN_CACHE_WORKERS", "1")
        dataset = ["--dataset", f"ffpp={ffpp_root}", "--dataset-option", "ffpp.manipulations=[Deepfakes]"]
        assert main(["cache", *dataset, "--size", "64", "--sampling", "uniform:4", "--workers", "1"]) == 0
        assert main(["shards", *dataset, "--size", "64", "--out", str(root / "shards"), "--format", "jpg"]) == 0
        toy = ["input_size=64", "batch_size=4", "phase1_steps=3", "warmup_steps=1", "phase2_steps=2", "pgd_steps=1",
               "phase2_sequences=4", "phase2_batch_size=2", "sequence_length=4", "eval_frames_per_video=4"]  # fmt: skip
        arguments = ["train", *dataset, "--out", str(root / "run"), "--shards", str(root / "shards"),
                     "--max-train-frames", "4", "--train-sampling", "uniform:4", "--precisions", "fp32", "--no-mlflow",
                     *[a for value in toy for a in ("--set", value)]]  # fmt: skip
        assert main(arguments) == 0
        yield root / "run", root / "shards"


def test_train_streams_phase_one_from_shards_written_by_the_cli(streamed_run: tuple[Path, Path]) -> None:
    out, shards = streamed_run
    index = json.loads((shards / "shards.json").read_text())
    assert index["splits"] == ["train"] and sum(s["samples"] for s in index["shards"]) > 0
    checkpoint = torch.load(out / "checkpoints" / "phase1.pt", weights_only=False)
    assert checkpoint["step"] == 3 and (out / "exports" / "model.fp32.onnx").is_file()


def test_new_fakes_replace_a_share_of_each_streamed_batch_and_only_fakes(tiny_cache: FaceCache, tmp_path: Path) -> None:
    records = [e.record for e in tiny_cache.entries().values() if e.record.split == "train"]
    write_face_shards(tiny_cache, records, tmp_path, samples_per_shard=40, max_frames_per_video=8)
    config = TrainingConfig(input_size=64, batch_size=8)

    def batches() -> Iterator[tuple[torch.Tensor, ...]]:
        return stream_batches(FaceShardStream(shard_paths(tmp_path), config, seed=3, shuffle_buffer=8), 8, 3)

    plain = list(batches())
    new_fakes = load_tracks(tiny_cache, tiny_cache.ready(records)[:1])
    counter: dict[str, int] = {}
    mixed = list(mix_in_fakes(batches(), new_fakes, 0.25, config, seed=5, counter=counter))
    assert len(mixed) == len(plain) == 3 and counter == {"replaced": 6}
    for (images, labels, kinds, regions), (new_images, new_labels, new_kinds, new_regions) in zip(
        plain, mixed, strict=True
    ):
        changed = [row for row in range(8) if not torch.equal(images[row], new_images[row])]
        assert len(changed) == 2 and all(int(labels[row]) == FAKE for row in changed)  # a quarter, fakes only
        assert torch.equal(new_labels, labels)  # the real/fake balance stays as trained
        assert all(int(new_kinds[row]) == KINDS.index("fake") and not new_regions[row].any() for row in changed)
        unchanged = [row for row in range(8) if row not in changed]
        assert torch.equal(new_kinds[unchanged], kinds[unchanged]) and torch.equal(
            new_regions[unchanged], regions[unchanged]
        )
    with pytest.raises(ValueError, match="holds 4 fakes"):
        next(mix_in_fakes(batches(), new_fakes, 0.75, config, seed=5))


def test_retrain_streams_the_runs_shards_with_the_new_fakes_mixed_in(
    streamed_run: tuple[Path, Path], ffpp_root: Path, tmp_path: Path
) -> None:
    """`retrain --shards`: phase 1 streams the run's shards with the new fakes in half of each batch's rows (all
    of its fakes), and only phase 2's videos of the training split are loaded into memory."""
    import shutil

    from deepfake_training.cli import main

    run, shards = streamed_run
    generator = tmp_path / "new-fakes" / "generator-x"
    generator.mkdir(parents=True)
    for video in sorted((ffpp_root / "manipulated_sequences" / "FaceSwap").rglob("*.mp4"))[:2]:
        shutil.copy(video, generator / video.name)
    arguments = ["retrain", "--run", str(run), "--new-fakes", str(generator.parent), "--steps", "2",
                 "--fraction", "0.5", "--shards", str(shards), "--precisions", "fp32", "--no-install",
                 "--no-mlflow", "--set", "phase2_sequences=2"]  # fmt: skip
    assert main(arguments) == 0
    (record,) = (run / "retrain").glob("*/retrain.json")
    result = json.loads(record.read_text())
    assert result["phase1_source"] == str(shards)
    assert result["replaced_items"] == 2 * 2  # half of 4 rows, 2 steps
    train_videos = json.loads((run / "data.json").read_text())["summary"]["splits"]["train"]["files"]
    assert result["train_tracks_in_memory"] == 2 < train_videos  # phase 2's videos, not the split
    checkpoint = torch.load(Path(result["candidate_dir"]) / "checkpoints" / "phase1.pt", weights_only=False)
    assert checkpoint["step"] == 2
    assert result["old_val_auc"] is not None and result["new_val_auc"] is not None


@pytest.fixture(scope="module")
def s3_shards_env() -> Iterator[dict[str, str]]:
    """The suite's S3 server (moto, in its own process) and the settings that point training at it."""
    from deepfake_devstack import S3Server
    from deepfake_training.data import streaming

    with S3Server() as server:
        yield {"DEEPFAKE_TRAIN_S3_ENDPOINT": server.url, "DEEPFAKE_TRAIN_S3_ACCESS_KEY": server.access_key,
               "DEEPFAKE_TRAIN_S3_SECRET_KEY": server.secret_key}  # fmt: skip
    streaming._s3_client.cache_clear()  # its client pointed at this server, which is gone


def test_shards_stream_from_s3_as_from_a_folder(
    faces, tmp_path: Path, s3_shards_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepfake_training.data import streaming

    for name, value in s3_shards_env.items():
        monkeypatch.setenv(name, value)  # spawned loader workers inherit them
    streaming._s3_client.cache_clear()
    directory = write_families(tmp_path / "local", faces, families=8, frames=10)  # 2 shards
    streaming._s3_client().create_bucket(Bucket="training")
    assert upload_shards(directory, "s3://training/shards/train") == len(shard_paths(directory)) + 1
    remote = shard_paths("s3://training/shards/train")
    local = shard_paths(directory)
    assert len(remote) == len(local) >= 2
    assert all(url.startswith("s3://training/shards/train/shard-") for url in remote)
    for url, path in zip(remote, local, strict=True):
        pairs = list(zip(read_shard(url), read_shard(path), strict=True))
        assert pairs and all(a.key == b.key and a.meta == b.meta and np.array_equal(a.crop, b.crop) for a, b in pairs)
    config = TrainingConfig(input_size=64, batch_size=4)
    batches = list(stream_batches(FaceShardStream(remote, config, seed=5, shuffle_buffer=8), 4, steps=6, workers=1))
    labels = torch.cat([batch[1] for batch in batches])
    assert len(labels) == 24 and labels[0::2].eq(REAL).all() and labels[1::2].eq(FAKE).all()
    with pytest.raises(ValueError, match="s3://BUCKET"):
        shard_paths("s3://")
