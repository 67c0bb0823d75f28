"""`deepfake-detect` as a user runs it: real process, real files, exit codes and one-line reasons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from deepfake_core.result import DetectionResult


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepfake_core.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def model_args(untrained_model: Path) -> list[str]:
    return ["--model", str(untrained_model), "--allow-untrained"]


def test_json_output_is_a_valid_result_document(model_args, media_dir, tmp_path):
    done = run_cli(str(media_dir / "astronaut.png"), "--json", "--heatmaps", str(tmp_path), *model_args)
    assert done.returncode == 0, done.stderr
    result = DetectionResult.model_validate_json(done.stdout)
    assert len(result.tracks) == 1
    written = sorted(p.name for p in (tmp_path / "astronaut").iterdir())
    assert any(name.endswith("_face.png") for name in written)
    assert all(Path(h.ref).exists() for h in result.tracks[0].heatmaps)


def test_summary_names_the_verdict_and_each_face(model_args, media_dir):
    done = run_cli(str(media_dir / "cap13_edit2.mp4"), "--sampling", "uniform:8", *model_args)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert "cap13_edit2.mp4" in first and any(v in first for v in ("REAL", "FAKE", "UNCERTAIN"))
    assert "face #0" in done.stdout and "8 frames sampled" in done.stdout


def test_bad_file_gets_one_line_and_a_nonzero_exit_while_good_files_still_run(model_args, media_dir, tmp_path):
    pdf = tmp_path / "report.mp4"  # a PDF with a video's name: content decides
    pdf.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n")
    done = run_cli(str(pdf), str(media_dir / "astronaut.png"), "--json", *model_args)
    assert done.returncode == 2
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "report.mp4" in errors[0] and "unsupported_media" in errors[0]
    assert DetectionResult.model_validate_json(done.stdout).media.type.value == "image"


def test_missing_model_says_how_to_get_one(media_dir, tmp_path):
    done = run_cli(str(media_dir / "astronaut.png"), "--model", str(tmp_path / "nope.onnx"))
    assert done.returncode == 3
    assert "model_not_found" in done.stderr and "make model" in done.stderr


def test_untrained_model_is_refused_by_default(untrained_model, media_dir):
    done = run_cli(str(media_dir / "astronaut.png"), "--model", str(untrained_model))
    assert done.returncode == 3 and "untrained_model" in done.stderr


def test_bad_sampling_is_rejected_with_the_accepted_forms(model_args, media_dir):
    done = run_cli(str(media_dir / "astronaut.png"), "--sampling", "every:3", *model_args)
    assert done.returncode == 2 and "uniform:N" in done.stderr


def test_missing_file_is_reported(model_args, tmp_path):
    done = run_cli(str(tmp_path / "gone.jpg"), *model_args)
    assert done.returncode == 2 and "not_found" in done.stderr


def test_schema_is_printed():
    done = run_cli("--print-schema")
    assert done.returncode == 0 and json.loads(done.stdout)["title"] == "DetectionResult"
