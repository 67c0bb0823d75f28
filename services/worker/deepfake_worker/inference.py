"""The models a worker process uses, loaded once per process on first use: the inference backend
(in-process onnxruntime by default, or Triton over gRPC) and the face analyzer.

Loading is lazy so that the Celery parent process, which forks the pool, never holds an onnxruntime session.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

import numpy as np
from deepfake_core.faces.analyzer import FaceAnalyzer
from deepfake_core.inference.backend import InferenceBackend, InferenceOutput, ModelMetadata
from deepfake_core.media.sampling import parse_sampling
from deepfake_core.settings import CoreSettings
from deepfake_jobs.metrics import INFERENCE_BATCH_SIZE, INFERENCE_DURATION
from deepfake_jobs.models import JobOptions

from deepfake_worker.settings import WorkerSettings, get_worker_settings

_lock = threading.Lock()


class InstrumentedBackend:
    """An `InferenceBackend` that records each call's duration and batch size in the shared metrics."""

    def __init__(self, backend: InferenceBackend, name: str) -> None:
        self.inner = backend
        self.name = name

    @property
    def metadata(self) -> ModelMetadata:
        return self.inner.metadata

    @property
    def sha256(self) -> str | None:
        return getattr(self.inner, "sha256", None)

    def infer(self, faces: np.ndarray) -> InferenceOutput:
        started = time.perf_counter()
        try:
            return self.inner.infer(faces)
        finally:
            INFERENCE_DURATION.labels(backend=self.name).observe(time.perf_counter() - started)
            INFERENCE_BATCH_SIZE.observe(int(faces.shape[0]) * int(faces.shape[1]))

    def ready(self) -> bool:
        return self.inner.ready()

    def close(self) -> None:
        self.inner.close()


@lru_cache(maxsize=1)
def core_settings() -> CoreSettings:
    return CoreSettings()


def load_backend(settings: WorkerSettings, core: CoreSettings) -> InstrumentedBackend:
    """The backend `settings.inference_backend` names; refuses an untrained model unless the core allows it."""
    if settings.inference_backend == "triton":
        from deepfake_core.inference.triton_backend import connect_triton_backend

        triton = connect_triton_backend(
            settings.triton_url,
            core.model_copy(update={"model_name": settings.triton_model_name}),
            model_version=settings.triton_model_version,
        )
        return InstrumentedBackend(triton, "triton")
    from deepfake_core.inference.onnx_backend import load_backend as load_onnx_backend

    return InstrumentedBackend(load_onnx_backend(core), "onnxruntime")


_backend: InstrumentedBackend | None = None
_analyzer: FaceAnalyzer | None = None


def get_backend() -> InstrumentedBackend:
    global _backend
    with _lock:
        if _backend is None:
            _backend = load_backend(get_worker_settings(), core_settings())
        return _backend


def get_analyzer() -> FaceAnalyzer:
    """Face detector + landmarks at the model's input size (the crops must match what the model takes)."""
    global _analyzer
    metadata = get_backend().metadata
    with _lock:
        if _analyzer is None:
            core = core_settings()
            _analyzer = FaceAnalyzer(core, core.face_size or metadata.input_size)
        return _analyzer


def model_identity() -> str:
    """What makes two results comparable: model name, version and file digest (when the backend knows it)."""
    backend = get_backend()
    metadata = backend.metadata
    digest = backend.sha256
    return f"{metadata.name}:{metadata.version}" + (f":{digest[:16]}" if digest else "")


def result_variant(options: JobOptions) -> str:
    """The options that change a result for the same media and model: the sampling plan and explanations."""
    sampling = str(parse_sampling(options.sampling or core_settings().sampling))
    return f"{sampling}|explain={int(options.explain)}"


def close_backend() -> None:
    global _backend
    with _lock:
        if _backend is not None:
            _backend.close()
            _backend = None
