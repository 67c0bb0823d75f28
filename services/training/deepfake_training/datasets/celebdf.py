"""Celeb-DF (v2) in its official layout; the official test list, and a validation set carved by identity.

  <root>/Celeb-real/id0_0000.mp4       <root>/YouTube-real/00000.mp4
  <root>/Celeb-synthesis/id0_id16_0000.mp4   (target id0's video with donor id16's face)
  <root>/List_of_testing_videos.txt    lines "<1 real | 0 fake> <folder>/<file>.mp4"
Each folder may also keep its files in a `videos/` subfolder, as several re-distributions do.

The official list does not split by person: it lists some of one celebrity's real videos and leaves the others
out, so taking it as it is puts that person on both sides. The list wins, deliberately: a celebrity with any
listed video is a test identity, and all of that celebrity's videos (reals and the fakes made on them) are test
(`leaked="test"`; `leaked="drop"` leaves the unlisted ones out instead). The published test videos stay test,
and training never sees a test face. The records say which videos moved (`moved_to_test`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Literal

from deepfake_training.datasets.records import FAKE, REAL, DatasetLayoutError, MediaRecord, require, videos_in

log = logging.getLogger(__name__)

DATASET = "celebdf"
REAL_FOLDERS = ("Celeb-real", "YouTube-real")
FAKE_FOLDER = "Celeb-synthesis"
TEST_LIST = "List_of_testing_videos.txt"


def read_test_list(path: Path) -> dict[str, int]:
    """'Celeb-real/id0_0007.mp4' -> label (0 real, 1 fake). The file itself writes 1 for real, 0 for fake."""
    listed: dict[str, int] = {}
    for number, line in enumerate(require(path, "Celeb-DF test list").read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetLayoutError(f"{path}:{number}: expected '<0|1> <folder>/<file>', got {line!r}")
        listed[parts[1]] = REAL if parts[0] == "1" else FAKE
    return listed


def celebdf_records(
    root: Path, val_fraction: float = 0.1, leaked: Literal["test", "drop"] = "test"
) -> list[MediaRecord]:
    """Every video; listed ones are 'test', the rest 'train' or 'val' by a stable hash of the identity.

    Celeb-DF has no official validation split; hashing the target identity keeps each celebrity on one side
    and gives the same split on every machine. Unlisted videos of a listed celebrity follow `leaked` (see the
    module's docstring).
    """
    if leaked not in ("test", "drop"):
        raise DatasetLayoutError(f"celebdf.leaked must be 'test' or 'drop', got {leaked!r}")
    root = Path(root)
    test_list = read_test_list(root / TEST_LIST)
    records = []
    for folder_name in (*REAL_FOLDERS, FAKE_FOLDER):
        folder = require(root / folder_name, f"Celeb-DF folder {folder_name}")
        if (folder / "videos").is_dir():
            folder = folder / "videos"
        for path in videos_in(folder):
            relative = f"{folder_name}/{path.name}"
            label = FAKE if folder_name == FAKE_FOLDER else REAL
            if relative in test_list and test_list[relative] != label:
                raise DatasetLayoutError(f"{TEST_LIST} labels {relative} against its folder")
            parts = path.stem.split("_")
            if folder_name == "YouTube-real":
                identity = f"{DATASET}:youtube-{path.stem}"
            else:
                identity = f"{DATASET}:{parts[0]}"
            split = "test" if relative in test_list else _train_or_val(identity, val_fraction)
            source = None
            if label == FAKE and len(parts) == 3:
                source = f"{DATASET}-Celeb-real-{parts[0]}_{parts[2]}"
            records.append(
                MediaRecord(
                    key=f"{DATASET}-{folder_name}-{path.stem}",
                    path=path,
                    label=label,
                    dataset=DATASET,
                    manipulation="real" if label == REAL else FAKE_FOLDER,
                    split=split,  # type: ignore[arg-type]
                    identity=identity,
                    source=source,
                )
            )
    if not records:
        raise DatasetLayoutError(f"no Celeb-DF videos found under {root}")
    return _keep_test_identities_whole(records, leaked)


def _keep_test_identities_whole(records: list[MediaRecord], leaked: str) -> list[MediaRecord]:
    """Unlisted videos of an identity that the test list names go to test (or are dropped)."""
    test_identities = {r.identity for r in records if r.split == "test"}
    kept, moved = [], []
    for record in records:
        if record.split != "test" and record.identity in test_identities:
            moved.append(record.key)
            if leaked == "drop":
                continue
            record = MediaRecord(**{**record.__dict__, "split": "test"})
        kept.append(record)
    if moved:
        log.info("Celeb-DF: %d unlisted videos of test-list celebrities %s: %s", len(moved),
                 "moved to test" if leaked == "test" else "left out", ", ".join(moved[:10]))  # fmt: skip
    return kept


def _train_or_val(identity: str, val_fraction: float) -> str:
    bucket = int(hashlib.sha1(identity.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < val_fraction else "train"
