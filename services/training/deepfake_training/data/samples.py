"""Training and evaluation samples from cached faces: real faces, dataset fakes and synthetic fakes.

Training samples are made on the fly (a fresh SBI or swap each epoch) from a seed derived from
(run seed, epoch, index), so a run is reproducible and a resumed run sees the same batches.
Evaluation clips are made once and saved (`ClipSet`): a fixed validation set that every model of a
run, old or new, is judged on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from deepfake_core.contract import to_model_input
from deepfake_core.model.network import feature_map_size
from torch.utils.data import Dataset

from deepfake_training.config import TrainingConfig
from deepfake_training.data.augment import augment, augment_with_region, region_grid, resize_face
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.datasets.records import FAKE, REAL, MediaRecord
from deepfake_training.synthesis.options import DEFAULT_OPTIONS, SynthesisOptions
from deepfake_training.synthesis.sbi import random_self_blend, self_blend_video
from deepfake_training.synthesis.swap import SwapPairing, assert_identity_disjoint, face_swap_video, random_face_swap

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
KINDS = ("real", "fake", "sbi", "swap")  # "fake": a dataset's own fake; sbi/swap: made here


@dataclass
class FaceTrackData:
    """A run of aligned faces of one person in one media file, with the file's labels."""

    key: str
    identity: str
    split: str
    label: int
    dataset: str
    manipulation: str
    is_image: bool
    crops: np.ndarray  # [n, S, S, 3] uint8 RGB
    landmarks: np.ndarray  # [n, 68, 2] float32, crop pixels

    def __len__(self) -> int:
        return len(self.crops)


def load_tracks(cache: FaceCache, records: Iterable[MediaRecord], max_frames: int | None = None) -> list[FaceTrackData]:
    """Cached faces of `records`: a video's main track; every face of a photo (each its own track).

    `max_frames` keeps that many evenly spaced frames of a long video. Records missing from the cache
    (no face found, failed) are skipped with a log line.
    """
    tracks = []
    for record in records:
        try:
            faces = cache.load(record.key)
        except KeyError:
            log.info("no cached faces for %s: skipped", record.key)
            continue
        is_image = record.path.suffix.lower() in IMAGE_SUFFIXES
        parts = faces.tracks() if is_image else [faces.main_track()]
        for number, part in enumerate(parts):
            if max_frames is not None and len(part) > max_frames:
                part = part.select(np.linspace(0, len(part) - 1, max_frames).round().astype(int))
            tracks.append(
                FaceTrackData(
                    key=record.key if len(parts) == 1 else f"{record.key}#{number}",
                    identity=record.identity,
                    split=record.split,
                    label=record.label,
                    dataset=record.dataset,
                    manipulation=record.manipulation,
                    is_image=is_image,
                    crops=part.crops,
                    landmarks=part.landmarks,
                )
            )
    return tracks


def resized_landmarks(landmarks: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Landmarks in crop pixels after resizing the crop (pixel-centre convention)."""
    if from_size == to_size:
        return landmarks
    factor = to_size / from_size
    return (landmarks + 0.5) * factor - 0.5


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """[..., S, S, 3] uint8 RGB -> the model's input (`to_model_input`) as a torch tensor."""
    return torch.from_numpy(to_model_input(images))


# --- phase 1: single frames ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolItem:
    """One training sample slot: which frame, and how it becomes a sample (real, dataset fake, SBI, swap)."""

    kind: str
    track: int
    frame: int

    @property
    def label(self) -> int:
        return REAL if self.kind == "real" else FAKE


def build_frame_pool(
    tracks: Sequence[FaceTrackData], config: TrainingConfig, seed: int, min_items_per_identity: int = 0
) -> list[PoolItem]:
    """Real frames, and fakes: with `paired_fakes`, one per real frame, placed right after it (pairs are
    shuffled as units, see EpochBatchSampler); otherwise `fake_fraction` of the pool, shuffled freely.

    Fakes come from the dataset's fake videos (`dataset_fake_fraction` of them, where there are any) and
    otherwise from SBI or swaps of real frames (`swap_fraction` swaps where another identity can donate).
    Identities with few faces (photos) are repeated up to `min_items_per_identity` real items, so that a
    video's thousands of frames do not drown them; augmentation makes the repeats differ.
    """
    rng = np.random.default_rng(seed)
    reals = [PoolItem("real", t, f) for t, track in enumerate(tracks) if track.label == REAL for f in range(len(track))]
    if min_items_per_identity:
        by_identity: dict[str, list[PoolItem]] = {}
        for item in reals:
            by_identity.setdefault(tracks[item.track].identity, []).append(item)
        for items in by_identity.values():
            if len(items) < min_items_per_identity:
                extra = rng.choice(len(items), size=min_items_per_identity - len(items), replace=True)
                reals.extend(items[k] for k in extra)
    dataset_fakes = [
        PoolItem("fake", t, f) for t, track in enumerate(tracks) if track.label == FAKE for f in range(len(track))
    ]
    if not reals:
        raise ValueError("the training pool needs real faces; none of the training records has cached faces")
    can_swap = len({tracks[item.track].identity for item in reals}) > 1

    def synthetic(base: PoolItem) -> PoolItem:
        kind = "swap" if can_swap and rng.random() < config.swap_fraction else "sbi"
        return PoolItem(kind, base.track, base.frame)

    if config.paired_fakes:
        pairs = []
        for real in reals:
            if dataset_fakes and rng.random() < config.dataset_fake_fraction:
                fake = dataset_fakes[int(rng.integers(len(dataset_fakes)))]
            else:
                fake = synthetic(real)
            pairs.append((real, fake))
        return [item for k in rng.permutation(len(pairs)) for item in pairs[k]]
    wanted = int(round(len(reals) * config.fake_fraction / (1.0 - config.fake_fraction)))
    from_dataset = min(len(dataset_fakes), int(round(wanted * config.dataset_fake_fraction))) if dataset_fakes else 0
    chosen = rng.choice(len(dataset_fakes), size=from_dataset, replace=False) if from_dataset else []
    fakes = [dataset_fakes[k] for k in chosen]
    fakes += [synthetic(reals[int(rng.integers(len(reals)))]) for _ in range(wanted - from_dataset)]
    pool = reals + fakes
    return [pool[k] for k in rng.permutation(len(pool))]


class FaceSynthesizer:
    """Turns pool items into face images: real crops as they are, fakes made here with a given generator."""

    def __init__(self, tracks: Sequence[FaceTrackData], input_size: int) -> None:
        self.tracks = list(tracks)
        self.input_size = input_size
        self.cache_size = tracks[0].crops.shape[1] if tracks else input_size
        self.pairing = SwapPairing.of([t.identity for t in self.tracks], [t.split for t in self.tracks])
        self._donors: dict[int, list[int]] = {}

    def donors(self, track: int) -> list[int]:
        if track not in self._donors:
            self._donors[track] = [d for d in self.pairing.donors_for(track) if self.tracks[d].label == REAL]
        return self._donors[track]

    def frame_and_region(
        self, item: PoolItem, rng: np.random.Generator, strength: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The face image, and for a fake made here the region it manipulated (float [S, S] in [0, 1]);
        None for reals and for a dataset's own fakes, whose region nobody knows."""
        track = self.tracks[item.track]
        crop, landmarks = track.crops[item.frame], track.landmarks[item.frame]
        region: np.ndarray | None = None
        if item.kind in ("real", "fake"):
            image = crop
        elif item.kind == "sbi":
            image, region = random_self_blend(crop, landmarks, rng, strength)
        elif item.kind == "swap":
            donor_track = self._pick_donor(item.track, rng)
            donor_frame = int(rng.integers(len(donor_track)))
            image, region = random_face_swap(
                crop, landmarks, donor_track.crops[donor_frame], donor_track.landmarks[donor_frame], rng
            )
        else:
            raise ValueError(f"unknown sample kind {item.kind!r}")
        if region is not None:
            region = resize_face(np.ascontiguousarray(region, dtype=np.float32), self.input_size)
        return resize_face(image, self.input_size), region

    def clip(
        self,
        kind: str,
        track_index: int,
        start: int,
        length: int,
        rng: np.random.Generator,
        strength: float = 1.0,
        options: SynthesisOptions = DEFAULT_OPTIONS,
    ) -> np.ndarray:
        """[length, S, S, 3] consecutive cached frames of a track, made fake as `kind` says."""
        track = self.tracks[track_index]
        frames = track.crops[start : start + length]
        landmarks = track.landmarks[start : start + length]
        if kind == "sbi":
            frames, _ = self_blend_video(frames, landmarks, rng, strength=strength, options=options)
        elif kind == "swap":
            donor = self._pick_donor(track_index, rng)
            begin = int(rng.integers(max(1, len(donor) - length + 1)))
            frames, _ = face_swap_video(
                frames, landmarks, donor.crops[begin : begin + length], donor.landmarks[begin : begin + length], rng,
                options=options,
            )  # fmt: skip
        elif kind not in ("real", "fake"):
            raise ValueError(f"unknown clip kind {kind!r}")
        return np.stack([resize_face(f, self.input_size) for f in frames])

    def _pick_donor(self, track: int, rng: np.random.Generator) -> FaceTrackData:
        donors = self.donors(track)
        if not donors:
            raise ValueError(f"track {self.tracks[track].key} has no donor of another identity in its split")
        return self.tracks[donors[int(rng.integers(len(donors)))]]


class FrameDataset(Dataset):
    """Phase-1 samples: (image [3, S, S] float in [0, 1], label, kind index, manipulated region on the CAM grid
    [h, w], zeros when unknown or real); call `set_epoch` each epoch."""

    def __init__(
        self, pool: Sequence[PoolItem], synthesizer: FaceSynthesizer, config: TrainingConfig, seed: int
    ) -> None:
        self.pool = list(pool)
        self.synthesizer = synthesizer
        self.config = config
        self.seed = seed
        self.epoch = 0
        self.step = 0

    def set_epoch(self, epoch: int, step: int | None = None) -> None:
        self.epoch = epoch
        self.step = step if step is not None else epoch * max(1, len(self.pool) // self.config.batch_size)

    def sbi_strength(self) -> float:
        """The curriculum: from `sbi_strength_start` at step 0 linearly to `sbi_strength` at `curriculum_steps`."""
        start, end = self.config.sbi_strength_start, self.config.sbi_strength
        if start is None:
            return end
        return start + (end - start) * min(1.0, self.step / self.config.curriculum_steps)

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, torch.Tensor]:
        item = self.pool[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        # A real/fake pair shares its augmentation draw, so flips, rotations and JPEG hit both alike.
        group = index // 2 if self.config.paired_fakes else index
        augment_rng = np.random.default_rng((self.seed, self.epoch, group, 1))
        image, region = self.synthesizer.frame_and_region(item, rng, self.sbi_strength())
        image, region = augment_with_region(image, region, augment_rng, self.config)
        grid = region_grid(region, feature_map_size(self.config.input_size))
        return to_tensor(image), item.label, KINDS.index(item.kind), torch.from_numpy(grid)


# --- phase 2: sequences ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipItem:
    kind: str
    track: int
    start: int

    @property
    def label(self) -> int:
        return REAL if self.kind == "real" else FAKE


def clip_starts(length: int, clip_length: int, stride: int) -> list[int]:
    if length < clip_length:
        return []
    return list(range(0, length - clip_length + 1, max(1, stride)))


def build_clip_pool(
    tracks: Sequence[FaceTrackData], clip_length: int, stride: int, swap_fraction: float, seed: int
) -> list[ClipItem]:
    """Every real clip, and as many fake clips (dataset fakes first, then SBI/swap of the real clips)."""
    rng = np.random.default_rng(seed)
    reals, dataset_fakes = [], []
    for t, track in enumerate(tracks):
        if track.is_image:
            continue
        for start in clip_starts(len(track), clip_length, stride):
            (reals if track.label == REAL else dataset_fakes).append(
                ClipItem("real" if track.label == REAL else "fake", t, start)
            )
    fakes = list(dataset_fakes[: len(reals)])
    can_swap = len({tracks[i.track].identity for i in reals}) > 1 or any(t.is_image for t in tracks)
    while len(fakes) < len(reals):
        base = reals[len(fakes) % len(reals)]
        kind = "swap" if can_swap and rng.random() < swap_fraction else "sbi"
        fakes.append(ClipItem(kind, base.track, base.start))
    pool = reals + fakes
    return [pool[k] for k in rng.permutation(len(pool))]


def make_clip(
    item: ClipItem,
    synthesizer: FaceSynthesizer,
    clip_length: int,
    rng: np.random.Generator,
    config: TrainingConfig | None,
) -> np.ndarray:
    """One clip [T, S, S, 3]; augmentation (if `config`) is drawn once and applied alike to every frame."""
    frames = synthesizer.clip(item.kind, item.track, item.start, clip_length, rng)
    if config is None:
        return frames
    clip_seed = int(rng.integers(2**63 - 1))
    return np.stack([augment(frame, np.random.default_rng(clip_seed), config) for frame in frames])


# --- fixed evaluation clips -----------------------------------------------------------------------------


@dataclass
class ClipSet:
    """Fixed evaluation clips: faces [T_i, S, S, 3] per clip with labels and provenance.

    Frame-level metrics treat every frame of a clip as labelled like its clip; image clips (T = 1 from a
    photo) are scored by the CNN alone, as serving scores photos.
    """

    name: str
    faces: list[np.ndarray]
    labels: np.ndarray
    datasets: list[str]
    manipulations: list[str]
    identities: list[str]
    keys: list[str]
    is_image: np.ndarray
    info: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def input_size(self) -> int:
        return int(self.faces[0].shape[1]) if self.faces else 0

    def frame_count(self) -> int:
        return int(sum(len(f) for f in self.faces))

    def frame_labels(self) -> np.ndarray:
        """Each frame's label (its clip's), in the order of `np.concatenate(self.faces)`."""
        return np.repeat(self.labels, [len(f) for f in self.faces])

    def subset(self, positions: Sequence[int]) -> ClipSet:
        return ClipSet(
            name=self.name,
            faces=[self.faces[k] for k in positions],
            labels=self.labels[list(positions)],
            datasets=[self.datasets[k] for k in positions],
            manipulations=[self.manipulations[k] for k in positions],
            identities=[self.identities[k] for k in positions],
            keys=[self.keys[k] for k in positions],
            is_image=self.is_image[list(positions)],
            info=dict(self.info),
        )

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(f) for f in self.faces], dtype=np.int64)
        meta = {
            "name": self.name,
            "datasets": self.datasets,
            "manipulations": self.manipulations,
            "identities": self.identities,
            "keys": self.keys,
            "info": self.info,
        }
        temporary = path.with_name(path.stem + ".tmp.npz")
        np.savez(
            temporary,
            faces=np.concatenate(self.faces) if self.faces else np.zeros((0, 1, 1, 3), np.uint8),
            lengths=lengths,
            labels=self.labels.astype(np.int64),
            is_image=self.is_image.astype(bool),
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )
        temporary.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> ClipSet:
        with np.load(path) as archive:
            meta = json.loads(archive["meta"].tobytes())
            boundaries = np.cumsum(archive["lengths"])[:-1]
            faces = np.split(archive["faces"], boundaries) if len(archive["lengths"]) else []
            return cls(
                name=meta["name"],
                faces=list(faces),
                labels=archive["labels"],
                datasets=meta["datasets"],
                manipulations=meta["manipulations"],
                identities=meta["identities"],
                keys=meta["keys"],
                is_image=archive["is_image"],
                info=meta.get("info", {}),
            )

    @classmethod
    def concatenate(cls, name: str, parts: Sequence[ClipSet]) -> ClipSet:
        return cls(
            name=name,
            faces=[f for p in parts for f in p.faces],
            labels=np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, np.int64),
            datasets=[d for p in parts for d in p.datasets],
            manipulations=[m for p in parts for m in p.manipulations],
            identities=[i for p in parts for i in p.identities],
            keys=[k for p in parts for k in p.keys],
            is_image=np.concatenate([p.is_image for p in parts]) if parts else np.zeros(0, bool),
        )


def synthetic_clip_set(
    name: str,
    tracks: Sequence[FaceTrackData],
    input_size: int,
    clip_length: int,
    stride: int,
    seed: int,
    kinds: Sequence[str] = ("sbi", "swap"),
    sbi_strength: float = 1.0,
    options: SynthesisOptions = DEFAULT_OPTIONS,
) -> ClipSet:
    """Held-out clips: each real clip of each video track (and each photo face, as a 1-frame clip) plus one
    fake of every kind made from it. Swaps take donors of another identity of the same split only.
    """
    assert_identity_disjoint([t.identity for t in tracks], [t.split for t in tracks])
    synthesizer = FaceSynthesizer(tracks, input_size)
    rng = np.random.default_rng(seed)
    faces, labels, manipulations, identities, keys, images, datasets = [], [], [], [], [], [], []
    for t, track in enumerate(tracks):
        if track.label != REAL:
            continue
        if track.is_image:
            starts, length = list(range(len(track))), 1
        else:
            starts, length = clip_starts(len(track), clip_length, stride), clip_length
        for start in starts:
            for kind in ("real", *kinds):
                if kind == "swap" and not synthesizer.donors(t):
                    continue
                faces.append(synthesizer.clip(kind, t, start, length, rng, sbi_strength, options))
                labels.append(REAL if kind == "real" else FAKE)
                manipulations.append(kind)
                identities.append(track.identity)
                keys.append(f"{track.key}@{start}")
                images.append(track.is_image)
                datasets.append(track.dataset)
    return ClipSet(
        name=name,
        faces=faces,
        labels=np.array(labels, dtype=np.int64),
        datasets=datasets,
        manipulations=manipulations,
        identities=identities,
        keys=keys,
        is_image=np.array(images, dtype=bool),
        info={
            "clip_length": clip_length,
            "stride": stride,
            "seed": seed,
            "kinds": list(kinds),
            "sbi_strength": sbi_strength,
        },
    )


def dataset_clip_set(name: str, tracks: Sequence[FaceTrackData], input_size: int, frames_per_video: int) -> ClipSet:
    """One clip per video of a real dataset: up to `frames_per_video` evenly spaced cached faces."""
    faces, labels = [], []
    for track in tracks:
        positions = np.linspace(0, len(track) - 1, min(frames_per_video, len(track))).round().astype(int)
        faces.append(np.stack([resize_face(track.crops[p], input_size) for p in positions]))
        labels.append(track.label)
    return ClipSet(
        name=name,
        faces=faces,
        labels=np.array(labels, dtype=np.int64),
        datasets=[t.dataset for t in tracks],
        manipulations=[t.manipulation for t in tracks],
        identities=[t.identity for t in tracks],
        keys=[t.key for t in tracks],
        is_image=np.array([t.is_image for t in tracks], dtype=bool),
        info={"frames_per_video": frames_per_video},
    )
