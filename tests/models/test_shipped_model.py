"""The reference model shipped in models/reference: what its manifest says, the configs it generates, and
that the CPU path serves it with heatmaps (Triton's tests serve the same file through the python backend)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deepfake_core.model_files import file_sha256
from deepfake_core.model.export import read_metadata
from deepfake_core.serving.model_repository import Variant, describe_model, render_config
from deepfake_core.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "models" / "reference"
MODEL = SHIPPED / "model.onnx"
COMMITTED_REPOSITORY = PROJECT_ROOT / "model_repository"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((SHIPPED / "model.json").read_text())


def test_the_manifest_describes_the_shipped_file(manifest: dict) -> None:
    assert MODEL.stat().st_size == manifest["bytes"] < 64 * 2**20, "the shipped model must stay small enough for git"
    assert file_sha256(MODEL) == manifest["sha256"]
    metadata = read_metadata(MODEL)
    assert metadata.trained and metadata.extra.get("precision") == manifest["precision"] == "int8"
    assert metadata.input_size == manifest["input_size"]
    assert metadata.image_fake_threshold is not None, "photos calibrated apart from videos"
    assert metadata.fake_threshold == manifest["calibration"]["fake_threshold"], "the video thresholds it was tuned with"
    drift = manifest["drift_vs_fp32"]
    # The export rule: INT8 is adopted only when its validation AUC is at most 0.005 below FP32's.
    assert drift["video"] >= -0.005 and drift["frame"] >= -0.005, "INT8 is shipped only where its drift is negligible"


def test_the_committed_configs_are_the_ones_the_shipped_model_generates() -> None:
    """Installing the shipped model (what `make setup` does on a fresh clone) leaves the tree clean."""
    description = describe_model(MODEL)
    for variant in Variant:
        committed = (COMMITTED_REPOSITORY / variant.value / "deepfake_detector" / "config.pbtxt").read_text()
        assert committed == render_config(description, variant), f"{variant.value}/config.pbtxt is stale"


@pytest.mark.slow
def test_the_cpu_path_scores_a_photo_with_heatmaps(media_dir: Path, tmp_path: Path) -> None:
    from deepfake_core.pipeline import Detector, DirectoryHeatmapWriter
    from deepfake_core.settings import CoreSettings

    detector = Detector(CoreSettings(model_path=MODEL))
    result = detector.analyze(media_dir / "astronaut.png", explain=True, heatmap_writer=DirectoryHeatmapWriter(tmp_path))
    assert result.verdict in ("real", "fake", "uncertain")
    assert 0.0 <= result.score <= 1.0
    assert list(tmp_path.rglob("*.png")), "no heatmap was written"
