"""What every dataset adapter produces: one `MediaRecord` per video or photo, with label, split and identity.

Adapters only list files and read the datasets' own label/split files; decoding happens in the face cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

REAL, FAKE = 0, 1
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class MediaRecord:
    """One video (or photo) of a dataset.

    `key` is unique across datasets and safe as a file name stem; `identity` names the person (or the
    group of people that must stay together) so that splits can keep every person on one side;
    `manipulation` is 'real' for authentic media and the method's name for fakes.
    """

    key: str
    path: Path
    label: int
    dataset: str
    manipulation: str
    split: Split
    identity: str
    source: str | None = None  # for fakes: the key of the real video the fake was made from, where known

    def __post_init__(self) -> None:
        if self.label not in (REAL, FAKE):
            raise ValueError(f"label must be {REAL} (real) or {FAKE} (fake), got {self.label}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> MediaRecord:
        return cls(**{**data, "path": Path(str(data["path"]))})  # type: ignore[arg-type]


class DatasetLayoutError(ValueError):
    """The folder does not have the dataset's official layout; the message says what is missing."""


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetLayoutError(f"{what} not found at {path}; is this the dataset's root folder?")
    return path


def videos_in(folder: Path) -> list[Path]:
    """The .mp4/.avi/.mov/.mkv/.webm files directly in `folder`, sorted by name (deterministic order)."""
    suffixes = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def summarize(records: Iterable[MediaRecord]) -> dict[str, dict[str, int]]:
    """Counts per split and manipulation: what a log line or a report shows about a dataset."""
    summary: dict[str, dict[str, int]] = {}
    for record in records:
        per_split = summary.setdefault(record.split, {})
        per_split[record.manipulation] = per_split.get(record.manipulation, 0) + 1
    return summary
