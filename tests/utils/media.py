"""Real face media fetched by `infra/scripts/fetch-media.sh` into the ignored `.cache/media` folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEDIA_DIR = Path(os.environ.get("MEDIA_CACHE", ROOT / ".cache" / "media"))
FETCH_SCRIPT = ROOT / "infra" / "scripts" / "fetch-media.sh"

# Every file the reference model uses: a cache fetched before a file was added fetches the new ones.
from deepfake_training.datasets.local_media import PHOTOS, VIDEOS  # noqa: E402


def ensure_media() -> Path:
    """Fetch the media once; later calls find the cache."""
    if not all((MEDIA_DIR / name).exists() for name in VIDEOS + PHOTOS):
        subprocess.run(["bash", str(FETCH_SCRIPT)], check=True, env={**os.environ, "MEDIA_CACHE": str(MEDIA_DIR)})
    return MEDIA_DIR
