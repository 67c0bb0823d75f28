"""The learning curve against the number of training people: is the reference model data-limited?

The step curve of the shipped run flattens at step 600 (MODEL_CARD.md), so more steps buy nothing; what
the curve against people says is whether more people would. Each point trains the recipe on `k` of the
training split's identities (a random subset, nested within a seed: the first `k` of one permutation) and
scores the same validation and held-out people as the shipped model. Run-to-run spread at one size is as
large as the effect sought (0.07 between two runs of one recipe), so every size is trained under several
seeds, and the seed moves the training seed too (not only the subset).

Scores are the CNN branch's: phase 2 costs a third of a run and the question is about the faces seen, so
the points run phase 1 only (`--set phase2_steps=...` turns it back on; the video AUC then fuses both).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deepfake_training.config import TrainingConfig
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import PoolItem
from deepfake_training.datasets.records import MediaRecord
from deepfake_training.evaluation.metrics import area_under_roc
from deepfake_training.evaluation.scorer import TorchScorer, score_clips
from deepfake_training.workflows.run import RunLayout, frame_validator, prepare_data, train_model

log = logging.getLogger(__name__)


def training_people(records: Sequence[MediaRecord]) -> list[str]:
    """The training split's identities, sorted (a fixed order for the permutations)."""
    return sorted({r.identity for r in records if r.split == "train"})


def choose_people(people: Sequence[str], size: int, seed: int) -> list[str]:
    """The first `size` people of seed `seed`'s permutation: subsets of one seed are nested (3 within 6 within 13)."""
    if not 1 <= size <= len(people):
        raise ValueError(f"a curve point needs 1 to {len(people)} training people, got {size}")
    order = np.random.default_rng((seed, 7)).permutation(len(people))
    return sorted(people[k] for k in order[:size])


def subset_records(records: Sequence[MediaRecord], keep: Sequence[str]) -> list[MediaRecord]:
    """Training records of the `keep` people only; validation and test records unchanged."""
    kept = set(keep)
    return [r for r in records if r.split != "train" or r.identity in kept]


@dataclass
class CurvePoint:
    people: int
    seed: int
    identities: list[str]
    train_faces: int
    val_frame_auc: float | None
    test_frame_auc: float | None
    test_video_auc: float | None
    seconds: float


def run_point(
    records: Sequence[MediaRecord], cache: FaceCache, config: TrainingConfig, size: int, seed: int, out: Path
) -> CurvePoint:
    """Train on `size` people chosen by `seed` and score validation and test; saved, and reused on a rerun."""
    layout = RunLayout(out / f"people{size:02d}-seed{seed}").ensure()
    saved = layout.root / "point.json"
    if saved.is_file():
        return CurvePoint(**json.loads(saved.read_text()))
    started = time.perf_counter()
    keep = choose_people(training_people(records), size, seed)
    point_config = config.with_overrides({"seed": config.seed + seed})
    point_config.save(layout.config)
    data = prepare_data(subset_records(records, keep), cache, point_config, layout,
                        point_config.sequence_length, point_config.sequence_length // 2)  # fmt: skip
    model = train_model(data, point_config, layout, validate=False,
                        pool_transform=lambda pool: at_least(pool, point_config.batch_size)).model  # fmt: skip
    val = frame_validator(data.val_clips, point_config, max_frames=10**9)(model)["frame_auc"]
    test_frame = test_video = None
    if data.test_clips is not None:
        clips = data.test_clips
        scores = score_clips(clips, TorchScorer(model), point_config.sequence_length)
        test_frame = area_under_roc(clips.frame_labels(), scores.frame_level())
        fused = scores.video_scores(point_config.cnn_weight, point_config.lstm_weight if point_config.phase2_steps
                                    else 0.0, clips.is_image)  # fmt: skip
        video = ~clips.is_image
        test_video = area_under_roc(clips.labels[video], fused[video])
    point = CurvePoint(
        people=size,
        seed=seed,
        identities=keep,
        train_faces=int(sum(len(t) for t in data.train_tracks)),
        val_frame_auc=val,
        test_frame_auc=test_frame,
        test_video_auc=test_video,
        seconds=round(time.perf_counter() - started, 1),
    )
    saved.write_text(json.dumps(asdict(point), indent=1))
    log.info("people curve point %d people, seed %d: %s", size, seed, asdict(point))
    return point


def at_least(pool: list[PoolItem], size: int) -> list[PoolItem]:
    """The pool repeated up to `size` items: a few people with one photo each are fewer faces than one batch.

    Each item is a face and a recipe (real, SBI, swap) whose augmentation is drawn per use, so a repeat is
    another sample of that face, as every epoch of a larger pool is.
    """
    if not pool or len(pool) >= size:
        return pool
    return [pool[k % len(pool)] for k in range(size)]


def people_curve(
    records: Sequence[MediaRecord],
    cache: FaceCache,
    config: TrainingConfig,
    out: Path,
    sizes: Sequence[int],
    seeds: int,
) -> dict[str, object]:
    """Every (size, seed) point (resumable), then the summary in `out`/summary.json and report.md.

    Seed by seed, every size within a seed: a run cut short still holds whole curves, one per finished seed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    points = [run_point(records, cache, config, size, seed, out) for seed in range(seeds) for size in sizes]
    summary = summarise(points, config, len(training_people(records)))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(render_markdown(summary))
    return summary


def summarise(points: Sequence[CurvePoint], config: TrainingConfig, available: int) -> dict[str, object]:
    """Mean, min and max of each score per number of people (the spread is the seeds', subset and training)."""
    rows = []
    for size in sorted({p.people for p in points}):
        at = [p for p in points if p.people == size]
        row: dict[str, object] = {"people": size, "runs": len(at),
                                  "train_faces": [p.train_faces for p in at]}  # fmt: skip
        for metric in ("val_frame_auc", "test_frame_auc", "test_video_auc"):
            values = [getattr(p, metric) for p in at if getattr(p, metric) is not None]
            row[metric] = _stats(values)
        rows.append(row)
    return {
        "available_people": available,
        "rows": rows,
        "points": [asdict(p) for p in points],
        "recipe": {k: getattr(config, k) for k in ("phase1_steps", "phase2_steps", "input_size", "seed")},
    }


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def render_markdown(summary: dict[str, object]) -> str:
    recipe = summary["recipe"]
    lines = [
        "# Learning curve against the number of training people",
        "",
        f"{summary['available_people']} training people available; recipe {recipe}. Each cell: mean (min-max) "
        "over the seeds.",
        "",
        "| people | runs | training faces | val frame AUC | held-out frame AUC | held-out video AUC |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:  # type: ignore[union-attr]
        faces = "/".join(str(f) for f in row["train_faces"])
        cells = [_cell(row[m]) for m in ("val_frame_auc", "test_frame_auc", "test_video_auc")]
        lines.append(f"| {row['people']} | {row['runs']} | {faces} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['mean']:.3f} ({stats['min']:.3f}-{stats['max']:.3f})"
