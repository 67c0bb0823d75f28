"""The DeepFake Detection Challenge (DFDC) data: one `metadata.json` per part, labels and originals.

  <root>/dfdc_train_part_<N>/metadata.json   {"abc.mp4": {"label": "FAKE", "split": "train", "original": "xyz.mp4"}}
  <root>/dfdc_train_part_<N>/abc.mp4
A folder that itself holds metadata.json (e.g. `train_sample_videos`) is one part. A part listed in
`val_parts`/`test_parts` (by its number) goes to that split; otherwise the metadata's own "split" decides.
DFDC names no identities: a fake is grouped with its original, so both land on the same side.

The public test set (the 5,000 videos released with the competition's results) is a folder with `labels.csv`
("filename,label", 1 = fake) instead of metadata.json; its videos are all 'test' and, naming no originals, each
is its own group. It may sit beside the training parts or be given as the root itself.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Collection
from pathlib import Path

from deepfake_training.datasets.records import FAKE, REAL, SPLITS, DatasetLayoutError, MediaRecord, Split

DATASET = "dfdc"
_PART_NUMBER = re.compile(r"(\d+)$")
LABELS_CSV = "labels.csv"


def _is_part(folder: Path) -> bool:
    return (folder / "metadata.json").is_file() or (folder / LABELS_CSV).is_file()


def dfdc_parts(root: Path) -> list[Path]:
    root = Path(root)
    if _is_part(root):
        return [root]
    parts = sorted(p for p in root.iterdir() if p.is_dir() and _is_part(p))
    if not parts:
        raise DatasetLayoutError(f"no DFDC part (a folder with metadata.json or labels.csv) under {root}")
    return parts


def dfdc_test_records(part: Path) -> list[MediaRecord]:
    """The public test set: `labels.csv` rows "filename,label" (1 fake, 0 real) of videos present on disk."""
    path = part / LABELS_CSV
    records = []
    with path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        if not rows.fieldnames or not {"filename", "label"} <= set(rows.fieldnames):
            raise DatasetLayoutError(f"{path} must have the columns filename,label; found {rows.fieldnames}")
        for number, row in enumerate(rows, start=2):
            video = part / row["filename"].strip()
            label_text = row["label"].strip()
            if label_text not in ("0", "1"):
                raise DatasetLayoutError(f"{path}:{number}: label must be 0 (real) or 1 (fake), got {label_text!r}")
            if not video.is_file():
                continue  # partially downloaded, as the training parts
            label = FAKE if label_text == "1" else REAL
            records.append(
                MediaRecord(
                    key=f"{DATASET}-{part.name}-{video.stem}",
                    path=video,
                    label=label,
                    dataset=DATASET,
                    manipulation="real" if label == REAL else "DFDC",
                    split="test",
                    identity=f"{DATASET}:{part.name}:{video.stem}",
                )
            )
    return records


def dfdc_records(root: Path, val_parts: Collection[int] = (), test_parts: Collection[int] = ()) -> list[MediaRecord]:
    records = []
    for part in dfdc_parts(Path(root)):
        if not (part / "metadata.json").is_file():
            records.extend(dfdc_test_records(part))
            continue
        match = _PART_NUMBER.search(part.name)
        number = int(match.group(1)) if match else None
        try:
            metadata = json.loads((part / "metadata.json").read_text())
        except json.JSONDecodeError as error:
            raise DatasetLayoutError(f"{part / 'metadata.json'} is not valid JSON: {error}") from error
        for file_name, entry in sorted(metadata.items()):
            path = part / file_name
            if not path.is_file():
                continue  # parts are often downloaded partially
            label_text = str(entry.get("label", "")).upper()
            if label_text not in ("REAL", "FAKE"):
                raise DatasetLayoutError(f"{part.name}/metadata.json: {file_name} has label {label_text!r}")
            label = FAKE if label_text == "FAKE" else REAL
            original = entry.get("original")
            if label == FAKE and not original:
                raise DatasetLayoutError(f"{part.name}/metadata.json: fake {file_name} names no original")
            split: Split
            if number is not None and number in test_parts:
                split = "test"
            elif number is not None and number in val_parts:
                split = "val"
            else:
                declared = str(entry.get("split", "train")).lower()
                split = declared if declared in SPLITS else "train"  # type: ignore[assignment]
            anchor = Path(original).stem if label == FAKE else path.stem
            records.append(
                MediaRecord(
                    key=f"{DATASET}-{part.name}-{path.stem}",
                    path=path,
                    label=label,
                    dataset=DATASET,
                    manipulation="real" if label == REAL else "DFDC",
                    split=split,
                    identity=f"{DATASET}:{anchor}",
                    source=f"{DATASET}-{part.name}-{anchor}" if label == FAKE else None,
                )
            )
    if not records:
        raise DatasetLayoutError(f"the DFDC metadata under {root} lists no video present on disk")
    return records
