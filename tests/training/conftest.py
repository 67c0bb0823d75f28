"""Training fixtures: a small face cache of the real media at 64 px, shared by the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
from deepfake_core.settings import CoreSettings
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.datasets import MediaRecord, local_media_records

from tests.training.trees import build_celebdf, build_dfdc, build_dfdc_preview, build_dfdc_test, build_faceforensics

TINY_SIZE = 64
# Faces per video: enough for 30-frame clips on every split, few enough to cache in seconds.
TINY_SAMPLING = {"local-franck": "uniform:96", "local-cap12_edit": "uniform:40", "local-cap13_edit2": "uniform:40",
                 "local-feat_WolfgangLanger_Pexels": "uniform:40"}  # fmt: skip


@pytest.fixture(scope="session")
def local_records(media_dir: Path) -> list[MediaRecord]:
    return local_media_records(media_dir)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("face-cache")


@pytest.fixture(scope="session")
def tiny_cache(local_records: list[MediaRecord], cache_root: Path) -> FaceCache:
    cache = FaceCache(cache_root, TINY_SIZE, CoreSettings().face_margin)
    cache.build(local_records, CoreSettings(), sampling=lambda r: TINY_SAMPLING.get(r.key, "uniform:1"), progress=False)
    return cache


@pytest.fixture(scope="session")
def ffpp_root(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    return build_faceforensics(tmp_path_factory.mktemp("ffpp"), media_dir)


@pytest.fixture(scope="session")
def celebdf_root(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    return build_celebdf(tmp_path_factory.mktemp("celebdf"), media_dir)


@pytest.fixture(scope="session")
def dfdc_root(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    return build_dfdc(tmp_path_factory.mktemp("dfdc"), media_dir)


@pytest.fixture(scope="session")
def dfdc_test_root(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    return build_dfdc_test(tmp_path_factory.mktemp("dfdc-test") / "test", media_dir)


@pytest.fixture(scope="session")
def dfdc_preview_root(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    return build_dfdc_preview(tmp_path_factory.mktemp("dfdc-preview"), media_dir)
