"""FaceForensics++ in its official download layout, split by the official train/val/test JSON files.

  <root>/original_sequences/youtube/<c0|c23|c40>/videos/000.mp4
  <root>/manipulated_sequences/<Deepfakes|Face2Face|FaceSwap|NeuralTextures|FaceShifter>/<c..>/videos/000_003.mp4
  <splits>/train.json, val.json, test.json   (from the FaceForensics GitHub repository, dataset/splits)
Each split file lists pairs ["000", "003"]: both originals and the fakes 000_003 and 003_000 belong to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from deepfake_training.datasets.records import (
    FAKE,
    REAL,
    SPLITS,
    DatasetLayoutError,
    MediaRecord,
    Split,
    require,
    videos_in,
)

DATASET = "ffpp"
MANIPULATIONS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
COMPRESSIONS = ("c0", "c23", "c40")


def read_official_splits(splits_dir: Path) -> dict[str, Split]:
    """Video id ("000") -> split, from the three official JSON files of id pairs."""
    assignment: dict[str, Split] = {}
    for split in SPLITS:
        path = require(splits_dir / f"{split}.json", f"FaceForensics++ split file {split}.json")
        try:
            pairs = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DatasetLayoutError(f"{path} is not valid JSON: {error}") from error
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise DatasetLayoutError(f"{path} must hold [id, id] pairs, found {pair!r}")
            for video_id in pair:
                previous = assignment.setdefault(str(video_id), split)
                if previous != split:
                    raise DatasetLayoutError(f"video {video_id} is in both {previous}.json and {split}.json")
    return assignment


def faceforensics_records(
    root: Path,
    compression: str = "c23",
    manipulations: Sequence[str] = MANIPULATIONS,
    splits_dir: Path | None = None,
) -> list[MediaRecord]:
    """Originals and the requested manipulations that exist on disk; fakes named target_source.

    A manipulation folder that is absent is skipped (people often download a subset); videos whose ids
    are in no split file are left out, as in the benchmark.
    """
    root = Path(root)
    if compression not in COMPRESSIONS:
        raise DatasetLayoutError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    unknown = sorted(set(manipulations) - set(MANIPULATIONS))
    if unknown:
        raise DatasetLayoutError(f"unknown FaceForensics++ manipulations {unknown}; known: {list(MANIPULATIONS)}")
    splits = read_official_splits(Path(splits_dir) if splits_dir else root / "splits")
    originals = require(
        root / "original_sequences" / "youtube" / compression / "videos", "FaceForensics++ original videos"
    )
    records = [
        MediaRecord(
            key=f"{DATASET}-{compression}-real-{path.stem}",
            path=path,
            label=REAL,
            dataset=DATASET,
            manipulation="real",
            split=splits[path.stem],
            identity=f"{DATASET}:{path.stem}",
        )
        for path in videos_in(originals)
        if path.stem in splits
    ]
    for manipulation in manipulations:
        folder = root / "manipulated_sequences" / manipulation / compression / "videos"
        if not folder.is_dir():
            continue
        for path in videos_in(folder):
            target, _, donor = path.stem.partition("_")
            if target not in splits:
                continue
            if donor and splits.get(donor, splits[target]) != splits[target]:
                raise DatasetLayoutError(f"{path.name}: target and source videos are in different splits")
            records.append(
                MediaRecord(
                    key=f"{DATASET}-{compression}-{manipulation}-{path.stem}",
                    path=path,
                    label=FAKE,
                    dataset=DATASET,
                    manipulation=manipulation,
                    split=splits[target],
                    identity=f"{DATASET}:{target}",
                    source=f"{DATASET}-{compression}-real-{target}",
                )
            )
    if not records:
        raise DatasetLayoutError(f"no FaceForensics++ videos listed in the split files were found under {root}")
    return records
