"""The DFDC preview (2019, ~5,000 videos of 66 paid actors; DeepfakeBench's "DFDCP"): one `dataset.json` at the root.

  <root>/dataset.json   {"original_videos/<actor>/<clip>/<file>.mp4": {"label": "real", "set": "train"},
                         "method_A/<actor>/<target>_<source>/<file>.mp4": {"label": "fake", "set": "test"}, ...}
  <root>/original_videos/..., <root>/method_A/..., <root>/method_B/...
Keys are paths relative to the root; "set" ("train" or "test") is the split, and the first folder names the
manipulation (method_A, method_B) of a fake. The actor's folder (second path part, the target actor of a fake)
is the identity, so an actor's real and fake videos stay on one side of any split. Mostly used for evaluation:
`deepfake-train evaluate --dataset dfdcp=ROOT` scores its test set.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from deepfake_training.datasets.records import FAKE, REAL, SPLITS, DatasetLayoutError, MediaRecord, Split

DATASET = "dfdcp"
INDEX = "dataset.json"


def dfdc_preview_records(root: Path) -> list[MediaRecord]:
    """Records of the videos `dataset.json` lists that are present on disk (the preview is often partly fetched)."""
    root = Path(root)
    index = root / INDEX
    if not index.is_file():
        raise DatasetLayoutError(f"no {INDEX} under {root}: the DFDC preview keeps its labels in {index}")
    try:
        entries = json.loads(index.read_text())
    except json.JSONDecodeError as error:
        raise DatasetLayoutError(f"{index} is not valid JSON: {error}") from error
    if not isinstance(entries, dict):
        raise DatasetLayoutError(f"{index} must map video paths to {{label, set}}; found {type(entries).__name__}")
    records = []
    for relative, entry in sorted(entries.items()):
        path = root / relative
        if not path.is_file():
            continue
        label_text = str(entry.get("label", "")).lower()
        if label_text not in ("real", "fake"):
            raise DatasetLayoutError(f"{index}: {relative} has label {entry.get('label')!r}; expected real or fake")
        split_text = str(entry.get("set", "")).lower()
        if split_text not in SPLITS:
            raise DatasetLayoutError(f"{index}: {relative} has set {entry.get('set')!r}; expected one of {SPLITS}")
        parts = PurePosixPath(relative).parts
        label = FAKE if label_text == "fake" else REAL
        actor = parts[1] if len(parts) >= 3 else PurePosixPath(relative).stem
        split: Split = split_text  # type: ignore[assignment]
        records.append(
            MediaRecord(
                key=f"{DATASET}-{'-'.join(PurePosixPath(relative).with_suffix('').parts)}",
                path=path,
                label=label,
                dataset=DATASET,
                manipulation="real" if label == REAL else parts[0],
                split=split,
                identity=f"{DATASET}:{actor}",
            )
        )
    if not records:
        raise DatasetLayoutError(f"{index} lists no video present under {root}")
    return records
