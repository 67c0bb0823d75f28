"""Assembling a detector: the inference backend and the face analyser whose crops it takes, with every check.

The CLI (`pipeline.Detector`), the workers and training build their models here and nowhere else, so a model
that cannot be used (missing, not a detector export, untrained, trained at another face size than the crops
would have) is refused the same way, with the same sentence, wherever it is loaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from deepfake_core.contract import InferenceBackend, ModelMetadata
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.faces.analyzer import FaceAnalyzer
from deepfake_core.faces.tracking import FaceTrack
from deepfake_core.media.frames import LoadedMedia, MediaSource
from deepfake_core.media.loader import load_media
from deepfake_core.media.sampling import FrameSampling, SamplingStrategy
from deepfake_core.settings import CoreSettings

# (stage, fraction done): the stages report "decode", "faces", then the pipeline "inference" and "done".
ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class TritonTarget:
    """A model served by Triton: its gRPC address (host:port), name and version ('' = the newest served)."""

    url: str
    model_name: str
    model_version: str = ""


@dataclass
class FoundFaces:
    """The media stage's and the face stage's output for one file: its decoded frames and the face tracks."""

    media: LoadedMedia
    tracks: list[FaceTrack]
    faces_ms: float


def open_backend(settings: CoreSettings, triton: TritonTarget | None = None) -> InferenceBackend:
    """onnxruntime in-process on the configured model file, or the model `triton` names.

    Either refuses a file or served model that is not a detector export, and an untrained one unless
    `settings.allow_untrained_model`.
    """
    if triton is None:
        from deepfake_core.inference.onnx_backend import load_backend

        return load_backend(settings)
    from deepfake_core.inference.triton_backend import connect_triton_backend

    target = settings.model_copy(update={"model_name": triton.model_name})
    return connect_triton_backend(triton.url, target, model_version=triton.model_version)


def model_face_size(settings: CoreSettings, metadata: ModelMetadata) -> int:
    """The side of the aligned crops for this model: its input size, which DEEPFAKE_FACE_SIZE may only repeat.

    A model trained at 112 px fed 224 px crops would fail at its first batch (or, resized, score faces at a
    scale it never saw), so a mismatch is refused when the detector is built.
    """
    face_size = settings.face_size or metadata.input_size
    if face_size != metadata.input_size:
        raise DetectionError(
            ErrorCode.MODEL_INVALID,
            f"DEEPFAKE_FACE_SIZE={face_size} does not match the model's input size {metadata.input_size}; "
            "unset it or use a model exported at that size.",
        )
    return face_size


def find_faces(
    source: MediaSource,
    settings: CoreSettings,
    sampling: FrameSampling | SamplingStrategy | None,
    analyzer: FaceAnalyzer,
    progress: ProgressCallback | None = None,
) -> FoundFaces:
    """Probe and decode the sampled frames of `source`, then find, align and track the faces in them.

    The one wiring of the media stage into the face stage: serving (`pipeline.prepare_media`) and training
    (the face cache, the identity checks) get the same crops from the same file. `progress` receives
    ('decode', 1.0) once the frames are decoded, then ('faces', fraction).
    """
    loaded = load_media(source, settings, sampling)
    if progress:
        progress("decode", 1.0)
    started = time.perf_counter()
    tracks = analyzer.analyze(loaded.frames, progress=(lambda f: progress("faces", f)) if progress else None)
    return FoundFaces(media=loaded, tracks=tracks, faces_ms=(time.perf_counter() - started) * 1000)


class DetectorModels:
    """The inference backend (None for a face stage without a model) and the face analyser at its crop size.

    The face analyser (a detector and a 100 MB landmark model) loads on first use, so a process that only
    runs the model (an inference worker) never loads it; build one per process and reuse it.
    """

    def __init__(
        self, settings: CoreSettings, backend: InferenceBackend | None, face_size: int, face_workers: int | None
    ) -> None:
        self.settings = settings
        self.face_size = face_size
        self._backend = backend
        self._face_workers = face_workers
        self._analyzer: FaceAnalyzer | None = None
        self._lock = threading.Lock()

    @property
    def backend(self) -> InferenceBackend:
        if self._backend is None:
            raise RuntimeError("these detector models were built without a model (with_model=False)")
        return self._backend

    @property
    def metadata(self) -> ModelMetadata:
        return self.backend.metadata

    @property
    def analyzer(self) -> FaceAnalyzer:
        with self._lock:
            if self._analyzer is None:
                self._analyzer = FaceAnalyzer(self.settings, self.face_size, workers=self._face_workers)
            return self._analyzer

    def find_faces(self, source: MediaSource, sampling: FrameSampling | SamplingStrategy | None = None) -> FoundFaces:
        """`find_faces` with these settings and this analyser."""
        return find_faces(source, self.settings, sampling, self.analyzer)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def build_detector(
    settings: CoreSettings,
    *,
    backend: InferenceBackend | None = None,
    triton: TritonTarget | None = None,
    with_model: bool = True,
    face_size: int | None = None,
    face_workers: int | None = None,
) -> DetectorModels:
    """The one assembly of a detector, with every check.

    With a model (the default): `backend` as given, else the one `open_backend(settings, triton)` opens
    (missing, invalid and untrained models refused there), and crops at the model's input size
    (`model_face_size`: a DEEPFAKE_FACE_SIZE that differs is refused, and the backend closed). Without one
    (`with_model=False`, training's face cache and identity checks): the face stage alone at `face_size`, the
    size the crops are cached at. `face_workers` threads run the face stage (None: its default).
    """
    if not with_model:
        if backend is not None or triton is not None:
            raise ValueError("with_model=False takes no backend and no Triton target")
        if face_size is None:
            raise ValueError("a face stage without a model needs the face_size of its crops")
        return DetectorModels(settings, None, face_size, face_workers)
    if face_size is not None:
        raise ValueError("a detector with a model takes its face size from the model (or DEEPFAKE_FACE_SIZE)")
    if backend is not None and triton is not None:
        raise ValueError("give an opened backend or a Triton target to open, not both")
    if backend is None:
        backend = open_backend(settings, triton)
    try:
        size = model_face_size(settings, backend.metadata)
    except BaseException:
        backend.close()
        raise
    return DetectorModels(settings, backend, size, face_workers)
