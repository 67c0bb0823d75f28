"""Benchmark inference through Triton (CPU python backend, gRPC) against in-process onnxruntime.

For batches of 1, 8 and 32 face crops per call ([batch, 1, 3, S, S], the pipeline's frame-only shape) it prints
throughput (faces/s) and latency (median, p95) of: onnxruntime in this process; Triton with one client calling
sequentially (the cost of gRPC and the python backend); Triton with several concurrent clients (dynamic batching
at work). Speed does not depend on the weights, so the model is a freshly initialised export at --input-size;
pass --model to time another file. Never used as a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake_core.inference.onnx_backend import OnnxBackend  # noqa: E402
from deepfake_core.inference.triton_backend import TritonBackend  # noqa: E402
from deepfake_core.serving.model_repository import install_model  # noqa: E402
from deepfake_devstack.triton_server import TritonServer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def time_calls(call: Callable[[], object], seconds: float, min_calls: int = 3) -> list[float]:
    """Latencies (ms) of sequential calls for about `seconds`, after one warm-up call."""
    call()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(latencies) < min_calls or time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def time_concurrent(make_call: Callable[[], Callable[[], object]], clients: int, seconds: float) -> tuple[int, float]:
    """(calls completed, wall seconds) with `clients` threads calling in a loop for about `seconds`."""
    counts = [0] * clients
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        call = make_call()
        while time.perf_counter() < deadline:
            call()
            counts[index] += 1

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.perf_counter() - started


def row(label: str, batch: int, latencies: list[float]) -> str:
    median = statistics.median(latencies)
    faces_per_s = batch * len(latencies) / (sum(latencies) / 1000)
    return f"  {label:<28} {batch:>5} {faces_per_s:>10.1f} {median:>10.1f} {percentile(latencies, 95):>10.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="ONNX model (default: an untrained export at --input-size)")
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent Triton clients")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads, 0 = all cores")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-triton-") as scratch:
        model = args.model
        if model is None:
            from deepfake_core.model.export import create_untrained_model

            model = create_untrained_model(Path(scratch) / "model.onnx", input_size=args.input_size)
        repository = Path(scratch) / "repository"
        install_model(model, repository)
        local = OnnxBackend(model, threads=args.threads)
        size = local.metadata.input_size
        with TritonServer(repository / "cpu") as server:
            remote = TritonBackend(server.url)
            print(f"model {model.name}, input {size} px; Triton {server.url}; onnxruntime threads {args.threads}")
            print(f"  {'path':<28} {'batch':>5} {'faces/s':>10} {'median ms':>10} {'p95 ms':>10}")
            for batch in args.batches:
                faces = np.random.default_rng(batch).random((batch, 1, 3, size, size), dtype=np.float32)
                print(row("onnxruntime in-process", batch, time_calls(partial(local.infer, faces), args.seconds)))
                print(row("triton, 1 client", batch, time_calls(partial(remote.infer, faces), args.seconds)))
                calls, wall = time_concurrent(partial(partial, remote.infer, faces), args.clients, args.seconds)
                label = f"triton, {args.clients} clients"
                print(f"  {label:<28} {batch:>5} {batch * calls / wall:>10.1f} {'':>10} {'':>10}")
            remote.close()
        local.close()


if __name__ == "__main__":
    main()
