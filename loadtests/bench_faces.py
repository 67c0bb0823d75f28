"""Benchmark the faces stage: milliseconds per sampled 720p frame for detect, landmarks and align.

Frames are the 32 uniformly sampled frames of the 10 s 1280x720 30 fps benchmark clip (a re-encoded real
talking-face video). Prints median and p95 per stage (one thread, so stages add up), then the wall and CPU
time of `FaceAnalyzer.analyze` per frame with one worker and with the default pool, on the full path
(detector on every frame) and on the key-frame path (detector every DEEPFAKE_FACE_KEY_INTERVAL frames,
landmarks followed in between). Never used as a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake_core.faces.align import align_face  # noqa: E402
from deepfake_core.faces.analyzer import FaceAnalyzer, default_workers  # noqa: E402
from deepfake_core.faces.detectors import make_detector  # noqa: E402
from deepfake_core.faces.landmarks import LandmarkFitter  # noqa: E402
from deepfake_core.media.frames import DecodedFrame  # noqa: E402
from deepfake_core.media.loader import load_media  # noqa: E402
from deepfake_core.media.sampling import parse_sampling  # noqa: E402
from deepfake_core.settings import CoreSettings  # noqa: E402

from tests.utils.media_factory import benchmark_clip  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def sampled_frames(path: Path, sampling: str) -> list[DecodedFrame]:
    """The frames exactly as the pipeline's media stage hands them over."""
    return load_media(path, CoreSettings(), parse_sampling(sampling)).frames


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return (time.perf_counter() - started) * 1000, value


class StageClock:
    """Wall and CPU milliseconds of one stage, summed over the faces of one frame.

    CPU time (all threads of this process) is the steadier number on a machine others share; on an
    idle machine the two agree for single-threaded stages.
    """

    def __init__(self) -> None:
        self.wall_ms = 0.0
        self.cpu_ms = 0.0

    def run(self, function: Callable[[], object]) -> object:
        wall, cpu = time.perf_counter(), time.process_time()
        value = function()
        self.wall_ms += (time.perf_counter() - wall) * 1000
        self.cpu_ms += (time.process_time() - cpu) * 1000
        return value


def bench_stages(settings: CoreSettings, frames: list[DecodedFrame], face_size: int, repeats: int) -> None:
    detector = make_detector(settings)
    fitter = LandmarkFitter(detector.name)
    names = ("detect", "landmarks", "align")
    wall: dict[str, list[float]] = {name: [] for name in (*names, "total")}
    cpu: dict[str, list[float]] = {name: [] for name in (*names, "total")}
    faces_seen = 0
    for _ in range(repeats):
        for frame in frames:
            clocks = {name: StageClock() for name in names}
            boxes = clocks["detect"].run(lambda frame=frame: detector.detect(frame.image))
            for box in boxes:  # type: ignore[attr-defined]
                landmarks = clocks["landmarks"].run(lambda box=box, frame=frame: fitter.fit(frame.image, box))
                clocks["align"].run(
                    lambda landmarks=landmarks, frame=frame: align_face(
                        frame.image, landmarks, face_size, settings.face_margin
                    )
                )
            faces_seen += len(boxes)  # type: ignore[arg-type]
            for name, clock in clocks.items():
                wall[name].append(clock.wall_ms)
                cpu[name].append(clock.cpu_ms)
            wall["total"].append(sum(clock.wall_ms for clock in clocks.values()))
            cpu["total"].append(sum(clock.cpu_ms for clock in clocks.values()))
    print(f"\ndetector={detector.name}, one thread, {faces_seen / (repeats * len(frames)):.2f} faces per frame")
    print(f"  {'stage':<10} {'wall median':>12} {'wall p95':>10} {'cpu median':>12} {'cpu p95':>10}   (ms per frame)")
    for name in wall:
        print(
            f"  {name:<10} {statistics.median(wall[name]):>12.2f} {percentile(wall[name], 95):>10.2f}"
            f" {statistics.median(cpu[name]):>12.2f} {percentile(cpu[name], 95):>10.2f}"
        )


def bench_analyzer(settings: CoreSettings, frames: list[DecodedFrame], face_size: int, repeats: int) -> None:
    print(f"\nFaceAnalyzer.analyze on {len(frames)} frames, ms per frame (median / p95 over {repeats} runs)")
    for workers in sorted({1, default_workers()}):
        analyzer = FaceAnalyzer(settings, face_size, workers=workers)
        analyzer.analyze(frames[:2])  # warm-up: thread start, first allocations
        for full in (True, False):
            per_frame, cpu_per_frame = [], []
            for _ in range(repeats):
                cpu = time.process_time()
                elapsed, tracks = timed(lambda analyzer=analyzer, full=full: analyzer.analyze(frames, full=full))
                per_frame.append(elapsed / len(frames))
                cpu_per_frame.append((time.process_time() - cpu) * 1000 / len(frames))
            lengths = [len(track.observations) for track in tracks]  # type: ignore[attr-defined]
            path = "full" if full else f"key frames every {settings.face_key_interval}"
            print(
                f"  workers={workers}, {path}: wall {statistics.median(per_frame):.2f}"
                f" / {percentile(per_frame, 95):.2f} ms, cpu {statistics.median(cpu_per_frame):.2f} ms"
                f"  ({statistics.median(per_frame) * len(frames):.0f} ms per clip; tracks {lengths})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sampling", default="windows:2")  # of consecutive frames: sampling without a model
    parser.add_argument("--face-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--detector", choices=("yuface", "dlib", "both"), default="both")
    args = parser.parse_args()

    frames = sampled_frames(benchmark_clip(), args.sampling)
    height, width = frames[0].image.shape[:2]
    print(f"{len(frames)} frames of {width}x{height} ({args.sampling}), face size {args.face_size}")
    names = ("yuface", "dlib") if args.detector == "both" else (args.detector,)
    for name in names:
        settings = CoreSettings(face_detector=name)
        bench_stages(settings, frames, args.face_size, args.repeats)
        bench_analyzer(settings, frames, args.face_size, args.repeats)


if __name__ == "__main__":
    main()
