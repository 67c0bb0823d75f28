"""In-process inference with onnxruntime on CPU: the backend of the CLI and of workers without Triton.

It checks the model file against the inference contract when it opens it, so that a wrong or
untrained model fails at start-up with a sentence a person can act on, not at the first request.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from deepfake_core.contract import INPUT_NAME, OUTPUT_NAMES, InferenceOutput, ModelMetadata
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.model_files import GET_A_MODEL, file_sha256, resolve_model_path
from deepfake_core.settings import CoreSettings


class OnnxBackend:
    """Runs the exported detector with onnxruntime; one inference at a time (a lock guards `infer`).

    `providers`: onnxruntime's execution providers in order of preference; default the CPU alone (serving's CPU
    path). Training's export checks pass CUDA first on a GPU machine.
    """

    def __init__(
        self, path: Path, threads: int = 0, spinning: bool = False, providers: Sequence[str] | None = None
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise DetectionError(ErrorCode.MODEL_NOT_FOUND, f"No model file at {path}. {GET_A_MODEL}")
        self._path = path
        self._lock = threading.Lock()
        self._session: ort.InferenceSession | None = _open_session(path, threads, spinning, providers)
        self._metadata = ModelMetadata.from_props(dict(self._session.get_modelmeta().custom_metadata_map))
        _check_contract(self._session, self._metadata, path)
        self._sha256: str | None = None

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    @property
    def precision(self) -> str:
        """What the export says it computes in (fp32, fp16, int8); files without the tag are FP32 exports."""
        return self._metadata.extra.get("precision", "fp32")

    @property
    def path(self) -> Path:
        return self._path

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on (onnxruntime drops requested ones it does not have)."""
        return list(self._session.get_providers()) if self._session is not None else []

    @property
    def sha256(self) -> str:
        """Hex digest of the model file, computed once: results record which exact model produced them."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self._path)
        return self._sha256

    def infer(self, faces: np.ndarray) -> InferenceOutput:
        """`faces`: float32 [B, T, 3, S, S], RGB in [0, 1], S = metadata.input_size."""
        faces = np.ascontiguousarray(faces, dtype=np.float32)
        size = self._metadata.input_size
        if faces.ndim != 5 or faces.shape[2:] != (3, size, size) or faces.shape[0] < 1 or faces.shape[1] < 1:
            raise ValueError(f"faces must have shape [B, T, 3, {size}, {size}] with B, T >= 1, got {faces.shape}")
        with self._lock:
            if self._session is None:
                raise DetectionError(ErrorCode.INFERENCE_FAILED, "The model was closed; open it again to run it.")
            try:
                arrays = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: faces})
            except Exception as error:  # onnxruntime raises its own, untyped, exceptions
                raise DetectionError(
                    ErrorCode.INFERENCE_FAILED, f"onnxruntime failed on a batch of shape {faces.shape}: {error}"
                ) from error
        return InferenceOutput.from_arrays(dict(zip(OUTPUT_NAMES, arrays, strict=True)))

    def ready(self) -> bool:
        return self._session is not None

    def close(self) -> None:
        with self._lock:
            self._session = None


def load_backend(settings: CoreSettings) -> OnnxBackend:
    """Open the configured model, refusing an untrained one unless `settings.allow_untrained_model`."""
    backend = OnnxBackend(resolve_model_path(settings), threads=settings.onnx_threads, spinning=settings.onnx_spinning)
    if not backend.metadata.trained and not settings.allow_untrained_model:
        backend.close()
        raise DetectionError(
            ErrorCode.UNTRAINED_MODEL,
            f"The model at {backend.path} was never trained, so its scores mean nothing. "
            "Run `make model` to train and export a real one.",
        )
    return backend


def _open_session(
    path: Path, threads: int, spinning: bool = False, providers: Sequence[str] | None = None
) -> ort.InferenceSession:
    """Sequential execution (one branch of the graph at a time: the model is one chain of convolutions) on
    `threads` intra-op threads. Without `spinning`, idle pool threads sleep instead of busy-waiting between
    operators: on 2 cores shared with the face stage and other workers, spinning threads starve the ones
    doing the work (measured on a busy 2-core machine, 112 px, 2 windows: 4.2 s -> 2.9 s wall on one thread,
    5.2 s -> 4.5 s on two, same CPU time)."""
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per physical core
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the warnings are about graph rewrites, not the caller
    try:
        chosen = list(providers) if providers else ["CPUExecutionProvider"]
        return ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    except Exception as error:
        raise DetectionError(
            ErrorCode.MODEL_INVALID, f"{path} is not a loadable ONNX model ({error}). {GET_A_MODEL}"
        ) from error


def _check_contract(session: ort.InferenceSession, metadata: ModelMetadata, path: Path) -> None:
    """The model must have exactly the contract's input and outputs, at the input size its metadata states."""
    inputs = session.get_inputs()
    outputs = {output.name for output in session.get_outputs()}
    problems: list[str] = []
    if [node.name for node in inputs] != [INPUT_NAME]:
        problems.append(f"inputs are {[node.name for node in inputs]}, expected ['{INPUT_NAME}']")
    elif inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 5:
        problems.append(f"input '{INPUT_NAME}' is {inputs[0].type} {inputs[0].shape}, expected float32 of rank 5")
    else:
        declared = inputs[0].shape[2:]
        expected = [3, metadata.input_size, metadata.input_size]
        if any(isinstance(dim, int) and dim != want for dim, want in zip(declared, expected, strict=True)):
            problems.append(f"input '{INPUT_NAME}' has channel/spatial dims {declared}, metadata says {expected}")
    if outputs != set(OUTPUT_NAMES):
        problems.append(f"outputs are {sorted(outputs)}, expected {sorted(OUTPUT_NAMES)}")
    if problems:
        raise DetectionError(
            ErrorCode.MODEL_INVALID,
            f"{path} is not a deepfake detector export: {'; '.join(problems)}. {GET_A_MODEL}",
        )
