"""`deepfake-detect`: analyse files locally, or `deepfake-detect submit` them to a running gateway.

Exit codes: 0 every file analysed; 2 at least one file rejected (bad media, bad option); 3 the model
could not be used; 1 an unexpected failure. Each failure prints one line: file, code and reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.result import DetectionResult

MODEL_ERRORS = {ErrorCode.MODEL_NOT_FOUND, ErrorCode.MODEL_INVALID, ErrorCode.UNTRAINED_MODEL}
EXIT_OK, EXIT_UNEXPECTED, EXIT_BAD_INPUT, EXIT_MODEL = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detect",
        description="Detect face manipulation in images and videos. "
        "Use 'deepfake-detect submit FILE --wait' to send files to a running gateway instead.",
    )
    parser.add_argument("files", nargs="*", type=Path, help="images or videos")
    parser.add_argument("--json", action="store_true", help="print one JSON result document per file")
    parser.add_argument("--heatmaps", type=Path, metavar="DIR", help="write Grad-CAM heatmap PNGs here")
    parser.add_argument("--sampling", help="uniform:N, fps:R or windows:K (default: the model's own, e.g. windows:2)")
    parser.add_argument("--model", type=Path, help="ONNX model file (default: newest in model_repository)")
    parser.add_argument(
        "--allow-untrained", action="store_true", help="accept an untrained model (plumbing tests only)"
    )
    parser.add_argument("--print-schema", action="store_true", help="print the result JSON schema and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "submit":
        return _submit(argv[1:])
    args = build_parser().parse_args(argv)
    if args.print_schema:
        print(json.dumps(DetectionResult.model_json_schema(), indent=2))
        return EXIT_OK
    if not args.files:
        build_parser().error("give at least one file")
    try:
        detector = _make_detector(args)
    except ImportError as error:  # a light install (the result schema only) has no media or model stack
        print(f"deepfake-detect: analysing files needs deepfake-core[detect] ({error}).", file=sys.stderr)
        return EXIT_UNEXPECTED
    except DetectionError as error:
        print(f"deepfake-detect: {error.code.value}: {error.message}", file=sys.stderr)
        return EXIT_MODEL if error.code in MODEL_ERRORS else EXIT_BAD_INPUT
    status = EXIT_OK
    for path in args.files:
        status = max(status, _analyze_one(detector, path, args))
    detector.close()
    return status


def _submit(argv: list[str]) -> int:
    """`deepfake-detect submit ...` is the client's CLI (core's optional `client` extra: deepfake-client)."""
    try:
        from deepfake_client.cli import main as submit_main
    except ImportError:
        print(
            "deepfake-detect: submit needs the Python client: install deepfake-core[client] "
            "(or services/client), or run `python -m deepfake_client.cli` where it is installed.",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED
    return submit_main(argv)


def _make_detector(args: argparse.Namespace):  # noqa: ANN202 - imported lazily to keep --help fast
    from deepfake_core.pipeline import Detector
    from deepfake_core.settings import CoreSettings

    overrides: dict[str, object] = {}
    if args.model:
        overrides["model_path"] = args.model
    if args.allow_untrained:
        overrides["allow_untrained_model"] = True
    if args.sampling:
        overrides["sampling"] = args.sampling
    try:
        settings = CoreSettings(**overrides)
    except ValueError as error:
        cause = error.__cause__ if isinstance(error.__cause__, DetectionError) else None
        raise cause or DetectionError(ErrorCode.INVALID_SAMPLING, str(error)) from error
    return Detector(settings)


def _analyze_one(detector, path: Path, args: argparse.Namespace) -> int:  # noqa: ANN001
    from deepfake_core.pipeline import DirectoryHeatmapWriter

    if not path.is_file():
        print(f"deepfake-detect: {path}: not_found: no such file.", file=sys.stderr)
        return EXIT_BAD_INPUT
    writer = DirectoryHeatmapWriter(args.heatmaps / path.stem) if args.heatmaps else None
    progress = _ProgressBar(path.name) if sys.stderr.isatty() and not args.json else None
    try:
        result = detector.analyze(path, heatmap_writer=writer, explain=writer is not None, progress=progress)
    except DetectionError as error:
        print(f"deepfake-detect: {path}: {error.code.value}: {error.message}", file=sys.stderr)
        return EXIT_MODEL if error.code in MODEL_ERRORS else EXIT_BAD_INPUT
    finally:
        if progress:
            progress.close()
    print(result.model_dump_json(indent=2) if args.json else format_summary(path, result))
    return EXIT_OK


def format_summary(path: Path, result: DetectionResult) -> str:
    media = result.media
    lines = [f"{path}: {result.verdict.value.upper()}"]
    if result.score is not None:
        lines[0] += f" (score {result.score:.3f}, confidence {result.confidence:.2f})"
    kind = f"{media.type.value} {media.format} {media.width}x{media.height}"
    if media.duration_s:
        kind += f", {media.duration_s:.1f} s, {media.frames_sampled} frames sampled ({result.sampling})"
    lines.append(f"  media: {kind}")
    lines.append(
        f"  thresholds: fake >= {result.thresholds.fake:.3f}, uncertain >= {result.thresholds.uncertain_low:.3f}; "
        f"model {result.model.name} v{result.model.version}"
    )
    for track in result.tracks:
        seq = "-" if track.sequence_score is None else f"{track.sequence_score:.3f}"
        lines.append(
            f"  face #{track.track_id}: {track.verdict.value} score {track.score:.3f} "
            f"(frames {track.frame_score:.3f}, sequence {seq}, {len(track.frames)} frames)"
        )
        for heatmap in track.heatmaps:
            lines.append(f"    heatmap {heatmap.kind} frame {heatmap.frame_index}: {heatmap.ref}")
    total = result.timings_ms.get("total")
    if total is not None:
        lines.append(f"  time: {total:.0f} ms")
    return "\n".join(lines)


class _ProgressBar:
    """A tqdm bar on the terminal for long videos; silent when output is not a terminal."""

    def __init__(self, name: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=100, desc=name, unit="%", leave=False, file=sys.stderr)
        self._stages = {"decode": (0, 20), "faces": (20, 60), "inference": (60, 95), "done": (95, 100)}

    def __call__(self, stage: str, fraction: float) -> None:
        start, end = self._stages.get(stage, (0, 100))
        target = int(start + (end - start) * fraction)
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)

    def close(self) -> None:
        self._bar.close()


if __name__ == "__main__":
    sys.exit(main())
