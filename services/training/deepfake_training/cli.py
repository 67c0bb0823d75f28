"""`deepfake-train`: face caching, training, evaluation, calibration, export, continual learning, search.

  deepfake-train reference --out var/runs/reference            the reference model (`make model`)
  deepfake-train cache     --dataset ffpp=/data/FF++ --size 224
  deepfake-train cache     --dataset dfdc=/data/DFDC --size 224 --shard 3/16   (one shard; then:)
  deepfake-train cache-merge --size 224
  deepfake-train shards    --dataset dfdc=/data/DFDC --size 224 --out /data/shards/dfdc-train \
                           [--upload s3://training/shards/dfdc-train]   (train --shards reads either)
  deepfake-train train     --dataset ffpp=/data/FF++ --out var/runs/ffpp --install --init imagenet=rx50.pth
  torchrun --nproc_per_node 8 -m deepfake_training.cli train ...   (data parallel; rank 0 exports)
  deepfake-train evaluate  --model ffpp=var/runs/ffpp/exports/model.fp32.onnx \
                           --dataset celebdf=/data/Celeb-DF-v2 --out reports/x
  deepfake-train calibrate --model model.onnx --clips var/runs/ffpp/clips/val.npz
  deepfake-train export    --run var/runs/ffpp --install
  deepfake-train retrain   --run var/runs/reference --new-fakes /data/new_fakes
  deepfake-train search    --local-media --out var/runs/search --trials 6
  deepfake-train search    ... --trials 32 --storage sqlite:///var/search.db   (run it N times in parallel)
Datasets are KIND=ROOT with KIND one of ffpp, celebdf, dfdc, dfdcp (the DFDC preview), local (the offline media folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from deepfake_core.errors import DetectionError
from deepfake_core.settings import CoreSettings

from deepfake_training.config import TrainingConfig, TrainingSettings, parse_overrides
from deepfake_training.datasets import DatasetLayoutError, MediaRecord, load_records
from deepfake_training.datasets.records import summarize

log = logging.getLogger("deepfake_training")

EXIT_USAGE = 2
DATASET_OPTION_HELP = (
    "adapter option, e.g. ffpp.compression=c40, ffpp.manipulations=[Deepfakes,FaceSwap], "
    "celebdf.val_fraction=0.1, dfdc.val_parts=[45,46], dfdc.test_parts=[47,48,49]"
)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("deepfake_training").setLevel(logging.DEBUG if verbose else logging.INFO)


def _dataset_specs(values: Sequence[str] | None) -> list[tuple[str, Path]]:
    specs = []
    for value in values or ():
        kind, sep, root = value.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--dataset {value!r}: expected KIND=ROOT")
        specs.append((kind.strip(), Path(root).expanduser()))
    return specs


def _dataset_options(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """`--dataset-option KIND.NAME=VALUE` (YAML value) -> {KIND: {NAME: VALUE}}, passed to the adapter."""
    options: dict[str, dict[str, object]] = {}
    for kind_name, value in parse_overrides(getattr(args, "dataset_option", None) or []).items():
        kind, dot, name = kind_name.partition(".")
        if not dot:
            raise argparse.ArgumentTypeError(f"--dataset-option {kind_name!r}: expected KIND.NAME=VALUE")
        options.setdefault(kind, {})[name] = value
    return options


def _records(args: argparse.Namespace) -> list[MediaRecord]:
    records: list[MediaRecord] = []
    specs = _dataset_specs(getattr(args, "dataset", None))
    if getattr(args, "local_media", None):
        specs.append(("local", Path(args.local_media)))
    if not specs:
        raise argparse.ArgumentTypeError("name at least one --dataset KIND=ROOT (or --local-media)")
    for kind, root in specs:
        found = load_records(kind, root, **_dataset_options(args).get(kind, {}))
        log.info("%s at %s: %s", kind, root, summarize(found))
        records.extend(found)
    return records


def _config(args: argparse.Namespace) -> TrainingConfig:
    config = TrainingConfig.load(args.config) if getattr(args, "config", None) else TrainingConfig()
    return config.with_overrides(parse_overrides(getattr(args, "set", None) or []))


def _add_common(parser: argparse.ArgumentParser, data: bool = True, recipe: bool = True) -> None:
    if data:
        parser.add_argument("--dataset", action="append", metavar="KIND=ROOT",
                            help="ffpp, celebdf, dfdc, dfdcp (the DFDC preview) or local")  # fmt: skip
        parser.add_argument("--dataset-option", action="append", metavar="KIND.NAME=VALUE", help=DATASET_OPTION_HELP)
        parser.add_argument("--local-media", type=Path, nargs="?", const=Path(".cache/media"), default=None,
                            help="the offline faces (default folder .cache/media)")  # fmt: skip
    if recipe:
        parser.add_argument("--config", type=Path, help="YAML/JSON file with TrainingConfig fields")
        parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one TrainingConfig field")
    parser.add_argument("--no-mlflow", action="store_true", help="do not track the run in MLflow")
    parser.add_argument("--verbose", action="store_true")


# --- commands -------------------------------------------------------------------------------------------


def cmd_cache(args: argparse.Namespace) -> int:
    from deepfake_training.workflows.run import build_cache

    records = _records(args)
    settings = TrainingSettings()
    if args.shard:
        return _cache_shard(args, records, settings)
    cache = build_cache(records, args.cache_root or settings.cache_root, args.size, CoreSettings(), args.sampling,
                        args.workers or settings.cache_workers)  # fmt: skip
    entries = cache.entries()
    statuses = {
        s: sum(1 for r in records if entries.get(r.key) and entries[r.key].status == s)
        for s in ("ok", "no_face", "failed")
    }
    print(json.dumps({"cache": str(cache.directory), **statuses}))
    return 0 if statuses["failed"] == 0 else 1


def _cache_shard(args: argparse.Namespace, records: list[MediaRecord], settings: TrainingSettings) -> int:
    """One shard of a sharded cache build: its own append-only manifest, no index (see `cache-merge`)."""
    from deepfake_training.data.face_cache import FaceCache
    from deepfake_training.data.face_shards import build_shard, parse_shard

    index, count = parse_shard(args.shard)
    core = CoreSettings()
    cache = FaceCache(args.cache_root or settings.cache_root, args.size, core.face_margin)
    report = build_shard(cache, records, core, args.sampling, (index, count), args.workers or settings.cache_workers,
                         retry_failed=args.retry_failed)  # fmt: skip
    counts = {"built": report.built, "skipped": report.skipped, "no_face": report.no_face, "failed": report.failed}
    print(
        json.dumps(
            {"cache": str(cache.directory), "shard": f"{index}/{count}", **{k: len(v) for k, v in counts.items()}}
        )
    )
    return 0


def cmd_cache_merge(args: argparse.Namespace) -> int:
    from deepfake_training.data.face_cache import FaceCache
    from deepfake_training.data.face_shards import merge_shards

    cache = FaceCache(args.cache_root or TrainingSettings().cache_root, args.size, CoreSettings().face_margin)
    counts = merge_shards(cache)
    print(json.dumps({"cache": str(cache.directory), "index": str(cache.index_path), **counts}))
    return 0


def cmd_shards(args: argparse.Namespace) -> int:
    """Write a split's cached faces as streaming tar shards (the cache must hold them: run cache first)."""
    from deepfake_training.data.face_cache import FaceCache
    from deepfake_training.data.streaming import shard_paths, upload_shards, write_face_shards

    records = [r for r in _records(args) if r.split in args.split]
    cache = FaceCache(args.cache_root or TrainingSettings().cache_root, args.size, CoreSettings().face_margin)
    if not cache.ready(records):
        raise FileNotFoundError(f"the face cache {cache.directory} holds none of these records: run cache first")
    index = write_face_shards(cache, records, args.out, args.samples_per_shard, args.format, args.max_frames)
    uploaded = upload_shards(args.out, args.upload) if args.upload else 0
    print(json.dumps({"index": str(index), "shards": len(shard_paths(args.out)), "records": len(records),
                      "uploaded_to": args.upload, "uploaded_files": uploaded}))  # fmt: skip
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train, calibrate, export; under torchrun every rank trains phase 1 and rank 0 alone does the rest."""
    from deepfake_training.learning.checkpoints import parse_init
    from deepfake_training.learning.distributed import barrier, init_distributed, shutdown

    imagenet = parse_init(args.init) if args.init else None
    settings = TrainingSettings()
    context = init_distributed(timeout_minutes=settings.distributed_timeout_minutes)
    try:
        return _train(args, settings, imagenet, context.is_main, barrier)
    finally:
        shutdown()


def _train(args: argparse.Namespace, settings: TrainingSettings, imagenet: Path | None, is_main: bool,
           barrier: Callable[[], None]) -> int:  # fmt: skip
    from deepfake_training.data.face_cache import FaceCache
    from deepfake_training.synthesis.swap import assert_identity_disjoint
    from deepfake_training.tracking import Tracker
    from deepfake_training.workflows.run import (
        RunLayout,
        build_cache,
        calibrate_export_install,
        evaluate_held_out,
        prepare_data,
        serving_sampling,
        train_model,
    )

    config = _config(args)
    layout = RunLayout(args.out)
    if is_main:
        layout.ensure()
        if layout.config.is_file() and not args.fresh:
            saved = TrainingConfig.load(layout.config)
            if saved != config:
                log.warning("resuming %s with its saved config; use --fresh to start over with a new one", layout.root)
                config = saved
        config.save(layout.config)
    barrier()
    if not is_main:
        config = TrainingConfig.load(layout.config)  # rank 0's recipe, resumed or fresh
    records = _records(args)
    # Before any face is cached: a person on both sides of a split should cost seconds, not a cache build.
    assert_identity_disjoint([r.identity for r in records], [r.split for r in records])
    evaluation_sampling = f"uniform:{config.eval_frames_per_video}"
    core = CoreSettings()
    cache = FaceCache(settings.cache_root, config.input_size, core.face_margin)
    # Phase 1 streamed from shards: the training tracks in memory serve phase 2's clips alone.
    bounded = config.phase2_sequences if args.shards else None
    if is_main:
        cache = build_cache(records, settings.cache_root, config.input_size, core,
                            lambda r: args.train_sampling if r.split == "train" else evaluation_sampling,
                            settings.cache_workers)  # fmt: skip
        data = prepare_data(records, cache, config, layout, max_train_frames_per_video=args.max_train_frames,
                            max_train_videos=bounded)  # fmt: skip
    barrier()
    streamed = {"imagenet_weights": imagenet, "phase1_shards": args.shards}
    if not is_main:
        # reads the index and clips rank 0 wrote
        data = prepare_data(records, cache, config, layout, max_train_frames_per_video=args.max_train_frames,
                            max_train_videos=bounded)  # fmt: skip
        train_model(data, config, layout, None, resume=not args.fresh, **streamed)
        return 0
    tracker = Tracker(
        settings.mlflow_experiment, layout.root.name, settings.mlflow_tracking_uri, enabled=not args.no_mlflow
    )
    status = "FAILED"
    try:
        tracker.log_params(config.model_dump())
        tracker.log_dict(data.describe(), "data.json")
        outcome = train_model(data, config, layout, tracker, resume=not args.fresh, **streamed)
        sampling, sequence_fps = serving_sampling(args.train_sampling)
        exports = calibrate_export_install(outcome.model, data, config, layout, tuple(args.precisions.split(",")),
                                           args.repository if args.install else None, tracker=tracker,
                                           sampling=sampling, sequence_fps=sequence_fps)  # fmt: skip
        held_out = evaluate_held_out(exports, data, config, layout, tracker)
        summary = {"exports": exports.to_dict(), "held_out": held_out.to_dict() if held_out else None}
        layout.summary.write_text(json.dumps(summary, indent=2))
        tracker.log_artifact(layout.summary)
        tracker.log_artifact(Path(exports.serving_file), "model")
        status = "FINISHED"
    finally:
        tracker.end(status)
    result = {
        "run": str(layout.root),
        "serving_file": exports.serving_file,
        "installed_version": exports.installed_version,
        "val_auc": exports.val_auc.get("fp32"),
        "calibration": exports.calibration.to_dict(),
    }
    print(json.dumps(result, indent=2))
    return 0


def _scorer_for(path: Path) -> tuple[object, int, int, float, float, float, float | None]:
    """(scorer, input size, sequence length, threshold, cnn weight, lstm weight, uncertain_low) of a model.

    An .onnx file brings its calibrated thresholds and fusion weights; a .pt checkpoint has no calibration.
    """
    from deepfake_training.evaluation.scorer import OnnxScorer, TorchScorer
    from deepfake_training.learning.checkpoints import load_model
    from deepfake_training.learning.runtime import export_check_providers

    if path.suffix == ".onnx":
        scorer = OnnxScorer(path, providers=export_check_providers())
        m = scorer.metadata
        return scorer, m.input_size, m.sequence_length, m.fake_threshold, m.cnn_weight, m.lstm_weight, m.uncertain_low
    model, state = load_model(path)
    recipe = state.get("training_config", {})
    return (TorchScorer(model), model.config.input_size, model.config.sequence_length, 0.5,
            recipe.get("cnn_weight", 0.6), recipe.get("lstm_weight", 0.4), None)  # fmt: skip


def cmd_evaluate(args: argparse.Namespace) -> int:
    from deepfake_training.data.samples import ClipSet, dataset_clip_set, load_tracks
    from deepfake_training.evaluation.reports import write_report
    from deepfake_training.evaluation.scorer import evaluate_model, summary_line
    from deepfake_training.workflows.run import build_cache

    settings = TrainingSettings()
    models = []
    for spec in args.model:
        name, sep, path = spec.partition("=")
        models.append((name if sep else Path(spec).stem, Path(path if sep else spec)))
    evaluations = []
    for name, path in models:
        scorer, size, sequence_length, threshold, cnn, lstm, uncertain_low = _scorer_for(path)
        if args.threshold is not None:
            threshold, uncertain_low = args.threshold, None
        clip_sets = []
        for spec in args.clips or []:
            clip_name, _, clip_path = spec.partition("=")
            clips = ClipSet.load(Path(clip_path or clip_name))
            clips.name = clip_name if clip_path else clips.name
            clip_sets.append(clips)
        for kind, root in _dataset_specs(args.dataset):
            options = _dataset_options(args).get(kind, {})
            records = [r for r in load_records(kind, root, **options) if r.split in args.split]
            cache = build_cache(records, settings.cache_root, size, CoreSettings(), f"uniform:{args.frames_per_video}",
                                settings.cache_workers)  # fmt: skip
            tracks = load_tracks(cache, cache.ready(records))
            clip_sets.append(dataset_clip_set(kind, tracks, size, args.frames_per_video))
        for clips in clip_sets:
            if clips.input_size != size:
                raise ValueError(f"clips {clips.name} are {clips.input_size} px; model {name} takes {size} px")
            evaluation = evaluate_model(name, clips, scorer, sequence_length, threshold, cnn, lstm, uncertain_low)
            print(summary_line(evaluation))
            evaluations.append(evaluation)
    if not evaluations:
        raise argparse.ArgumentTypeError("nothing to evaluate: give --dataset KIND=ROOT or --clips FILE")
    paths = write_report(evaluations, args.out, args.title)
    print(Path(paths["markdown"]).read_text())
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from deepfake_core.model.export import read_metadata, write_metadata

    from deepfake_training.data.samples import ClipSet
    from deepfake_training.evaluation.scorer import OnnxScorer, score_clips
    from deepfake_training.learning.runtime import export_check_providers
    from deepfake_training.workflows.run import calibrate_by_media

    clips = ClipSet.load(args.clips)
    scorer = OnnxScorer(args.model, providers=export_check_providers())
    m = scorer.metadata
    scores = score_clips(clips, scorer, m.sequence_length)
    target = TrainingConfig(target_fpr=args.target_fpr, uncertain_fnr=args.uncertain_fnr)
    video, image = calibrate_by_media(clips, scores.video_scores(m.cnn_weight, m.lstm_weight, clips.is_image), target)
    metadata = read_metadata(args.model)
    write_metadata(args.model, replace(metadata, fake_threshold=video.fake_threshold, uncertain_low=video.uncertain_low,
                                       image_fake_threshold=image.fake_threshold if image else None,
                                       image_uncertain_low=image.uncertain_low if image else None,
                                       extra={**metadata.extra, "calibration_target_fpr": repr(args.target_fpr),
                                              "calibration_fpr": f"{video.achieved_fpr:.4f}"}))  # fmt: skip
    print(json.dumps({"videos": video.to_dict(), "photos": image.to_dict() if image else None}, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from deepfake_training.data.face_cache import FaceCache
    from deepfake_training.workflows.run import (
        RunLayout,
        calibrate_export_install,
        load_run_model,
        prepare_data,
        records_of_run,
        run_sampling,
    )

    layout = RunLayout(args.run)
    config = TrainingConfig.load(layout.config)
    cache = FaceCache(TrainingSettings().cache_root, config.input_size, CoreSettings().face_margin)
    data = prepare_data(records_of_run(layout), cache, config, layout)
    sampling, sequence_fps = run_sampling(layout)
    exports = calibrate_export_install(load_run_model(layout), data, config, layout, tuple(args.precisions.split(",")),
                                       args.repository if args.install else None, serve=args.serve,
                                       sampling=sampling, sequence_fps=sequence_fps)  # fmt: skip
    print(json.dumps(exports.to_dict(), indent=2, default=str))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from deepfake_training.workflows.continual import retrain

    result = retrain(
        args.run, args.new_fakes, fraction=args.fraction, steps=args.steps,
        repository=None if args.no_install else args.repository,
        overrides=parse_overrides(args.set or []), precisions=tuple(args.precisions.split(",")),
        track=not args.no_mlflow, max_train_frames=args.max_train_frames, shards=args.shards,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from deepfake_training.workflows.run import RunLayout, build_cache, prepare_data
    from deepfake_training.workflows.search import search_hyperparameters

    settings = TrainingSettings()
    config = _config(args)
    records = _records(args)
    cache = build_cache(records, settings.cache_root, config.input_size, CoreSettings(), args.train_sampling,
                        settings.cache_workers)  # fmt: skip
    layout = RunLayout(args.out).ensure()
    data = prepare_data(records, cache, config, layout)
    result = search_hyperparameters(data, config, args.out, args.trials, args.steps, settings, track=not args.no_mlflow,
                                    storage=args.storage, study_name=args.study)  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from deepfake_training.workflows.reference import train_reference

    result = train_reference(
        args.out, media_dir=args.media_dir, repository=None if args.no_install else args.repository,
        overrides=parse_overrides(args.set or []), resume=not args.fresh, track=not args.no_mlflow,
        precisions=tuple(args.precisions.split(",")), video_sampling=args.video_sampling,
    )  # fmt: skip
    summary = result.summary
    held = summary.get("held_out") or {}
    exports = summary["exports"]
    print(json.dumps({
        "minutes": round(result.seconds / 60, 2),
        "installed_version": exports["installed_version"],
        "serving": exports["serving_precision"],
        "held_out_video_auc": held.get("overall", {}).get("video", {}).get("auc"),
        "held_out_frame_auc": held.get("overall", {}).get("frame", {}).get("auc"),
        "val_auc": exports["val_auc"],
        "drift": exports["drift"],
        "ms_per_clip": exports["inference_ms_per_clip"],
        "calibration": exports["calibration"],
    }, indent=2))  # fmt: skip
    return 0


def cmd_lopo(args: argparse.Namespace) -> int:
    from deepfake_training.workflows.reference import reference_people_cv

    summary = reference_people_cv(
        args.out,
        media_dir=args.media_dir,
        overrides=parse_overrides(args.set or []),
        people=args.people,
        folds=[fold.split("+") for fold in args.fold] if args.fold else None,
        reuse=args.reuse,
        video_sampling=args.video_sampling,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "per_person"}, indent=2))
    print((Path(args.out) / "report.md").read_text())
    return 0


def cmd_people_curve(args: argparse.Namespace) -> int:
    from deepfake_training.workflows.reference import reference_people_curve

    overrides = {"phase2_steps": 0, **parse_overrides(args.set or [])}
    summary = reference_people_curve(args.out, args.sizes, args.seeds, args.media_dir, overrides)
    print(json.dumps(summary["rows"], indent=2))
    print((Path(args.out) / "report.md").read_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from deepfake_training.workflows.reference import DEFAULT_MEDIA_DIR, DEFAULT_REPOSITORY

    parser = argparse.ArgumentParser(prog="deepfake-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("reference", help="train, calibrate, export and install the reference model")
    p.add_argument("--out", type=Path, default=TrainingSettings().runs_root / "reference")
    p.add_argument("--media-dir", type=Path, default=DEFAULT_MEDIA_DIR)
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--no-install", action="store_true")
    p.add_argument("--fresh", action="store_true", help="ignore checkpoints of an earlier, interrupted run")
    p.add_argument("--precisions", default="fp32,fp16,int8")
    p.add_argument("--video-sampling", default=None, help="faces cached per video (default fps:8)")
    _add_common(p, data=False, recipe=False)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one TrainingConfig field")
    p.set_defaults(handler=cmd_reference)

    p = commands.add_parser("cache", help="detect, align and store the faces of datasets")
    _add_common(p, recipe=False)
    p.add_argument("--size", type=int, default=224, help="aligned face side in pixels (the model's input size)")
    p.add_argument("--sampling", default="uniform:32", help="frames per video: uniform:N, fps:R or windows:K")
    p.add_argument("--workers", type=int, default=0, help="processes (default DEEPFAKE_TRAIN_CACHE_WORKERS)")
    p.add_argument("--cache-root", type=Path, default=None)
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="cache hash bucket I of N (0-based) into its own manifest; then run cache-merge")  # fmt: skip
    p.add_argument("--retry-failed", action="store_true", help="with --shard: retry videos recorded as failed")
    p.set_defaults(handler=cmd_cache)

    p = commands.add_parser("shards", help="write cached faces as streaming tar shards (WebDataset layout)")
    _add_common(p, recipe=False)
    p.add_argument("--size", type=int, default=224, help="the cache's face size")
    p.add_argument("--out", type=Path, required=True, help="folder for shard-NNNNNN.tar and shards.json")
    p.add_argument("--split", nargs="+", default=["train"])
    p.add_argument("--samples-per-shard", type=int, default=2000)
    p.add_argument("--format", choices=["png", "jpg"], default="png", help="png: lossless; jpg: ~5x smaller")
    p.add_argument("--max-frames", type=int, default=None, help="evenly spaced faces kept per video")
    p.add_argument("--cache-root", type=Path, default=None)
    p.add_argument("--upload", default=None, metavar="s3://BUCKET/PREFIX",
                   help="then copy them there (DEEPFAKE_TRAIN_S3_* settings); train --shards reads it")  # fmt: skip
    p.set_defaults(handler=cmd_shards)

    p = commands.add_parser("cache-merge", help="build the face cache index from every shard's manifest")
    p.add_argument("--size", type=int, default=224, help="aligned face side in pixels, as given to cache")
    p.add_argument("--cache-root", type=Path, default=None)
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(handler=cmd_cache_merge)

    p = commands.add_parser("train", help="train on datasets' train split (+ SBI/swaps), calibrate on val, export")
    _add_common(p)
    p.add_argument("--out", type=Path, required=True, help="run folder (resumed if it exists)")
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--train-sampling", default="uniform:64", help="frames cached per training video")
    p.add_argument("--init", default=None, metavar="imagenet=PATH",
                   help="start the backbone from a torchvision resnext50_32x4d state dict on disk")  # fmt: skip
    p.add_argument("--shards", default=None, metavar="FOLDER|s3://BUCKET/PREFIX",
                   help="stream phase 1 from these face shards (shards command), from a folder or S3")  # fmt: skip
    p.add_argument("--max-train-frames", type=int, default=None,
                   help="faces per training video held in memory for phase 2 (with --shards: e.g. 64)")  # fmt: skip
    p.add_argument("--precisions", default="fp32,fp16,int8")
    p.add_argument("--install", action="store_true", help="install the served file into the model repository")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.set_defaults(handler=cmd_train)

    p = commands.add_parser("evaluate", help="metrics, per manipulation and dataset, cross-dataset table, ROC")
    p.add_argument(
        "--model", action="append", required=True, metavar="NAME=PATH", help=".onnx or .pt; NAME = trained-on"
    )
    p.add_argument("--dataset", action="append", metavar="KIND=ROOT")
    p.add_argument("--dataset-option", action="append", metavar="KIND.NAME=VALUE", help=DATASET_OPTION_HELP)
    p.add_argument("--clips", action="append", metavar="NAME=FILE", help="a saved ClipSet (.npz)")
    p.add_argument("--split", nargs="+", default=["test"], help="dataset splits to evaluate on")
    p.add_argument("--frames-per-video", type=int, default=32)
    p.add_argument("--threshold", type=float, default=None, help="default: the model's calibrated threshold")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default="Evaluation")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(handler=cmd_evaluate)

    p = commands.add_parser("calibrate", help="write calibrated thresholds into an exported model")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--clips", type=Path, required=True, help="validation ClipSet (.npz)")
    p.add_argument("--target-fpr", type=float, default=0.032)
    p.add_argument("--uncertain-fnr", type=float, default=0.05)
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(handler=cmd_calibrate)

    p = commands.add_parser("export", help="re-calibrate and re-export a run's model (FP32/FP16/INT8)")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--precisions", default="fp32,fp16,int8")
    p.add_argument("--serve", default="auto", choices=["auto", "fp32", "fp16", "int8"])
    p.add_argument("--install", action="store_true")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(handler=cmd_export)

    p = commands.add_parser("retrain", help="continual learning: fold in new fakes, promote if not worse")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--new-fakes", type=Path, required=True)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument(
        "--steps", type=int, default=None, help="phase-1 fine-tuning steps (default: a quarter of the run's)"
    )
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--no-install", action="store_true")
    p.add_argument("--precisions", default="fp32,fp16,int8")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--max-train-frames", type=int, default=None,
                   help="faces per training video held in memory (default all; bounds the job's memory)")  # fmt: skip
    p.add_argument("--shards", default=None, metavar="FOLDER|s3://BUCKET/PREFIX",
                   help="stream phase 1 from the run's face shards, new fakes mixed in (flat memory)")  # fmt: skip
    p.add_argument("--no-mlflow", action="store_true", help="no tracking and no registry (the gate still decides)")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(handler=cmd_retrain)

    p = commands.add_parser(
        "lopo", help="leave-one-person-out: the reference recipe trained once per held-out video person"
    )
    p.add_argument("--out", type=Path, default=TrainingSettings().runs_root / "lopo")
    p.add_argument("--media-dir", type=Path, default=DEFAULT_MEDIA_DIR)
    p.add_argument("--people", nargs="+", default=None, help="identities to hold out (default: every video person)")
    p.add_argument("--fold", action="append", metavar="A+B", help="people held out together (repeat per fold)")
    p.add_argument("--reuse", type=Path, default=None, help="a finished run whose model a fold with its records takes")
    p.add_argument("--video-sampling", default=None, help="faces cached per video (default fps:8)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe overrides for every fold")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(handler=cmd_lopo)

    p = commands.add_parser(
        "people-curve", help="learning curve against the number of training people (the reference recipe)"
    )
    p.add_argument("--out", type=Path, default=TrainingSettings().runs_root / "people-curve")
    p.add_argument("--media-dir", type=Path, default=DEFAULT_MEDIA_DIR)
    p.add_argument("--sizes", type=int, nargs="+", default=[3, 6, 13], help="numbers of training people")
    p.add_argument("--seeds", type=int, default=2, help="runs per size (subset and training seed both move)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="recipe overrides (default phase2_steps=0: the CNN branch alone)")  # fmt: skip
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(handler=cmd_people_curve)

    p = commands.add_parser("search", help="Optuna search over learning rate, dropout and batch size")
    _add_common(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--steps", type=int, default=40, help="phase-1 steps per trial")
    p.add_argument("--train-sampling", default="fps:4")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage shared by parallel search processes, e.g. sqlite:///var/search.db or "
                   "postgresql://user@db/optuna (default DEEPFAKE_TRAIN_OPTUNA_STORAGE, else in memory)")  # fmt: skip
    p.add_argument("--study", default=None, help="study name the parallel processes share (default search-<out>)")
    p.set_defaults(handler=cmd_search)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(getattr(args, "verbose", False))
    try:
        return int(args.handler(args))
    except (DatasetLayoutError, DetectionError, FileNotFoundError, ValueError, argparse.ArgumentTypeError) as error:
        message = error.message if isinstance(error, DetectionError) else str(error)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
