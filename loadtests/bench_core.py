"""Benchmark the detection core: per-stage and total time for a 10 s 720p clip and for photos.

For each face size (--size, default 112 = the shipped model's, and 224 = the paper's) and precision
(--precision fp32 and int8) it times `Detector.analyze` with Grad-CAM heatmaps on, and prints the median
and p95 of decode / faces / inference / explain / total over --repeats runs, plus the process CPU time
(all threads), the steadier figure on a machine others share. Speed does not depend on the weights, so the
networks are freshly initialised exports; the INT8 one is the training exporter's static QDQ quantisation
(`deepfake_training.workflows.exports.export_int8`) calibrated on the clip's own face crops. Pass --model to time a
real file instead. Run with `make bench-core`. Never used as a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from deepfake_core.faces.analyzer import FaceAnalyzer  # noqa: E402
from deepfake_core.inference.onnx_backend import OnnxBackend  # noqa: E402
from deepfake_core.media.loader import load_media, resolve_sampling  # noqa: E402
from deepfake_core.pipeline import Detector, DirectoryHeatmapWriter  # noqa: E402
from deepfake_core.settings import CoreSettings  # noqa: E402

from tests.utils.media import ensure_media  # noqa: E402
from tests.utils.media_factory import benchmark_clip  # noqa: E402

STAGES = ("probe", "decode", "faces", "inference", "aggregate", "explain", "total")
CPU_STAGES = ("cpu decode", "cpu faces", "cpu inference", "cpu explain", "cpu total")
PHOTOS = ("feat_single_face_photo.jpg", "astronaut.png", "sample1.jpg")
CACHE = ROOT / ".cache" / "bench"
SERVED_WINDOW_FPS = 8.0  # the shipped model trains on windows of frames 1/8 s apart


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class CpuClock:
    """Process CPU time (all threads) at the end of each stage, from the pipeline's progress callback."""

    def __init__(self) -> None:
        self.started = time.process_time()
        self.marks: dict[str, float] = {}

    def __call__(self, stage: str, fraction: float) -> None:
        if fraction >= 1.0:
            self.marks[stage] = time.process_time()

    def per_stage(self) -> dict[str, float]:
        """CPU ms of decode (with probe), faces, inference and explain (with aggregate)."""
        ends = {"decode": "decode", "faces": "faces", "inference": "inference", "explain": "done"}
        result, previous = {}, self.started
        for stage, mark in ends.items():
            end = self.marks.get(mark, previous)
            result[stage] = (end - previous) * 1000
            previous = end
        return result


def bench(detector: Detector, source: Path, repeats: int, explain: bool) -> tuple[dict[str, list[float]], int]:
    """Stage timings (wall, then CPU) of `repeats` runs after one warm-up, and the number of faces found."""
    timings: dict[str, list[float]] = {stage: [] for stage in (*STAGES, *CPU_STAGES)}
    detector.analyze(source, explain=False)  # warm-up: model load, dlib predictor, first-call allocations
    faces = 0
    with tempfile.TemporaryDirectory() as heatmaps:
        writer = DirectoryHeatmapWriter(Path(heatmaps)) if explain else None
        for _ in range(repeats):
            clock = CpuClock()
            started = time.perf_counter()
            result = detector.analyze(source, explain=explain, heatmap_writer=writer, progress=clock)
            timings["total"].append((time.perf_counter() - started) * 1000)
            timings["cpu total"].append((time.process_time() - clock.started) * 1000)
            for stage in STAGES[:-1]:
                timings[stage].append(result.timings_ms.get(stage, 0.0))
            for stage, value in clock.per_stage().items():
                timings[f"cpu {stage}"].append(value)
            faces = sum(len(track.frames) for track in result.tracks)
    return timings, faces


def report(name: str, timings: dict[str, list[float]]) -> None:
    print(f"\n{name}")
    print(f"  {'stage':<13} {'median ms':>10} {'p95 ms':>10}")
    for stage, values in timings.items():
        print(f"  {stage:<13} {statistics.median(values):>10.1f} {percentile(values, 95):>10.1f}")


def untrained_model(size: int, precision: str) -> Path:
    """A freshly initialised export at `size` px, cached under .cache/bench; INT8 derives from the FP32 file.

    Its metadata asks for the shipped model's windows (30 frames 1/8 s apart), so the clip is sampled as served.
    """
    from deepfake_core.model.export import create_untrained_model

    CACHE.mkdir(parents=True, exist_ok=True)
    fp32 = CACHE / f"untrained{size}.onnx"
    if not fp32.exists():
        create_untrained_model(fp32, input_size=size, seed=0)
    served_windows(fp32)
    if precision == "fp32":
        return fp32
    int8 = CACHE / f"untrained{size}.int8.onnx"
    if not int8.exists():
        from deepfake_training.workflows.exports import export_int8

        export_int8(fp32, int8, calibration_clips(size))
    served_windows(int8)
    return int8


def served_windows(path: Path) -> None:
    """Give an export the shipped model's window spacing (SERVED_WINDOW_FPS) if it lacks it."""
    from dataclasses import replace

    from deepfake_core.model.export import read_metadata, write_metadata

    metadata = read_metadata(path)
    if metadata.sequence_fps != SERVED_WINDOW_FPS:
        write_metadata(path, replace(metadata, sequence_fps=SERVED_WINDOW_FPS))


def calibration_clips(size: int) -> list[np.ndarray]:
    """The benchmark clip's own aligned faces, in [T, S, S, 3] uint8 clips of at most 30 frames."""
    from deepfake_core.contract import ModelMetadata

    settings = CoreSettings()
    sampling = resolve_sampling(None, settings, ModelMetadata(input_size=size, sequence_fps=SERVED_WINDOW_FPS))
    tracks = FaceAnalyzer(settings, size).analyze(load_media(benchmark_clip(), settings, sampling).frames)
    crops = [np.stack([obs.crop_rgb for obs in track.observations]) for track in tracks]
    return [clip[start : start + 30] for clip in crops for start in range(0, len(clip), 30)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an ONNX model (default: untrained exports per size/precision)")
    parser.add_argument("--size", type=int, nargs="+", choices=(112, 224), default=[112, 224])
    parser.add_argument("--precision", nargs="+", choices=("fp32", "int8"), default=["fp32", "int8"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-explain", action="store_true", help="skip Grad-CAM heatmaps (3 per track)")
    parser.add_argument("--no-photos", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads; 0 = its default")
    parser.add_argument("--spinning", action="store_true", help="let idle onnxruntime threads busy-wait")
    parser.add_argument("--key-interval", type=int, help="DEEPFAKE_FACE_KEY_INTERVAL (1 = detect on every frame)")
    args = parser.parse_args()

    media = ensure_media()
    clip = benchmark_clip()
    models = [args.model] if args.model else [untrained_model(s, p) for s in args.size for p in args.precision]
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; {args.repeats} runs each")
    for model in models:
        overrides = {"face_key_interval": args.key_interval} if args.key_interval else {}
        settings = CoreSettings(model_path=model, allow_untrained_model=True, onnx_threads=args.threads, **overrides)
        detector = Detector(settings, OnnxBackend(model, threads=args.threads, spinning=args.spinning))
        metadata = detector.metadata
        print(
            f"\n=== {model.name}: {metadata.input_size} px, {metadata.extra.get('precision', 'fp32')}, sampling "
            f"{resolve_sampling(None, settings, metadata)}, key interval {settings.face_key_interval}"
        )
        timings, faces = bench(detector, clip, args.repeats, not args.no_explain)
        report(f"video: {clip.name} (10 s, 1280x720, 30 fps, H.264), {faces} faces", timings)
        if not args.no_photos:
            for photo in PHOTOS:
                timings, faces = bench(detector, media / photo, args.repeats, not args.no_explain)
                report(f"photo: {photo}, {faces} faces", timings)
        detector.close()


if __name__ == "__main__":
    main()
