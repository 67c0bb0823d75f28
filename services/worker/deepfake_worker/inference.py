"""The models a worker process uses, loaded once per process by the core's `build_detector` (every check
included): the inference backend (in-process onnxruntime by default, or Triton over gRPC) and the face analyzer.

The Celery parent process, which forks the pool, never holds an onnxruntime session: each pool process loads its
models after the fork, in the background as it starts (`preload`, so its first job does not pay for it), or on
first use. onnxruntime's intra-op threads follow the process's CPU budget (`deepfake_worker.runtime`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import cast

import numpy as np
from deepfake_core.assembly import DetectorModels, TritonTarget, build_detector, open_backend
from deepfake_core.contract import InferenceBackend, InferenceOutput, ModelMetadata
from deepfake_core.faces.analyzer import FaceAnalyzer
from deepfake_core.media.loader import resolve_sampling
from deepfake_core.settings import CoreSettings
from deepfake_jobs.metrics import INFERENCE_BATCH_SIZE, INFERENCE_DURATION
from deepfake_jobs.models import JobOptions

from deepfake_worker import runtime
from deepfake_worker.settings import WorkerSettings, get_worker_settings

log = logging.getLogger(__name__)
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


_core: CoreSettings | None = None


def core_settings() -> CoreSettings:
    """The core's settings of this process, with onnxruntime's threads set to the process's CPU budget.

    An explicit DEEPFAKE_ONNX_THREADS wins; otherwise (0 = "all cores" in the core) each pool process gets its
    share, so the pool does not run pool-size x cores spinning onnxruntime threads.
    """
    global _core
    if _core is None:
        core = CoreSettings()
        if core.onnx_threads == 0:
            core = core.model_copy(update={"onnx_threads": runtime.cpu_threads(get_worker_settings())})
        _core = core
    return _core


def triton_target(settings: WorkerSettings) -> TritonTarget | None:
    """The served model `DEEPFAKE_INFERENCE_BACKEND=triton` points at; None for in-process onnxruntime."""
    if settings.inference_backend != "triton":
        return None
    return TritonTarget(settings.triton_url, settings.triton_model_name, settings.triton_model_version)


def load_backend(settings: WorkerSettings, core: CoreSettings) -> InstrumentedBackend:
    """The backend `settings.inference_backend` names (the core's `open_backend`), with the worker's metrics."""
    return InstrumentedBackend(open_backend(core, triton_target(settings)), settings.inference_backend)


def load_models(settings: WorkerSettings, core: CoreSettings) -> DetectorModels:
    """The worker's detector: `build_detector` over its instrumented backend, so the worker refuses what the CLI
    refuses (crops of another size than the model takes included); the face analyzer loads on first use."""
    return build_detector(core, backend=load_backend(settings, core), face_workers=runtime.cpu_threads(settings))


_models: DetectorModels | None = None


def get_models() -> DetectorModels:
    global _models
    with _lock:
        if _models is None:
            _models = load_models(get_worker_settings(), core_settings())
        return _models


def get_backend() -> InstrumentedBackend:
    return cast(InstrumentedBackend, get_models().backend)  # load_models gives build_detector an instrumented one


def get_analyzer() -> FaceAnalyzer:
    """Face detector + landmarks at the model's input size (the crops must match what the model takes)."""
    return get_models().analyzer


def model_identity() -> str:
    """What makes two results comparable: model name, version and file digest (when the backend knows it)."""
    backend = get_backend()
    metadata = backend.metadata
    digest = backend.sha256
    return f"{metadata.name}:{metadata.version}" + (f":{digest[:16]}" if digest else "")


def result_variant(options: JobOptions) -> str:
    """The options that change a result for the same media and model: the sampling plan and explanations.

    Unset options resolve as `prepare_media` resolves them (settings, then the model), so a job that names
    the model's default sampling and one that leaves it unset share their cached result.
    """
    sampling = str(resolve_sampling(options.sampling, core_settings(), get_backend().metadata))
    return f"{sampling}|explain={int(options.explain)}"


def preload(with_analyzer: bool) -> threading.Thread:
    """Load the backend (and the face analyzer) on a background thread; the first job waits for it if needed."""

    def load() -> None:
        started = time.perf_counter()
        try:
            model_identity()  # loads the backend and hashes the model file once
            if with_analyzer:
                get_analyzer()
        except Exception:  # noqa: BLE001 - the first job loads again and fails the job with the reason
            log.warning("preloading the models failed; the first job will load them", exc_info=True)
            return
        log.info("models preloaded in %.0f ms", (time.perf_counter() - started) * 1000)

    thread = threading.Thread(target=load, name="preload-models", daemon=True)
    thread.start()
    return thread


def close_backend() -> None:
    global _models
    with _lock:
        if _models is not None:
            _models.close()
            _models = None
