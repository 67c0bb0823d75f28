"""A real tritonserver (python backend) serving the cpu variant: loading, parity, batching, failures."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from deepfake_core.contract import INPUT_NAME, OUTPUT_NAMES, InferenceOutput
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.inference.onnx_backend import OnnxBackend
from deepfake_core.inference.triton_backend import TritonBackend, connect_triton_backend
from deepfake_core.model.export import read_metadata
from deepfake_core.model_files import file_sha256
from deepfake_core.settings import CoreSettings
from deepfake_devstack.ports import free_port, port_accepts_connections
from deepfake_devstack.process import ServerStartError, http_get_ok
from deepfake_devstack.triton_server import SETUP_SCRIPT, TritonServer
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests.serving.conftest import SERVING_INPUT_SIZE

pytestmark = pytest.mark.services

MODEL_NAME = "deepfake_detector"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def onnx_backend(serving_model: Path):
    backend = OnnxBackend(serving_model, threads=1)
    yield backend
    backend.close()


@pytest.fixture
def triton_backend(triton_server):
    backend = TritonBackend(triton_server.url, MODEL_NAME)
    yield backend
    backend.close()


def random_faces(batch: int, frames: int, seed: int = 0) -> np.ndarray:
    size = SERVING_INPUT_SIZE
    return np.random.default_rng(seed).random((batch, frames, 3, size, size), dtype=np.float32)


def max_difference(left: InferenceOutput, right: InferenceOutput) -> dict[str, float]:
    differences = {}
    for name in OUTPUT_NAMES:
        a, b = getattr(left, name), getattr(right, name)
        assert a.shape == b.shape, name
        differences[name] = float(np.abs(a - b).max())
    return differences


def test_setup_script_is_silent_when_everything_is_in_place(triton_server) -> None:
    completed = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, check=False)
    assert completed.returncode == 0
    assert completed.stdout + completed.stderr == ""


def test_served_config_is_the_installed_cpu_variant(triton_server, installed_repository: Path) -> None:
    client = httpclient.InferenceServerClient(triton_server.http_url)
    try:
        assert client.is_server_ready() and client.is_model_ready(MODEL_NAME)
        served = client.get_model_config(MODEL_NAME)
    finally:
        client.close()
    installed = text_format.Parse(
        (installed_repository / "cpu" / MODEL_NAME / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert served["backend"] == "python"
    assert served["max_batch_size"] == installed.max_batch_size
    assert [(t["name"], [int(d) for d in t["dims"]]) for t in served["input"]] == [
        (t.name, list(t.dims)) for t in installed.input
    ]
    assert [t["name"] for t in served["output"]] == list(OUTPUT_NAMES)
    assert served["dynamic_batching"]["preferred_batch_size"] == list(installed.dynamic_batching.preferred_batch_size)


def test_cpu_variant_answers_a_plain_http_inference(triton_server, onnx_backend: OnnxBackend) -> None:
    faces = random_faces(1, 3, seed=1)
    client = httpclient.InferenceServerClient(triton_server.http_url)
    try:
        tensor = httpclient.InferInput(INPUT_NAME, list(faces.shape), "FP32")
        tensor.set_data_from_numpy(faces)
        result = client.infer(MODEL_NAME, [tensor])
    finally:
        client.close()
    expected = onnx_backend.infer(faces)
    for name in OUTPUT_NAMES:
        answered = result.as_numpy(name)
        assert answered.shape == getattr(expected, name).shape
        assert np.abs(answered - getattr(expected, name)).max() <= TOLERANCE


@pytest.mark.parametrize(("batch", "frames"), [(1, 1), (2, 4)])
def test_triton_and_onnxruntime_agree(
    triton_backend: TritonBackend, onnx_backend: OnnxBackend, media_dir: Path, batch: int, frames: int
) -> None:
    from tests.core.model_helpers import face_clip

    faces = face_clip(media_dir, SERVING_INPUT_SIZE, frames, batch)
    local = onnx_backend.infer(faces)
    # The comparison means something only if the outputs are far from zero.
    assert float(np.abs(local.frame_cams).max()) > 100 * TOLERANCE
    assert float(np.abs(local.sequence_logits).max()) > 100 * TOLERANCE
    remote = triton_backend.infer(faces)
    assert max(max_difference(remote, local).values()) <= TOLERANCE


def test_requests_above_max_batch_size_are_split(triton_backend: TritonBackend, onnx_backend: OnnxBackend) -> None:
    max_batch = triton_backend.served_model.max_batch_size
    faces = random_faces(max_batch + 3, 1, seed=2)
    remote = triton_backend.infer(faces)
    assert remote.frame_logits.shape == (max_batch + 3, 1, 2)
    assert max(max_difference(remote, onnx_backend.infer(faces)).values()) <= TOLERANCE


def test_metadata_and_digest_come_from_the_served_config(triton_backend: TritonBackend, serving_model: Path) -> None:
    assert triton_backend.ready()
    assert triton_backend.metadata == read_metadata(serving_model)
    assert triton_backend.sha256 == file_sha256(serving_model)


def test_wrong_shapes_are_refused_before_sending(triton_backend: TritonBackend) -> None:
    with pytest.raises(ValueError, match=r"\[B, T, 3, 64, 64\]"):
        triton_backend.infer(np.zeros((1, 2, 3, 32, 32), dtype=np.float32))


def test_one_backend_serves_several_threads(triton_backend: TritonBackend, onnx_backend: OnnxBackend) -> None:
    inputs = [random_faces(1, 2, seed=10 + index) for index in range(6)]
    results: dict[int, InferenceOutput] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            results[index] = triton_backend.infer(inputs[index])
        except BaseException as error:  # reported below, with the thread's own error
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, faces in enumerate(inputs):
        assert max(max_difference(results[index], onnx_backend.infer(faces)).values()) <= TOLERANCE


def model_statistics(client: grpcclient.InferenceServerClient) -> tuple[int, int]:
    stats = client.get_inference_statistics(MODEL_NAME, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def statistics_after(client, expected_inferences: int, wait_s: float = 10.0) -> tuple[int, int]:  # noqa: ANN001
    """Triton records statistics after it has answered, so a read right after the last reply may lag."""
    deadline = time.monotonic() + wait_s
    inferences, executions = model_statistics(client)
    while inferences < expected_inferences and time.monotonic() < deadline:
        time.sleep(0.05)
        inferences, executions = model_statistics(client)
    return inferences, executions


def settled_statistics(client) -> tuple[int, int]:  # noqa: ANN001
    """Counts from an earlier test's last request may still be on their way; wait until they stop moving."""
    previous, current = None, model_statistics(client)
    while current != previous:
        time.sleep(0.2)
        previous, current = current, model_statistics(client)
    return current


def test_dynamic_batching_groups_concurrent_requests(triton_server) -> None:
    client = grpcclient.InferenceServerClient(triton_server.url)
    requests = 16
    done = threading.Semaphore(0)
    failures: list[object] = []

    def callback(result=None, error=None) -> None:  # tritonclient passes keyword arguments
        if error is not None:
            failures.append(error)
        done.release()

    try:
        inferences_before, executions_before = settled_statistics(client)
        for index in range(requests):
            faces = random_faces(1, 2, seed=100 + index)
            tensor = grpcclient.InferInput(INPUT_NAME, list(faces.shape), "FP32")
            tensor.set_data_from_numpy(faces)
            client.async_infer(MODEL_NAME, [tensor], callback)
        for _ in range(requests):
            assert done.acquire(timeout=60)
        inferences_after, executions_after = statistics_after(client, inferences_before + requests)
    finally:
        client.close()
    assert not failures
    inferences = inferences_after - inferences_before
    executions = executions_after - executions_before
    assert inferences == requests
    assert 1 <= executions < inferences  # several requests ran as one batch


def test_a_request_the_model_cannot_run_fails_alone(triton_server) -> None:
    """An empty sequence (T=0) fails inside onnxruntime; the model reports it for that request only."""
    client = grpcclient.InferenceServerClient(triton_server.url)
    try:
        bad = grpcclient.InferInput(INPUT_NAME, [1, 0, 3, SERVING_INPUT_SIZE, SERVING_INPUT_SIZE], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 0, 3, SERVING_INPUT_SIZE, SERVING_INPUT_SIZE), dtype=np.float32))
        with pytest.raises(Exception, match="onnxruntime failed"):
            client.infer(MODEL_NAME, [bad])
        good = random_faces(1, 1, seed=5)
        tensor = grpcclient.InferInput(INPUT_NAME, list(good.shape), "FP32")
        tensor.set_data_from_numpy(good)
        assert client.infer(MODEL_NAME, [tensor]).as_numpy("frame_logits").shape == (1, 1, 2)
    finally:
        client.close()


def test_unknown_model_is_a_clear_error(triton_server) -> None:
    backend = TritonBackend(triton_server.url, "no_such_model", max_attempts=1)
    try:
        assert not backend.ready()
        with pytest.raises(DetectionError) as failure:
            backend.infer(random_faces(1, 1))
        assert failure.value.code is ErrorCode.INFERENCE_FAILED
        assert "no_such_model" in failure.value.message
    finally:
        backend.close()


def test_backend_reports_a_server_that_went_away(installed_repository: Path) -> None:
    server = TritonServer(installed_repository / "cpu").start()
    backend = TritonBackend(server.url, MODEL_NAME, max_attempts=2, retry_backoff_s=0.05, health_timeout_s=1.0)
    try:
        assert backend.ready()
        backend.infer(random_faces(1, 1))
        backend.close()
        server.stop()
        assert not backend.ready()
        with pytest.raises(DetectionError) as failure:
            backend.infer(random_faces(1, 1))
        assert failure.value.code is ErrorCode.INFERENCE_FAILED
        assert "unavailable after 2 attempts" in failure.value.message
        assert server.url in failure.value.message
    finally:
        backend.close()
        server.close()


def test_a_repository_triton_cannot_load_fails_start_with_its_log(installed_repository: Path) -> None:
    """The gpu variant (onnxruntime backend, KIND_GPU) cannot load in this CPU build: start must say why."""
    server = TritonServer(installed_repository / "gpu", startup_timeout_s=60)
    try:
        with pytest.raises(ServerStartError) as failure:
            server.start()
        assert "onnxruntime" in str(failure.value)
        assert not server.running
    finally:
        server.close()


def test_connecting_refuses_an_untrained_model_unless_allowed(triton_server) -> None:
    with pytest.raises(DetectionError) as refused:
        connect_triton_backend(triton_server.url, CoreSettings(allow_untrained_model=False))
    assert refused.value.code is ErrorCode.UNTRAINED_MODEL
    backend = connect_triton_backend(triton_server.url, CoreSettings(allow_untrained_model=True))
    try:
        assert backend.ready() and backend.metadata.input_size == SERVING_INPUT_SIZE
    finally:
        backend.close()


def test_command_line_runs_until_terminated(installed_repository: Path) -> None:
    """`python -m deepfake_devstack.triton_server` (make up) prints where it listens and stops on SIGTERM."""
    http_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "deepfake_devstack.triton_server", "--repository", str(installed_repository / "cpu"),
         "--http-port", str(http_port), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        first_line = process.stdout.readline()
        assert first_line.startswith("triton ready:"), process.stderr.read() if process.poll() is not None else ""
        assert f"127.0.0.1:{http_port}" in first_line
        assert http_get_ok(f"http://127.0.0.1:{http_port}/v2/models/{MODEL_NAME}/ready")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not port_accepts_connections(http_port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
