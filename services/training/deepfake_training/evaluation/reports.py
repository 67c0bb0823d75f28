"""Evaluation reports: JSON (for machines and MLflow), Markdown (for people), ROC curves (PNG), and the
cross-dataset table in DeepfakeBench's form (rows: training data, columns: test data, cells: AUC).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from deepfake_training.evaluation.metrics import BinaryMetrics
from deepfake_training.evaluation.scorer import Evaluation

METRIC_COLUMNS = ("auc", "accuracy", "precision", "recall", "f1", "fpr", "eer", "log_loss")


def write_report(evaluations: Sequence[Evaluation], directory: Path, title: str = "Evaluation") -> dict[str, Path]:
    """Write report.json, report.md and roc.png for a set of evaluations; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "report.json", "markdown": directory / "report.md", "roc": directory / "roc.png"}
    payload = {
        "title": title,
        "evaluations": [e.to_dict() for e in evaluations],
        "cross_dataset": cross_dataset_matrix(evaluations),
        "benchmark": benchmark_rows(evaluations),
    }
    paths["json"].write_text(json.dumps(payload, indent=2))
    paths["markdown"].write_text(markdown_report(evaluations, title))
    plot_roc(evaluations, paths["roc"])
    return paths


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def metrics_row(label: str, level: str, metrics: BinaryMetrics) -> str:
    cells = [label, level, f"{metrics.real}/{metrics.fake}"] + [_fmt(getattr(metrics, c)) for c in METRIC_COLUMNS]
    return "| " + " | ".join(cells) + " |"


def metrics_table(evaluation: Evaluation) -> list[str]:
    header = (
        "| group | level | real/fake | "
        + " | ".join(c.upper() if c != "log_loss" else "log loss" for c in METRIC_COLUMNS)
        + " |"
    )
    lines = [header, "|" + "---|" * (3 + len(METRIC_COLUMNS))]
    groups = [("all", evaluation.overall)]
    groups += [(f"dataset {name}", g) for name, g in evaluation.per_dataset.items()]
    groups += [(f"manipulation {name}", g) for name, g in evaluation.per_manipulation.items()]
    for label, group in groups:
        lines.append(metrics_row(label, "video", group.video))
        lines.append(metrics_row(label, "frame", group.frame))
    return lines


def verdict_table(evaluation: Evaluation) -> list[str]:
    """Video clips per true class and served verdict, at the calibrated thresholds."""
    if not evaluation.verdicts:
        return []
    lines = [
        f"Served verdicts (video clips; fake >= {evaluation.threshold:.4f}, "
        f"uncertain >= {evaluation.uncertain_low:.4f}):",
        "",
        "| true class | real | uncertain | fake |",
        "|---|---|---|---|",
    ]
    for truth, counts in evaluation.verdicts.items():
        lines.append(f"| {truth} | {counts['real']} | {counts['uncertain']} | {counts['fake']} |")
    return [*lines, ""]


def markdown_report(evaluations: Sequence[Evaluation], title: str) -> str:
    lines = [f"# {title}", ""]
    lines += [
        "Label 1 = fake = positive. Video level: one score per clip (fused CNN/BiLSTM score, as served); "
        "frame level: each frame's CNN P(fake). Thresholded metrics use the threshold shown.",
        "",
    ]
    matrix = cross_dataset_matrix(evaluations)
    if len(matrix["rows"]) > 1 or len(matrix["columns"]) > 1:
        lines += ["## Cross-dataset video-level AUC", "", *cross_dataset_markdown(matrix), ""]
    lines += ["## Cross-dataset benchmark (DeepfakeBench's columns)", "", *benchmark_markdown(evaluations), ""]
    for evaluation in evaluations:
        lines += [
            f"## {evaluation.model} on {evaluation.clip_set}",
            "",
            f"Threshold {evaluation.threshold:.4f}; {evaluation.frames} frames scored in {evaluation.seconds:.1f} s.",
            "",
            *metrics_table(evaluation),
            "",
            *verdict_table(evaluation),
        ]
    return "\n".join(lines)


def cross_dataset_matrix(evaluations: Sequence[Evaluation]) -> dict[str, object]:
    """{rows: models, columns: test datasets, video_auc[row][col], frame_auc[row][col]}."""
    rows = list(dict.fromkeys(e.model for e in evaluations))
    columns = list(dict.fromkeys(_column(e, name) for e in evaluations for name in e.per_dataset))
    video: dict[str, dict[str, float | None]] = {r: {} for r in rows}
    frame: dict[str, dict[str, float | None]] = {r: {} for r in rows}
    for e in evaluations:
        for name, group in e.per_dataset.items():
            video[e.model][_column(e, name)] = group.video.auc
            frame[e.model][_column(e, name)] = group.frame.auc
    return {"rows": rows, "columns": columns, "video_auc": video, "frame_auc": frame}


def _column(evaluation: Evaluation, dataset: str) -> str:
    """A test column: the dataset, and the clip set when that is not just the dataset (e.g. local/test)."""
    return dataset if evaluation.clip_set == dataset else f"{dataset}/{evaluation.clip_set}"


def cross_dataset_markdown(matrix: Mapping[str, object]) -> list[str]:
    rows, columns = matrix["rows"], matrix["columns"]
    video, frame = matrix["video_auc"], matrix["frame_auc"]
    lines = ["| trained on \\ tested on | " + " | ".join(columns) + " | mean |", "|---|" + "---|" * (len(columns) + 1)]
    for row in rows:
        cells, values = [], []
        for column in columns:
            v, f = video[row].get(column), frame[row].get(column)
            cells.append(f"{_fmt(v)} ({_fmt(f)})")
            if v is not None:
                values.append(v)
        mean = sum(values) / len(values) if values else None
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {_fmt(mean)} |")
    lines += ["", "Cells: video-level AUC (frame-level AUC)."]
    return lines


BENCHMARK_COLUMNS = ("video_auc", "frame_auc", "video_eer", "frame_eer", "video_log_loss", "frame_log_loss")


def benchmark_rows(evaluations: Sequence[Evaluation]) -> list[dict[str, object]]:
    """One row per (trained on, tested on) pair as DeepfakeBench tabulates them: AUC, EER and log loss at the
    video and the frame level, so numbers line up with published cross-dataset tables (FF++ -> CDF, DFDC)."""
    rows = []
    for evaluation in evaluations:
        for dataset, group in evaluation.per_dataset.items():
            rows.append(
                {
                    "trained_on": evaluation.model,
                    "tested_on": _column(evaluation, dataset),
                    "videos": group.video.count,
                    "frames": group.frame.count,
                    "video_auc": group.video.auc,
                    "frame_auc": group.frame.auc,
                    "video_eer": group.video.eer,
                    "frame_eer": group.frame.eer,
                    "video_log_loss": group.video.log_loss,
                    "frame_log_loss": group.frame.log_loss,
                }
            )
    return rows


def benchmark_markdown(evaluations: Sequence[Evaluation]) -> list[str]:
    header = "| trained on | tested on | videos | frames | " + " | ".join(
        c.replace("_", " ").replace("log loss", "log-loss").upper() for c in BENCHMARK_COLUMNS
    )
    lines = [header + " |", "|---|---|---|---|" + "---|" * len(BENCHMARK_COLUMNS)]
    for row in benchmark_rows(evaluations):
        cells = [str(row["trained_on"]), str(row["tested_on"]), str(row["videos"]), str(row["frames"])]
        cells += [_fmt(row[c]) for c in BENCHMARK_COLUMNS]  # type: ignore[arg-type]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_roc(evaluations: Sequence[Evaluation], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for axis, level in zip(axes, ("video", "frame"), strict=True):
        for e in evaluations:
            points = e.roc.get(level, {})
            if points.get("fpr"):
                auc = getattr(e.overall, level).auc
                axis.plot(points["fpr"], points["tpr"], label=f"{e.model} / {e.clip_set} (AUC {_fmt(auc)})")
        axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
        axis.set_title(f"{level}-level ROC")
        axis.set_xlabel("false positive rate")
        axis.set_ylabel("true positive rate")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.01)
        axis.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
