"""Triton python-backend model: runs `model.onnx` from its own version folder with onnxruntime on CPU.

`model_repository.install_model` copies this file as `<cpu>/<model>/<N>/model.py`. It runs inside Triton's
python-backend stub, whose environment (.venv-triton) has numpy < 2 and onnxruntime only: it must stay
self-contained (no deepfake_core import) and cannot be imported outside Triton (`triton_python_backend_utils`
exists only in the stub).
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Dynamic batching hands `execute` several requests; they run as one onnxruntime call per input shape."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        model_path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
        self._input_name = config["input"][0]["name"]
        self._output_names = [output["name"] for output in config["output"]]
        self._logger = pb_utils.Logger
        self._logger.log_info(f"loaded {model_path} (onnxruntime {ort.__version__}, numpy {np.__version__})")

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        # Triton batches only requests of equal shape, but grouping keeps this correct if that ever changes.
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for index, request in enumerate(requests):
            try:
                faces = pb_utils.get_input_tensor_by_name(request, self._input_name).as_numpy()
                faces = np.ascontiguousarray(faces, dtype=np.float32)
            except Exception as error:  # one bad request must not fail the others
                responses[index] = _error_response(f"cannot read input '{self._input_name}': {error}")
                continue
            groups.setdefault(faces.shape[1:], []).append((index, faces))

        for members in groups.values():
            batch = np.concatenate([faces for _, faces in members]) if len(members) > 1 else members[0][1]
            try:
                arrays = self._session.run(self._output_names, {self._input_name: batch})
            except Exception as error:
                for index, _ in members:
                    responses[index] = _error_response(f"onnxruntime failed on a batch of {batch.shape}: {error}")
                continue
            start = 0
            for index, faces in members:
                stop = start + faces.shape[0]
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(array[start:stop]))
                    for name, array in zip(self._output_names, arrays, strict=True)
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses

    def finalize(self) -> None:
        self._session = None


def _error_response(message: str) -> pb_utils.InferenceResponse:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
