"""Streaming face shards: WebDataset-style tar files of face crops, landmarks and JSON, and the loader that
streams them by rank and by loader worker through a shuffle buffer, so no split is ever held in memory.

  <out>/shard-000000.tar   000000042.png  000000042.landmarks.npy  000000042.json   (one sample = one face)
  <out>/shards.json        the shards, their sample counts and the split they hold
Samples of one family (a real video and the fakes made from it) are written next to each other and never split
across shards, so the reader pairs each real face with a fake of the same family (a dataset fake, else an SBI
made from the face itself), exactly as the in-memory pool pairs them, and a batch holds whole pairs.
Written with the standard library's tarfile, so `webdataset` or `tar tf` read the same files. Shards are read
from a folder or streamed from S3 (`s3://bucket/prefix`, `DEEPFAKE_TRAIN_S3_*` settings) as they download.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import torch
from deepfake_core.model.network import feature_map_size
from torch.utils.data import IterableDataset, get_worker_info

from deepfake_training.config import TrainingConfig, TrainingSettings
from deepfake_training.data.augment import augment_with_region, region_grid, resize_face
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import KINDS, FaceTrackData, load_tracks, to_tensor
from deepfake_training.datasets.records import REAL, MediaRecord
from deepfake_training.learning.distributed import current
from deepfake_training.synthesis.sbi import random_self_blend

SHARD_NAME = "shard-{:06d}.tar"
INDEX_NAME = "shards.json"
IMAGE_FORMATS = {"png": ".png", "jpg": ".jpg"}


@dataclass
class FaceSample:
    """One face of a shard: its crop (RGB uint8), 68 landmarks in crop pixels, and its record's labels."""

    key: str
    crop: np.ndarray
    landmarks: np.ndarray
    meta: dict[str, Any]

    @property
    def label(self) -> int:
        return int(self.meta["label"])

    @property
    def family(self) -> str:
        return str(self.meta["family"])


def family_of(record: MediaRecord) -> str:
    """A fake joins the family of the real video it was made from; anything else is its own family."""
    return record.source if record.source else record.key


class ShardWriter:
    """Appends samples to numbered tar shards, starting a new shard only between families."""

    def __init__(self, directory: Path, samples_per_shard: int = 2000, image_format: str = "png") -> None:
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.samples_per_shard, self.image_format = samples_per_shard, image_format
        self.shards: list[dict[str, Any]] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0
        self._serial = 0

    def add_family(self, samples: Iterable[tuple[np.ndarray, np.ndarray, dict[str, Any]]]) -> None:
        """Write one family's (crop, landmarks, meta) samples into the current shard (rolled over beforehand)."""
        if self._tar is None or self._count >= self.samples_per_shard:
            self._roll()
        assert self._tar is not None
        for crop, landmarks, meta in samples:
            key = f"{self._serial:09d}"
            self._serial += 1
            ok, encoded = cv2.imencode(IMAGE_FORMATS[self.image_format], cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"could not encode the crop of {meta.get('video')} as {self.image_format}")
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(landmarks, dtype=np.float32))
            for suffix, payload in (
                (IMAGE_FORMATS[self.image_format], encoded.tobytes()),
                (".landmarks.npy", buffer.getvalue()),
                (".json", json.dumps(meta).encode()),
            ):
                info = tarfile.TarInfo(key + suffix)
                info.size = len(payload)
                self._tar.addfile(info, io.BytesIO(payload))
            self._count += 1
            self.shards[-1]["samples"] += 1

    def _roll(self) -> None:
        self._close_current()
        path = self.directory / SHARD_NAME.format(len(self.shards))
        self.shards.append({"file": path.name, "samples": 0})
        self._tar = tarfile.open(path.with_suffix(".tar.tmp"), "w")
        self._count = 0

    def _close_current(self) -> None:
        if self._tar is not None:
            self._tar.close()
            path = self.directory / self.shards[-1]["file"]
            os.replace(path.with_suffix(".tar.tmp"), path)
            self._tar = None

    def close(self, **info: Any) -> Path:
        self._close_current()
        index = self.directory / INDEX_NAME
        index.write_text(json.dumps({"shards": self.shards, **info}, indent=1))
        return index


def write_face_shards(
    cache: FaceCache,
    records: Sequence[MediaRecord],
    directory: Path,
    samples_per_shard: int = 2000,
    image_format: str = "png",
    max_frames_per_video: int | None = None,
) -> Path:
    """Shards of the cached faces of `records` (one split, usually train), families kept whole; returns the index.

    Only one family's faces are in memory at a time.
    """
    families: dict[str, list[MediaRecord]] = {}
    for record in cache.ready(records):
        families.setdefault(family_of(record), []).append(record)
    writer = ShardWriter(directory, samples_per_shard, image_format)
    for family, members in sorted(families.items()):
        members.sort(key=lambda r: (r.label, r.key))  # reals first
        samples = []
        for track in load_tracks(cache, members, max_frames_per_video):
            for frame in range(len(track)):
                meta = {"video": track.key, "frame": frame, "family": family, "label": track.label,
                        "identity": track.identity, "dataset": track.dataset, "manipulation": track.manipulation,
                        "split": track.split, "is_image": track.is_image}  # fmt: skip
                samples.append((track.crops[frame], track.landmarks[frame], meta))
        writer.add_family(samples)
    splits = sorted({r.split for r in records})
    return writer.close(face_size=cache.face_size, splits=splits, families=len(families))


S3_SCHEME = "s3://"


def split_s3_url(url: str) -> tuple[str, str]:
    """("bucket", "key/prefix") of an s3://bucket/key/prefix URL."""
    bucket, _, key = url.removeprefix(S3_SCHEME).partition("/")
    if not url.startswith(S3_SCHEME) or not bucket:
        raise ValueError(f"{url!r} is not an s3://BUCKET/PREFIX URL")
    return bucket, key.strip("/")


@functools.cache
def _s3_client() -> Any:
    """One boto3 client per process (a loader worker builds its own), configured by `DEEPFAKE_TRAIN_S3_*`."""
    import boto3

    settings = TrainingSettings()
    secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
    return boto3.client("s3", endpoint_url=settings.s3_endpoint, aws_access_key_id=settings.s3_access_key,
                        aws_secret_access_key=secret, region_name=settings.s3_region)  # fmt: skip


def open_shard(source: str) -> IO[bytes]:
    """A shard's bytes as a stream: a local file, or an S3 object read as it downloads (never saved to disk)."""
    if source.startswith(S3_SCHEME):
        bucket, key = split_s3_url(source)
        return _s3_client().get_object(Bucket=bucket, Key=key)["Body"]
    return open(source, "rb")  # noqa: SIM115 - the caller closes it


def _s3_key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def shard_paths(location: str | Path) -> list[str]:
    """The shards a `write_face_shards` index lists, in order: paths, or s3:// URLs when `location` is one."""
    location = str(location)
    if location.startswith(S3_SCHEME):
        bucket, prefix = split_s3_url(location)
        index = json.loads(_s3_client().get_object(Bucket=bucket, Key=_s3_key(prefix, INDEX_NAME))["Body"].read())
        return [f"{S3_SCHEME}{bucket}/{_s3_key(prefix, shard['file'])}" for shard in index["shards"]]
    index = json.loads((Path(location) / INDEX_NAME).read_text())
    return [str(Path(location) / shard["file"]) for shard in index["shards"]]


def upload_shards(directory: Path, url: str) -> int:
    """Copy a shard folder (its tar files, then shards.json) to s3://bucket/prefix; returns the files copied.

    The index goes last, so a reader never finds an index whose shards are not all there yet.
    """
    bucket, prefix = split_s3_url(url)
    directory = Path(directory)
    files = [*(Path(path).name for path in shard_paths(directory)), INDEX_NAME]
    for name in files:
        _s3_client().upload_file(str(directory / name), bucket, _s3_key(prefix, name))
    return len(files)


Opener = Callable[[str], IO[bytes]]


def read_shard(source: str, opener: Opener | None = None) -> Iterator[FaceSample]:
    """The samples of one shard, streamed member by member (tar's stream mode: no seeking, no index)."""
    handle = (opener or open_shard)(source)
    try:
        with tarfile.open(fileobj=handle, mode="r|") as archive:
            key, parts = None, {}
            for member in archive:
                stem, _, suffix = member.name.partition(".")
                if key is not None and stem != key:
                    yield _sample(key, parts)
                    parts = {}
                key = stem
                extracted = archive.extractfile(member)
                parts[suffix] = extracted.read() if extracted else b""
            if key is not None:
                yield _sample(key, parts)
    finally:
        handle.close()


def _sample(key: str, parts: dict[str, bytes]) -> FaceSample:
    image = parts.get("png") or parts.get("jpg")
    if image is None or "json" not in parts or "landmarks.npy" not in parts:
        raise ValueError(f"shard sample {key} lacks its image, landmarks or JSON ({sorted(parts)})")
    bgr = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    landmarks = np.load(io.BytesIO(parts["landmarks.npy"]))
    return FaceSample(key, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), landmarks, json.loads(parts["json"]))


def families_in(samples: Iterable[FaceSample]) -> Iterator[list[FaceSample]]:
    """Consecutive samples of one family (the writer keeps each family contiguous)."""
    group: list[FaceSample] = []
    for sample in samples:
        if group and sample.family != group[0].family:
            yield group
            group = []
        group.append(sample)
    if group:
        yield group


Pair = tuple[FaceSample, FaceSample | None]  # (real face, a dataset fake of its family or None = make an SBI)


class FaceShardStream(IterableDataset):
    """Phase-1 samples streamed from face shards: (image [3, S, S], label, kind index, region grid), as FrameDataset.

    Each (rank, loader worker) reads its own shards (those at its position in an epoch-shuffled order), pairs
    every real face with a fake of its family, and shuffles pairs through a buffer of `shuffle_buffer` pairs;
    the real and its fake are yielded one after the other, so an even batch holds whole pairs. Memory: one
    family plus the buffer, whatever the dataset's size. `set_epoch` reshuffles (call it per epoch).
    """

    def __init__(
        self,
        shards: Sequence[str | Path],
        config: TrainingConfig,
        seed: int,
        shuffle_buffer: int = 512,
        opener: Opener | None = None,
    ) -> None:
        self.shards = [str(s) for s in shards]
        self.config, self.seed, self.shuffle_buffer, self.opener = config, seed, shuffle_buffer, opener
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_shards(self) -> list[str]:
        """This (rank, worker)'s shards this epoch: WebDataset's split_by_node then split_by_worker."""
        context = current()
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.shards))
        position, total = context.rank * workers + worker_id, context.world_size * workers
        return [self.shards[k] for k in order[position::total]]

    def pairs(self, rng: np.random.Generator) -> Iterator[Pair]:
        for shard in self.my_shards():
            for family in families_in(read_shard(shard, self.opener)):
                reals = [s for s in family if s.label == REAL]
                fakes = [s for s in family if s.label != REAL]
                for real in reals:
                    use_dataset_fake = fakes and rng.random() < self.config.dataset_fake_fraction
                    yield real, fakes[int(rng.integers(len(fakes)))] if use_dataset_fake else None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, int, torch.Tensor]]:
        worker = get_worker_info()
        rng = np.random.default_rng((self.seed, self.epoch, current().rank, worker.id if worker else 0))
        buffer: list[Pair] = []
        for pair in self.pairs(rng):
            buffer.append(pair)
            if len(buffer) >= self.shuffle_buffer:
                yield from self._pair_samples(buffer.pop(int(rng.integers(len(buffer)))), rng)
        while buffer:
            yield from self._pair_samples(buffer.pop(int(rng.integers(len(buffer)))), rng)

    def _pair_samples(
        self, pair: Pair, rng: np.random.Generator
    ) -> Iterator[tuple[torch.Tensor, int, int, torch.Tensor]]:
        real, fake = pair
        size, grid_size = self.config.input_size, feature_map_size(self.config.input_size)
        augment_seed = int(rng.integers(2**63 - 1))  # the pair's shared augmentation draw
        if fake is not None:
            fake_image, fake_region, kind = fake.crop, None, "fake"
        else:
            fake_image, fake_region = random_self_blend(real.crop, real.landmarks, rng, self.config.sbi_strength)
            kind = "sbi"
        for image, region, label, kind_name in ((real.crop, None, REAL, "real"), (fake_image, fake_region, 1, kind)):
            resized = resize_face(image, size)
            if region is not None:
                region = resize_face(np.ascontiguousarray(region, dtype=np.float32), size)
            augmented, region = augment_with_region(resized, region, np.random.default_rng(augment_seed), self.config)
            grid = region_grid(region, grid_size)
            yield to_tensor(augmented), label, KINDS.index(kind_name), torch.from_numpy(grid)


def stream_batches(
    stream: FaceShardStream, batch_size: int, steps: int, workers: int = 0, first_epoch: int = 0
) -> Iterator[tuple[torch.Tensor, ...]]:
    """`steps` batches of `batch_size` (this process's share) from `stream`, epoch after epoch.

    Batches come whole from one loader worker, whose samples arrive in (real, fake) order: an even batch size
    keeps every pair in one batch.
    """
    from torch.utils.data import DataLoader

    if batch_size % 2:
        raise ValueError(f"streamed batches hold real/fake pairs: the per-process batch ({batch_size}) must be even")
    produced, epoch = 0, first_epoch
    while produced < steps:
        stream.set_epoch(epoch)
        before = produced
        # Workers start from a fresh interpreter ("spawn"), not a fork: a forked worker inherits the parent's
        # threads and open connections (a Celery/Redis client in the same process hung one in its after-fork hook).
        context = "spawn" if workers else None
        loader = DataLoader(stream, batch_size=batch_size, num_workers=workers, drop_last=True,
                            multiprocessing_context=context)  # fmt: skip
        for batch in loader:
            yield batch
            produced += 1
            if produced >= steps:
                return
        if produced == before:
            raise ValueError("this process's shards hold less than one batch: write smaller shards or more data")
        epoch += 1


def mix_in_fakes(
    batches: Iterable[tuple[torch.Tensor, ...]],
    tracks: Sequence[FaceTrackData],
    fraction: float,
    config: TrainingConfig,
    seed: int,
    counter: dict[str, int] | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Streamed `batches` with `fraction` of each batch's rows, all fakes, replaced by faces of `tracks` (retrain's
    new fakes, held in memory: a folder of them is small), as `continual.replace_pool_share` does to the in-memory
    pool; resized and augmented as the stream's own faces. `counter["replaced"]` adds up the rows replaced."""
    faces = [(track, frame) for track in tracks for frame in range(len(track))]
    if not faces:
        raise ValueError("no faces to mix in")
    size, grid_side = config.input_size, feature_map_size(config.input_size)
    rank = current().rank
    for step, (images, labels, kinds, regions) in enumerate(batches):
        count = int(round(fraction * len(labels)))
        fake_rows = torch.nonzero(labels != REAL).flatten().tolist()
        if count > len(fake_rows):
            raise ValueError(f"cannot replace {count} rows of a batch that holds {len(fake_rows)} fakes")
        rng = np.random.default_rng((seed, rank, step))
        images, labels, kinds, regions = images.clone(), labels.clone(), kinds.clone(), regions.clone()
        for row in rng.choice(fake_rows, size=count, replace=False) if count else []:
            track, frame = faces[int(rng.integers(len(faces)))]
            augmented, _ = augment_with_region(resize_face(track.crops[frame], size), None, rng, config)
            images[row] = to_tensor(augmented)
            labels[row], kinds[row] = 1, KINDS.index("fake")
            regions[row] = torch.from_numpy(region_grid(None, grid_side))
        if counter is not None:
            counter["replaced"] = counter.get("replaced", 0) + count
        yield images, labels, kinds, regions
