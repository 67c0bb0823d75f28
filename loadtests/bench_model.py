"""Benchmark the model alone: onnxruntime milliseconds per frame at several face sizes, FP32 or INT8.

For each size, exports a freshly initialised detector (speed does not depend on the weights; INT8 is the
training exporter's static QDQ quantisation, built and cached by bench_core) and times `OnnxBackend.infer`
on the served batch (both windows in one call: B=2, T=30, by default) and on a single frame (B=1, T=1),
printing median and p95. Needs torch for the export. Never used as a test.
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
sys.path.insert(0, str(ROOT / "loadtests"))

from deepfake_core.inference.onnx_backend import OnnxBackend  # noqa: E402
from deepfake_core.model.export import create_untrained_model  # noqa: E402

COLUMN_WIDTHS = (5, 6, 15, 12, 16, 13)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def time_infer(backend: OnnxBackend, frames: int, repeats: int, warmup: int = 2, batch: int = 1) -> list[float]:
    """Wall milliseconds of each of `repeats` calls on a [batch, frames, 3, S, S] input, after `warmup` calls."""
    size = backend.metadata.input_size
    faces = np.random.default_rng(0).random((batch, frames, 3, size, size), dtype=np.float32)
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
    parser.add_argument("--windows", type=int, default=2, help="windows batched into one call")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--spinning", action="store_true", help="let idle onnxruntime threads busy-wait")
    args = parser.parse_args()

    print(
        f"onnxruntime {ort.__version__}, {args.precision.upper()}, CPU, threads={args.threads or 'default'}, "
        f"spinning={'on' if args.spinning else 'off'}"
    )
    header = ("size", "B,T", "call median ms", "call p95 ms", "ms/frame median", "ms/frame p95")
    print(" ".join(f"{name:>{width}}" for name, width in zip(header, COLUMN_WIDTHS, strict=True)))
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            if args.precision == "int8":
                from bench_core import untrained_model

                path = untrained_model(size, "int8")
            else:
                path = create_untrained_model(Path(scratch) / f"untrained{size}.onnx", input_size=size)
            backend = OnnxBackend(path, threads=args.threads, spinning=args.spinning)
            shapes = ((args.windows, args.clip_frames, args.repeats), (1, 1, args.frame_repeats))
            for batch, frames, repeats in shapes:
                timings = time_infer(backend, frames, repeats, batch=batch)
                median, p95 = statistics.median(timings), percentile(timings, 95)
                count = batch * frames
                numbers = (median, p95, median / count, p95 / count)
                row = (str(size), f"{batch},{frames}", *(f"{value:.1f}" for value in numbers))
                print(" ".join(f"{cell:>{width}}" for cell, width in zip(row, COLUMN_WIDTHS, strict=True)), flush=True)
            backend.close()


if __name__ == "__main__":
    main()
