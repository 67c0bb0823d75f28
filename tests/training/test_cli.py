"""`deepfake-train` end to end at toy scale: reference model, evaluation, calibration, retraining, search.

Real commands over the real media, on loopback MLflow (a SQLite store in a temporary folder); sizes are
cut down (64 px, a few steps) so the module runs in a minute or two.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pytest
from deepfake_core.model.export import read_metadata
from deepfake_core.settings import CoreSettings
from deepfake_training.cli import main
from deepfake_training.synthesis.sbi import random_self_blend

TOY = ["input_size=64", "batch_size=8", "phase1_steps=6", "warmup_steps=2", "phase2_steps=6", "phase2_sequences=4",
       "phase2_batch_size=4", "sequence_length=16", "checkpoint_every=3", "pgd_steps=1"]  # fmt: skip


def _sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPFAKE_TRAIN_CACHE_ROOT", str(root / "cache"))
        patch.setenv("DEEPFAKE_TRAIN_MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlruns/mlflow.db")
        yield root


@pytest.fixture(scope="module")
def reference_run(workspace: Path, media_dir: Path) -> Path:
    arguments = ["reference", "--out", str(workspace / "run"), "--media-dir", str(media_dir),
                 "--repository", str(workspace / "repo"), "--video-sampling", "uniform:40", *_sets(TOY)]  # fmt: skip
    assert main(arguments) == 0
    return workspace / "run"


def test_reference_installs_a_calibrated_trained_model(reference_run: Path, workspace: Path) -> None:
    summary = json.loads((reference_run / "summary.json").read_text())
    exports = summary["exports"]
    installed = workspace / "repo" / "gpu" / "deepfake_detector" / "1" / "model.onnx"
    assert installed.is_file() and (workspace / "repo" / "cpu" / "deepfake_detector" / "1" / "model.onnx").is_file()
    assert (workspace / "repo" / "gpu" / "deepfake_detector" / "config.pbtxt").is_file()
    metadata = read_metadata(installed)
    assert metadata.trained and metadata.version == "1" and metadata.input_size == 64
    # serving's windows: the training clips' length; uniform cache sampling has no fixed spacing to reproduce
    assert (metadata.sampling, metadata.sequence_fps, metadata.sequence_length) == ("windows:2", 0.0, 16)
    image = exports["image_calibration"]  # the validation photos, calibrated as files apart from the videos
    assert image is not None and metadata.image_fake_threshold == pytest.approx(image["fake_threshold"])
    assert metadata.fake_threshold == pytest.approx(exports["calibration"]["fake_threshold"])
    assert metadata.uncertain_low == pytest.approx(exports["calibration"]["uncertain_low"])
    assert 0 < metadata.uncertain_low <= metadata.fake_threshold < 1
    assert metadata.extra["precision"] == exports["serving_precision"]
    assert metadata.extra["int8_adopted"] == str(exports["int8_adopted"]).lower()
    assert set(exports["val_auc"]) == {"fp32", "fp16", "int8"}
    assert exports["drift"]["fp32"]["video"] == 0.0
    assert exports["int8_adopted"] == (
        exports["drift"]["int8"]["video"] >= -0.005 and exports["drift"]["int8"]["frame"] >= -0.005
    )
    assert all(ms > 0 for ms in exports["inference_ms_per_clip"].values())
    held_out = summary["held_out"]["overall"]
    assert held_out["video"]["real"] > 0 and held_out["video"]["fake"] > 0
    for name in ("report.json", "report.md", "roc.png"):
        assert (reference_run / "reports" / "heldout" / name).stat().st_size > 0


def test_reference_run_is_tracked_in_mlflow(reference_run: Path, workspace: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("deepfake-detector")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'reference'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["input_size"] == "64" and run.data.params["focal_gamma"] == "2.0"
    assert "phase1/loss" in run.data.metrics and "test/video_auc" in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "phase1/loss")
    assert [m.step for m in history] == sorted(m.step for m in history) and len(history) >= 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "model", "reports"} <= artifacts
    models = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
    assert models and models[0].endswith(".onnx")


def test_evaluate_writes_a_cross_dataset_report(reference_run: Path, workspace: Path, ffpp_root: Path) -> None:
    exports = reference_run / "exports"
    out = workspace / "evaluation"
    arguments = ["evaluate", "--model", f"local={exports / 'model.fp32.onnx'}", "--model",
                 f"local-int8={exports / 'model.int8.onnx'}", "--dataset", f"ffpp={ffpp_root}",
                 "--clips", f"heldout={reference_run / 'clips' / 'test.npz'}", "--frames-per-video", "4",
                 "--out", str(out)]  # fmt: skip
    assert main(arguments) == 0
    report = json.loads((out / "report.json").read_text())
    matrix = report["cross_dataset"]
    assert matrix["rows"] == ["local", "local-int8"]
    assert set(matrix["columns"]) == {"ffpp", "local/heldout"}
    ffpp = next(e for e in report["evaluations"] if e["model"] == "local" and e["clip_set"] == "ffpp")
    assert set(ffpp["per_manipulation"]) == {"Deepfakes", "FaceSwap"}
    assert ffpp["overall"]["video"]["count"] == 6  # the test pair: 2 originals + 2 fakes of each method
    markdown = (out / "report.md").read_text()
    assert "Cross-dataset" in markdown and "| local-int8 |" in markdown
    verdicts = ffpp["verdicts"]  # the exported model's calibrated band gives served verdicts per class
    assert sum(verdicts["real"].values()) == 2 and sum(verdicts["fake"].values()) == 4
    assert "Served verdicts" in markdown


def test_calibrate_rewrites_the_thresholds_for_a_new_target(reference_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.onnx"
    shutil.copy(reference_run / "exports" / "model.fp32.onnx", copy)
    before = read_metadata(copy)
    assert main(["calibrate", "--model", str(copy), "--clips", str(reference_run / "clips" / "val.npz"),
                 "--target-fpr", "0.3", "--uncertain-fnr", "0.3"]) == 0  # fmt: skip
    after = read_metadata(copy)
    assert after.extra["calibration_target_fpr"] == "0.3"
    assert after.trained and after.input_size == before.input_size
    # a looser FPR target never raises the bar (1e-6: the export calibrated on torch scores, this on ONNX's)
    assert after.fake_threshold <= before.fake_threshold + 1e-6
    if before.image_fake_threshold is not None:  # photos are calibrated apart, by the same rule
        assert after.image_fake_threshold is not None
        assert after.image_fake_threshold <= before.image_fake_threshold + 1e-6


def _frame_level_fakes(media_dir: Path, folder: Path, names: tuple[str, ...]) -> None:
    """New fakes the way a new generator would deliver them: whole photos with self-blended faces."""
    from deepfake_core.faces.analyzer import FaceAnalyzer
    from deepfake_core.media.frames import DecodedFrame

    analyzer = FaceAnalyzer(CoreSettings(), 64, workers=1)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in names:
        image = cv2.imread(str(media_dir / name))
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        for observation in analyzer.observe(DecodedFrame(0, 0.0, image)):
            rgb, _ = random_self_blend(rgb, observation.landmarks, rng, strength=2.0)
        cv2.imwrite(str(folder / f"fake_{Path(name).stem}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_retrain_promotes_only_a_model_that_is_not_worse(reference_run: Path, workspace: Path, media_dir: Path) -> None:
    new_fakes = workspace / "new_fakes"
    _frame_level_fakes(media_dir, new_fakes / "generator-x", ("sample2.jpg", "sample3.jpg", "insightface_t1.jpg"))
    before = (reference_run / "model.pt").read_bytes()
    arguments = ["retrain", "--run", str(reference_run), "--new-fakes", str(new_fakes), "--steps", "3",
                 "--precisions", "fp32", "--repository", str(workspace / "repo")]  # fmt: skip
    assert main(arguments) == 0  # with MLflow: the workspace's SQLite store holds the registry
    (record,) = (reference_run / "retrain").glob("*/retrain.json")
    result = json.loads(record.read_text())
    assert result["new_fake_files"] == 3 and result["replaced_items"] > 0
    assert result["old_val_auc"] is not None and result["new_val_auc"] is not None
    assert result["promoted"] == (result["new_val_auc"] >= result["old_val_auc"])
    version_two = workspace / "repo" / "gpu" / "deepfake_detector" / "2" / "model.onnx"
    # The registry: the run's model became version 1 (production), the candidate version 2 (staging), and
    # production moves to the candidate only when the gate passed.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace}/mlruns/mlflow.db")
    candidate = client.get_model_version_by_alias("deepfake-detector", "staging")
    assert str(candidate.version) == result["registered_version"] == "2"
    assert candidate.tags["gate"] == ("passed" if result["promoted"] else "failed")
    if result["promoted"]:
        assert result["installed_version"] == 2 and version_two.is_file()
        assert read_metadata(version_two).version == "2"
        assert (reference_run / "model.pt").read_bytes() != before
        assert result["production_version"] == "2" and candidate.tags["replaced_production_version"] == "1"
    else:
        assert result["installed_version"] is None and not version_two.exists()
        assert (reference_run / "model.pt").read_bytes() == before
        assert result["production_version"] == "1"


def test_train_on_a_dataset_tree_uses_its_fakes_and_splits(workspace: Path, ffpp_root: Path) -> None:
    out = workspace / "ffpp-run"
    arguments = ["train", "--dataset", f"ffpp={ffpp_root}", "--out", str(out), "--train-sampling", "uniform:4",
                 "--precisions", "fp32", "--no-mlflow",
                 *_sets([*[v for v in TOY if not v.startswith(("sequence_length", "phase2_sequences"))],
                        "sequence_length=4", "phase2_sequences=8", "eval_frames_per_video=4"])]  # fmt: skip
    assert main(arguments) == 0
    summary = json.loads((out / "summary.json").read_text())
    held_out = summary["held_out"]
    assert held_out["clip_set"] == "test" and set(held_out["per_manipulation"]) == {"Deepfakes", "FaceSwap"}
    assert held_out["overall"]["video"]["real"] == 2 and held_out["overall"]["video"]["fake"] == 4
    data = json.loads((out / "data.json").read_text())
    assert data["summary"]["splits"]["train"]["files"] == 6 and data["summary"]["val_clips"] == 6
    assert read_metadata(out / "exports" / "model.fp32.onnx").trained


def test_export_recalibrates_and_reexports_a_finished_run(reference_run: Path) -> None:
    target = reference_run / "exports" / "model.fp32.onnx"
    before = target.stat().st_mtime_ns
    assert main(["export", "--run", str(reference_run), "--precisions", "fp32", "--serve", "fp32"]) == 0
    after = read_metadata(target)
    assert target.stat().st_mtime_ns != before
    assert after.trained and after.version == "0"  # exported, not installed: no repository version
    assert 0 < after.uncertain_low <= after.fake_threshold < 1


def test_search_runs_its_trials_and_reports_the_best(workspace: Path, media_dir: Path) -> None:
    out = workspace / "search"
    arguments = ["search", "--local-media", str(media_dir), "--out", str(out), "--trials", "2", "--steps", "2",
                 "--train-sampling", "uniform:40", "--no-mlflow",
                 *_sets(["input_size=64", "sequence_length=16"])]  # fmt: skip
    assert main(arguments) == 0
    result = json.loads((out / "search.json").read_text())
    assert len(result["trials"]) == 2
    assert set(result["best_params"]) == {"learning_rate", "dropout", "batch_size"}
    assert 0.0 <= result["best_value"] <= 1.0
    assert result["best_value"] == max(t["value"] for t in result["trials"] if t["value"] is not None)


def test_cache_command_passes_adapter_options(workspace: Path, dfdc_root: Path, capsys) -> None:
    arguments = ["cache", "--dataset", f"dfdc={dfdc_root}", "--dataset-option", "dfdc.val_parts=[1]", "--size", "64",
                 "--sampling", "uniform:2", "--workers", "1"]  # fmt: skip
    assert main(arguments) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["ok"] == 8 and printed["failed"] == 0
    index = json.loads((Path(printed["cache"]) / "index.json").read_text())
    splits = {key: entry["record"]["split"] for key, entry in index["entries"].items() if key.startswith("dfdc")}
    assert {s for k, s in splits.items() if "part_1" in k} == {"val"}
    assert {s for k, s in splits.items() if "part_0" in k} == {"train"}


def test_cli_reports_a_bad_dataset_folder_as_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "--dataset", f"ffpp={tmp_path}", "--size", "64"]) == 2
    assert "split file" in capsys.readouterr().err
