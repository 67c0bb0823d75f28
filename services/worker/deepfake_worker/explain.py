"""The explain stage's result document, with the heatmaps of several faces rendered at the same time.

Rendering a heatmap overlay is mostly OpenCV warping and PNG encoding (full-frame overlays of a photo cost tens of
milliseconds each), and the core renders the faces of a file one after another. Here each face track gets its own
`deepfake_core.pipeline.build_result` call on a thread (OpenCV and zlib release the GIL), and the document itself
comes from one more call without heatmaps; the heatmaps, names and result are exactly the core's.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from deepfake_core.inference.backend import ModelMetadata
from deepfake_core.pipeline import HeatmapWriter, InferenceRun, PreparedMedia, build_result
from deepfake_core.result import DetectionResult, Heatmap
from deepfake_core.settings import CoreSettings

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def render_pool() -> ThreadPoolExecutor:
    """This process's rendering threads, one per CPU it may use (created after the pool's fork)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            _pool = ThreadPoolExecutor(max_workers=max(1, cpus), thread_name_prefix="render")
        return _pool


def build_result_parallel(
    prepared: PreparedMedia,
    run: InferenceRun,
    metadata: ModelMetadata,
    settings: CoreSettings,
    writer: HeatmapWriter | None,
    explain: bool,
    model_sha256: str | None = None,
) -> DetectionResult:
    """`build_result` with one rendering thread per face track (a single track renders in the calling thread)."""
    if not explain or writer is None or len(prepared.tracks) < 2 or settings.heatmap_frames_per_track <= 0:
        return build_result(prepared, run, metadata, settings, writer, explain, model_sha256=model_sha256)
    started = time.perf_counter()

    def heatmaps_of(track_index: int) -> list[Heatmap]:
        single = dataclasses.replace(prepared, tracks=[prepared.tracks[track_index]])
        return build_result(single, run, metadata, settings, writer, True, model_sha256=model_sha256).tracks[0].heatmaps

    rendered = list(render_pool().map(heatmaps_of, range(len(prepared.tracks))))
    result = build_result(prepared, run, metadata, settings, None, False, model_sha256=model_sha256)
    for track, heatmaps in zip(result.tracks, rendered, strict=True):
        track.heatmaps = heatmaps
    result.timings_ms["explain"] = round((time.perf_counter() - started) * 1000, 2)
    return result
