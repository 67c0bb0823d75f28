"""Shipping a reference run into models/reference and telling whether a fresh `make model` reproduced it."""

from __future__ import annotations

import json
from pathlib import Path

from deepfake_core.model_files import file_sha256
from deepfake_training.workflows.reference import compare_with_shipped, ship_reference


def fake_run(run_dir: Path, payload: bytes, video_auc: float) -> dict:
    """A finished run's summary.json as `deepfake-train reference` writes it, around a stand-in export file."""
    run_dir.mkdir(parents=True)
    export = run_dir / "model.int8.onnx"
    export.write_bytes(payload)
    calibration = {"fake_threshold": 0.6, "uncertain_low": 0.5}
    summary = {
        "exports": {
            "files": {"int8": str(export)},
            "drift": {"int8": {"video": 0.0, "frame": -0.001}},
            "val_auc": {"int8": {"video": 0.7, "frame": 0.68}},
            "calibration": calibration,
            "image_calibration": calibration,
            "metadata": {"sampling": "windows:2"},
        },
        "held_out": {"overall": {"video": {"auc": video_auc}, "frame": {"auc": 0.58}}},
        "config": {"input_size": 112},
        "timings_s": {"total": 1.0},
        "phase1": {"validation": [{"step": 900, "frame_auc": 0.72}]},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return summary


def test_a_shipped_run_is_described_by_its_manifest(tmp_path: Path) -> None:
    fake_run(tmp_path / "run", b"model bytes", video_auc=0.6)
    manifest = ship_reference(tmp_path / "run", tmp_path / "shipped")
    shipped = tmp_path / "shipped" / "model.onnx"
    assert shipped.read_bytes() == b"model bytes"
    assert (
        manifest["sha256"]
        == file_sha256(shipped)
        == json.loads((tmp_path / "shipped" / "model.json").read_text())["sha256"]
    )
    assert manifest["held_out_auc"] == {"video": 0.6, "frame": 0.58}
    assert not list((tmp_path / "shipped").glob(".*partial")), "the copy is atomic: no partial file left"


def test_a_fresh_run_is_compared_with_the_shipped_model(tmp_path: Path) -> None:
    shipped_dir = tmp_path / "shipped"
    fake_run(tmp_path / "first", b"same", 0.6)
    ship_reference(tmp_path / "first", shipped_dir)
    same = compare_with_shipped(fake_run(tmp_path / "again", b"same", 0.6), shipped_dir)
    assert same["identical"] is True and "identical" in same["verdict"]
    other = compare_with_shipped(fake_run(tmp_path / "other", b"different", 0.7), shipped_dir)
    assert other["identical"] is False
    assert "video 0.700 vs 0.600" in other["verdict"], other["verdict"]
    nothing = compare_with_shipped(fake_run(tmp_path / "alone", b"x", 0.5), tmp_path / "none")
    assert nothing == {"verdict": "no shipped model to compare with", "identical": False}
