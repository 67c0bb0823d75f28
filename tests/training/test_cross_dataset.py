"""The datasets as they are: Celeb-DF v2 trains with its official test list; the DFDC public test set and the DFDC
preview evaluate; the cross-dataset table in DeepfakeBench's columns is printed and saved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from deepfake_training.cli import main
from deepfake_training.config import TrainingConfig
from deepfake_training.learning.checkpoints import save_model
from deepfake_training.learning.trainer import build_model

TOY = ["input_size=64", "batch_size=8", "phase1_steps=4", "warmup_steps=1", "phase2_steps=4", "phase2_sequences=4",
       "phase2_batch_size=4", "sequence_length=4", "checkpoint_every=2", "pgd_steps=1",
       "eval_frames_per_video=4"]  # fmt: skip


@pytest.fixture()
def cache_root(tmp_path: Path) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPFAKE_TRAIN_CACHE_ROOT", str(tmp_path / "cache"))
        yield tmp_path / "cache"


def test_celebdf_trains_with_its_official_test_list(celebdf_root: Path, cache_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "celebdf-run"
    # val_fraction 0.72 puts YouTube-real/00000 alone in validation (stable hash), id0 and id1 in training
    arguments = ["train", "--dataset", f"celebdf={celebdf_root}", "--dataset-option", "celebdf.val_fraction=0.72",
                 "--out", str(out), "--train-sampling", "uniform:4", "--precisions", "fp32", "--no-mlflow",
                 *[arg for value in TOY for arg in ("--set", value)]]  # fmt: skip
    assert main(arguments) == 0
    data = json.loads((out / "data.json").read_text())
    splits = {r["key"]: r["split"] for r in data["records"]}
    assert splits["celebdf-Celeb-real-id2_0001"] == "test"  # the unlisted video of a listed celebrity
    assert data["summary"]["splits"]["test"]["files"] == 4 and data["summary"]["splits"]["train"]["files"] == 5
    held_out = json.loads((out / "summary.json").read_text())["held_out"]["overall"]["video"]
    assert held_out["real"] == 3 and held_out["fake"] == 1 and held_out["auc"] is not None


def test_dfdc_labels_csv_and_preview_evaluate_into_a_deepfakebench_table(
    dfdc_test_root: Path,
    dfdc_preview_root: Path,
    celebdf_root: Path,
    cache_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = TrainingConfig(input_size=64, sequence_length=4)
    model_path = save_model(tmp_path / "model.pt", build_model(config), training_config=config.model_dump())
    out = tmp_path / "report"
    arguments = ["evaluate", "--model", f"ffpp={model_path}", "--dataset", f"dfdc={dfdc_test_root}",
                 "--dataset", f"celebdf={celebdf_root}", "--dataset", f"dfdcp={dfdc_preview_root}",
                 "--frames-per-video", "4", "--out", str(out)]  # fmt: skip
    assert main(arguments) == 0
    rows = {row["tested_on"]: row for row in json.loads((out / "report.json").read_text())["benchmark"]}
    assert set(rows) == {"dfdc", "celebdf", "dfdcp"} and {r["trained_on"] for r in rows.values()} == {"ffpp"}
    assert rows["dfdc"]["videos"] == 6 and rows["celebdf"]["videos"] == 4
    assert rows["dfdcp"]["videos"] == 4, "the preview's test set: its 'set' decides the split"
    for row in rows.values():
        for column in ("video_auc", "frame_auc", "video_eer", "frame_eer", "video_log_loss", "frame_log_loss"):
            assert row[column] is not None and row[column] >= 0, column
    printed = capsys.readouterr().out
    assert "DeepfakeBench" in printed and "| ffpp | dfdc | 6 |" in printed
