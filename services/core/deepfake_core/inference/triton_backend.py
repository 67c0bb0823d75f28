"""Inference through a Triton Inference Server over gRPC: the backend of the inference workers.

The worker does not have the ONNX file, so the model's metadata (input size, thresholds, fusion weights) is read
from Triton's model config, whose `parameters` hold the ModelMetadata props written by
`deepfake_core.serving.model_repository.install_model`.

Threading: tritonclient's HTTP client must not be shared between threads, and although a gRPC channel is
thread-safe, its client object keeps per-call state; this backend therefore keeps one gRPC client per thread
and closes them all in close(). Close before the server stops: Triton waits for open connections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from deepfake_core.contract import (
    INPUT_NAME,
    META_PREFIX,
    MODEL_SHA256_PARAMETER,
    OUTPUT_NAMES,
    InferenceOutput,
    ModelMetadata,
)
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.settings import CoreSettings

T = TypeVar("T")

# gRPC codes worth another try: the server is (re)starting, or the connection dropped. A DEADLINE_EXCEEDED is not
# retried: the server may still be working on the request, and a retry would double its load.
_RETRYABLE = frozenset({"StatusCode.UNAVAILABLE"})


def channel_options() -> list[tuple[str, int | str]]:
    """tritonclient's own gRPC channel options, plus per-request round-robin balancing.

    gRPC's default policy (pick_first) sends every request of a channel to one server, so behind the
    chart's headless Service (`dns:///...-triton-headless`, one address per ready pod) one worker would
    load one Triton replica. round_robin connects to every address the name resolves to and spreads the
    requests. Passing channel arguments replaces tritonclient's defaults, so those are repeated here.
    """
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.lb_policy_name", "round_robin"),
    ]


@dataclass(frozen=True)
class ServedModel:
    """What Triton's model config says about the served model."""

    metadata: ModelMetadata
    max_batch_size: int
    output_names: tuple[str, ...]
    sha256: str | None


class TritonBackend:
    """`InferenceBackend` over Triton gRPC, with readiness checks, bounded retries and batch splitting."""

    def __init__(
        self,
        url: str,
        model_name: str = "deepfake_detector",
        model_version: str = "",
        *,
        timeout_s: float = 120.0,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        health_timeout_s: float = 2.0,
    ) -> None:
        """`url` is host:port of Triton's gRPC endpoint; an empty `model_version` means the served latest."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.url = url
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.health_timeout_s = health_timeout_s
        self._local = threading.local()
        self._clients: list[grpcclient.InferenceServerClient] = []
        self._clients_lock = threading.Lock()
        self._served: ServedModel | None = None

    # --- what is served ----------------------------------------------------------------------------------------
    @property
    def served_model(self) -> ServedModel:
        """Fetched from Triton on first use and kept: a new model version means a new backend (worker restart)."""
        if self._served is None:
            response = self._call("read the model config of", lambda client: self._get_config(client))
            self._served = _served_model_from_config(response.get("config", {}), self.model_name, self.url)
        return self._served

    @property
    def metadata(self) -> ModelMetadata:
        return self.served_model.metadata

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the served ONNX file, as recorded by install_model (None for older configs)."""
        return self.served_model.sha256

    # --- InferenceBackend --------------------------------------------------------------------------------------
    def infer(self, faces: np.ndarray) -> InferenceOutput:
        """`faces`: float32 [B, T, 3, S, S]; B larger than Triton's max_batch_size is sent in several requests."""
        served = self.served_model
        faces = np.ascontiguousarray(faces, dtype=np.float32)
        size = served.metadata.input_size
        if faces.ndim != 5 or faces.shape[2:] != (3, size, size) or faces.shape[0] < 1 or faces.shape[1] < 1:
            raise ValueError(f"faces must have shape [B, T, 3, {size}, {size}] with B, T >= 1, got {faces.shape}")
        chunks = [
            self._infer_chunk(faces[start : start + served.max_batch_size])
            for start in range(0, faces.shape[0], served.max_batch_size)
        ]
        if len(chunks) == 1:
            return InferenceOutput.from_arrays(chunks[0])
        return InferenceOutput.from_arrays({name: np.concatenate([c[name] for c in chunks]) for name in OUTPUT_NAMES})

    def ready(self) -> bool:
        """Whether Triton answers and has the model loaded; never raises."""
        try:
            return bool(
                self._client().is_model_ready(self.model_name, self.model_version, client_timeout=self.health_timeout_s)
            )
        except Exception:  # any failure to answer means not ready
            return False

    def close(self) -> None:
        """Close every thread's connection; the backend reconnects if it is used again."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
            self._local = threading.local()
        for client in clients:
            try:
                client.close()
            except Exception:  # closing a broken channel must not hide the caller's own error
                pass

    # --- internals ---------------------------------------------------------------------------------------------
    def _client(self) -> grpcclient.InferenceServerClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = grpcclient.InferenceServerClient(self.url, channel_args=channel_options())
            with self._clients_lock:
                self._clients.append(client)
                self._local.client = client
        return client

    def _get_config(self, client: grpcclient.InferenceServerClient) -> dict[str, Any]:
        return client.get_model_config(
            self.model_name, self.model_version, as_json=True, client_timeout=self.health_timeout_s * 5
        )

    def _infer_chunk(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        def request(client: grpcclient.InferenceServerClient) -> dict[str, np.ndarray]:
            tensor = grpcclient.InferInput(INPUT_NAME, list(faces.shape), "FP32")
            tensor.set_data_from_numpy(faces)
            outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUT_NAMES]
            result = client.infer(
                self.model_name, [tensor], self.model_version, outputs=outputs, client_timeout=self.timeout_s
            )
            return {name: result.as_numpy(name) for name in OUTPUT_NAMES}

        arrays = self._call(f"run a batch of shape {faces.shape} on", request)
        missing = [name for name, array in arrays.items() if array is None]
        if missing:
            raise DetectionError(
                ErrorCode.INFERENCE_FAILED,
                f"Triton at {self.url} returned no {', '.join(missing)} for model '{self.model_name}'; "
                "check that the served model meets the inference contract.",
            )
        return arrays

    def _call(self, action: str, operation: Callable[[grpcclient.InferenceServerClient], T]) -> T:
        """Run `operation` with this thread's client; retry UNAVAILABLE with exponential backoff, map errors."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return operation(self._client())
            except InferenceServerException as error:
                status = str(error.status())
                if status in _RETRYABLE and attempt < self.max_attempts:
                    time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
                    continue
                raise DetectionError(ErrorCode.INFERENCE_FAILED, self._explain(action, error, attempt)) from error
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _explain(self, action: str, error: InferenceServerException, attempts: int) -> str:
        status = str(error.status())
        target = f"model '{self.model_name}'" + (f" version {self.model_version}" if self.model_version else "")
        detail = (error.message() or str(error)).strip()
        if status == "StatusCode.UNAVAILABLE":
            return (
                f"Could not {action} {target}: Triton at {self.url} is unavailable after {attempts} attempts "
                f"({detail}). Check that the inference server is running and reachable."
            )
        if status == "StatusCode.DEADLINE_EXCEEDED":
            return (
                f"Could not {action} {target}: Triton at {self.url} did not answer within {self.timeout_s:.0f} s. "
                "The server is overloaded or the batch is too large; retry later or raise the timeout."
            )
        return f"Could not {action} {target} on Triton at {self.url}: {detail} ({status})."


def _served_model_from_config(config: dict[str, Any], model_name: str, url: str) -> ServedModel:
    parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
    metadata = ModelMetadata.from_props(parameters)
    if not any(key.startswith(META_PREFIX) for key in parameters):
        raise DetectionError(
            ErrorCode.MODEL_INVALID,
            f"Triton at {url} serves '{model_name}' without the model's metadata in its config parameters; "
            "install the model with `python -m deepfake_core.serving.model_repository install MODEL.onnx`.",
        )
    faces = next((tensor for tensor in config.get("input", []) if tensor.get("name") == INPUT_NAME), None)
    expected_dims = ["-1", "3", str(metadata.input_size), str(metadata.input_size)]
    if faces is None or [str(d) for d in faces.get("dims", [])] != expected_dims:
        raise DetectionError(
            ErrorCode.MODEL_INVALID,
            f"Triton at {url} serves '{model_name}' with input {faces}, but the contract wants '{INPUT_NAME}' "
            f"with dims {expected_dims} after the batch dimension.",
        )
    output_names = tuple(tensor.get("name", "") for tensor in config.get("output", []))
    if set(output_names) != set(OUTPUT_NAMES):
        raise DetectionError(
            ErrorCode.MODEL_INVALID,
            f"Triton at {url} serves '{model_name}' with outputs {sorted(output_names)}, "
            f"expected {sorted(OUTPUT_NAMES)}.",
        )
    max_batch_size = int(config.get("max_batch_size", 0))
    if max_batch_size < 1:
        raise DetectionError(
            ErrorCode.MODEL_INVALID,
            f"Triton at {url} serves '{model_name}' with max_batch_size {max_batch_size}; the contract needs "
            "batching (max_batch_size >= 1) so that the batch dimension is Triton's.",
        )
    return ServedModel(
        metadata=metadata,
        max_batch_size=max_batch_size,
        output_names=output_names,
        sha256=parameters.get(MODEL_SHA256_PARAMETER) or None,
    )


def connect_triton_backend(url: str, settings: CoreSettings, **options: Any) -> TritonBackend:
    """A backend for `settings.model_name`, refusing an untrained model unless `settings.allow_untrained_model`.

    Contacts Triton once (to read the served model's metadata), so call it when the worker starts.
    """
    backend = TritonBackend(url, settings.model_name, **options)
    try:
        metadata = backend.metadata
    except BaseException:
        backend.close()
        raise
    if not metadata.trained and not settings.allow_untrained_model:
        backend.close()
        raise DetectionError(
            ErrorCode.UNTRAINED_MODEL,
            f"Triton at {url} serves '{settings.model_name}', a model that was never trained, so its scores mean "
            "nothing. Install a trained model (`make model`) into the model repository.",
        )
    return backend
