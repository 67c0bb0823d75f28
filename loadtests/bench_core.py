"""Benchmark the detection core: per-stage and total time for a 10 s 720p clip and for one photo.

Prints median and p95 over repeated runs. Speed does not depend on the weights, so the network is a
freshly initialised 224 px FP32 export (the issue's reference point); pass --model to time another file.
Run with `make bench-core`. Never used as a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake_core.media.loader import resolve_sampling  # noqa: E402
from deepfake_core.pipeline import Detector, DirectoryHeatmapWriter  # noqa: E402
from deepfake_core.settings import CoreSettings  # noqa: E402

from tests.utils.media import ensure_media  # noqa: E402
from tests.utils.media_factory import benchmark_clip  # noqa: E402

STAGES = ("probe", "decode", "faces", "inference", "aggregate", "explain", "total")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def bench(detector: Detector, source: Path, repeats: int, explain: bool) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
    detector.analyze(source, explain=False)  # warm-up: model load, dlib predictor, first-call allocations
    with tempfile.TemporaryDirectory() as heatmaps:
        writer = DirectoryHeatmapWriter(Path(heatmaps)) if explain else None
        for _ in range(repeats):
            started = time.perf_counter()
            result = detector.analyze(source, explain=explain, heatmap_writer=writer)
            wall = (time.perf_counter() - started) * 1000
            for stage in STAGES:
                timings[stage].append(wall if stage == "total" else result.timings_ms.get(stage, 0.0))
    return timings


def report(name: str, timings: dict[str, list[float]]) -> None:
    print(f"\n{name}")
    print(f"  {'stage':<10} {'median ms':>10} {'p95 ms':>10}")
    for stage, values in timings.items():
        print(f"  {stage:<10} {statistics.median(values):>10.1f} {percentile(values, 95):>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="ONNX model (default: untrained 224 px FP32 export)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="also render heatmaps (3 per track)")
    args = parser.parse_args()

    media = ensure_media()
    model = args.model
    if model is None:
        from deepfake_core.model.export import create_untrained_model

        model = ROOT / ".cache" / "bench" / "untrained224.onnx"
        if not model.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            create_untrained_model(model, input_size=224, seed=0)
    detector = Detector(CoreSettings(model_path=model, allow_untrained_model=True))
    clip = benchmark_clip()
    print(
        f"model {model} (input {detector.metadata.input_size} px), sampling "
        f"{resolve_sampling(None, detector.settings, detector.metadata)}, "
        f"{args.repeats} runs after one warm-up"
    )
    report(f"video: {clip.name} (10 s, 1280x720, 30 fps, H.264)", bench(detector, clip, args.repeats, args.explain))
    for photo in ("astronaut.png", "sample1.jpg"):
        report(f"photo: {photo}", bench(detector, media / photo, args.repeats, args.explain))


if __name__ == "__main__":
    main()
