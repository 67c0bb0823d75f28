"""Benchmark the model alone: onnxruntime FP32 milliseconds per frame at several face sizes.

For each size, exports a freshly initialised detector (speed does not depend on the weights) and times
`OnnxBackend.infer` on a 30-frame clip (B=1, T=30) and on a single frame (B=1, T=1), printing median
and p95. Needs torch for the export. Never used as a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake_core.inference.onnx_backend import OnnxBackend  # noqa: E402
from deepfake_core.model.export import create_untrained_model  # noqa: E402

COLUMN_WIDTHS = (5, 6, 15, 12, 16, 13)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def time_infer(backend: OnnxBackend, frames: int, repeats: int, warmup: int = 2) -> list[float]:
    """Wall milliseconds of each of `repeats` calls on a [1, frames, 3, S, S] clip, after `warmup` calls."""
    size = backend.metadata.input_size
    faces = np.random.default_rng(0).random((1, frames, 3, size, size), dtype=np.float32)
    for _ in range(warmup):
        backend.infer(faces)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        backend.infer(faces)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 160, 224])
    parser.add_argument("--clip-frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per clip configuration")
    parser.add_argument("--frame-repeats", type=int, default=30, help="timed calls per single-frame configuration")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads; 0 = its default")
    args = parser.parse_args()

    print(f"onnxruntime {ort.__version__}, FP32, CPU, threads={args.threads or 'default'}")
    header = ("size", "B,T", "clip median ms", "clip p95 ms", "ms/frame median", "ms/frame p95")
    print(" ".join(f"{name:>{width}}" for name, width in zip(header, COLUMN_WIDTHS, strict=True)))
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            path = create_untrained_model(Path(scratch) / f"untrained{size}.onnx", input_size=size)
            backend = OnnxBackend(path, threads=args.threads)
            for frames, repeats in ((args.clip_frames, args.repeats), (1, args.frame_repeats)):
                timings = time_infer(backend, frames, repeats)
                median, p95 = statistics.median(timings), percentile(timings, 95)
                numbers = (median, p95, median / frames, p95 / frames)
                row = (str(size), f"1,{frames}", *(f"{value:.1f}" for value in numbers))
                print(" ".join(f"{cell:>{width}}" for cell, width in zip(row, COLUMN_WIDTHS, strict=True)), flush=True)
            backend.close()
            path.unlink()


if __name__ == "__main__":
    main()
