"""Dataset adapters: official layouts (FaceForensics++, Celeb-DF v2, DFDC and its preview) and the offline media ->
records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepfake_training.datasets.celebdf import celebdf_records
from deepfake_training.datasets.dfdc import dfdc_records
from deepfake_training.datasets.dfdc_preview import dfdc_preview_records
from deepfake_training.datasets.faceforensics import faceforensics_records
from deepfake_training.datasets.local_media import local_media_records
from deepfake_training.datasets.records import FAKE, REAL, DatasetLayoutError, MediaRecord

ADAPTERS = {
    "ffpp": faceforensics_records,
    "celebdf": celebdf_records,
    "dfdc": dfdc_records,
    "dfdcp": dfdc_preview_records,
    "local": local_media_records,
}


def load_records(kind: str, root: Path, **options: Any) -> list[MediaRecord]:
    """Records of dataset `kind` (ffpp, celebdf, dfdc, dfdcp, local) under `root`."""
    try:
        adapter = ADAPTERS[kind]
    except KeyError:
        raise DatasetLayoutError(f"unknown dataset kind {kind!r}; use one of {sorted(ADAPTERS)}") from None
    return adapter(Path(root), **options)


__all__ = [
    "ADAPTERS",
    "FAKE",
    "REAL",
    "DatasetLayoutError",
    "MediaRecord",
    "celebdf_records",
    "dfdc_preview_records",
    "dfdc_records",
    "faceforensics_records",
    "load_records",
    "local_media_records",
]
