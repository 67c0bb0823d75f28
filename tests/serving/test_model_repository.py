"""The model repository: generated config.pbtxt files parse as Triton model configs and agree across variants."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from deepfake_core.contract import INPUT_NAME, MODEL_SHA256_PARAMETER, OUTPUT_NAMES, ModelMetadata
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.model.export import read_metadata
from deepfake_core.model_files import file_sha256
from deepfake_core.serving import model_repository
from deepfake_core.serving.model_repository import (
    Variant,
    describe_model,
    install_model,
    latest_version,
    render_config,
)
from deepfake_core.serving.tensorrt import build_engine, trtexec_command
from deepfake_core.settings import PROJECT_ROOT
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests.serving.conftest import SERVING_INPUT_SIZE, SERVING_SEQUENCE_LENGTH

MODEL_NAME = "deepfake_detector"


def parse_config(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def read_config(root: Path, variant: Variant) -> model_config_pb2.ModelConfig:
    return parse_config((root / variant.value / MODEL_NAME / "config.pbtxt").read_text())


def shared_part(config: model_config_pb2.ModelConfig) -> dict[str, object]:
    """What every variant must agree on: tensors, batching, versions, the model's parameters."""
    return {
        "name": config.name,
        "max_batch_size": config.max_batch_size,
        "input": [text_format.MessageToString(tensor) for tensor in config.input],
        "output": [text_format.MessageToString(tensor) for tensor in config.output],
        "dynamic_batching": text_format.MessageToString(config.dynamic_batching),
        "version_policy": text_format.MessageToString(config.version_policy),
        "parameters": {
            key: value.string_value for key, value in config.parameters.items() if key != "intra_op_thread_count"
        },
    }


def test_every_variant_parses_as_a_triton_model_config(installed_repository: Path) -> None:
    gpu = read_config(installed_repository, Variant.GPU)
    tensorrt = read_config(installed_repository, Variant.GPU_TENSORRT)
    cpu = read_config(installed_repository, Variant.CPU)

    assert (gpu.backend, gpu.platform) == ("onnxruntime", "")
    assert (tensorrt.platform, tensorrt.default_model_filename) == ("tensorrt_plan", "model.plan")
    assert (cpu.backend, cpu.platform) == ("python", "")
    for config, kind in ((gpu, "KIND_GPU"), (tensorrt, "KIND_GPU"), (cpu, "KIND_CPU")):
        assert [model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) for group in config.instance_group] == [kind]
        assert config.version_policy.HasField("latest")

    accelerators = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert [accelerator.name for accelerator in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"
    assert not tensorrt.optimization.execution_accelerators.gpu_execution_accelerator
    assert not cpu.optimization.execution_accelerators.gpu_execution_accelerator


def test_variants_agree_on_tensors_batching_and_parameters(installed_repository: Path) -> None:
    parts = [shared_part(read_config(installed_repository, variant)) for variant in Variant]
    assert parts[0] == parts[1] == parts[2]
    config = read_config(installed_repository, Variant.CPU)
    assert config.max_batch_size >= max(config.dynamic_batching.preferred_batch_size)
    assert config.dynamic_batching.max_queue_delay_microseconds > 0


def test_declared_dims_match_what_the_model_produces(installed_repository: Path, serving_model: Path) -> None:
    config = read_config(installed_repository, Variant.CPU)
    size = SERVING_INPUT_SIZE
    assert [(tensor.name, list(tensor.dims)) for tensor in config.input] == [(INPUT_NAME, [-1, 3, size, size])]

    batch, frames = 2, 3
    faces = np.random.default_rng(0).random((batch, frames, 3, size, size), dtype=np.float32)
    arrays = ort.InferenceSession(str(serving_model)).run(list(OUTPUT_NAMES), {INPUT_NAME: faces})
    declared = {tensor.name: list(tensor.dims) for tensor in config.output}
    assert set(declared) == set(OUTPUT_NAMES)
    for name, array in zip(OUTPUT_NAMES, arrays, strict=True):
        assert array.shape[0] == batch
        produced = list(array.shape[1:])
        expected = [frames if dim == -1 else dim for dim in declared[name]]
        assert produced == expected, name
        assert all(tensor.data_type == model_config_pb2.TYPE_FP32 for tensor in config.output)


def test_config_parameters_carry_the_model_metadata(installed_repository: Path, serving_model: Path) -> None:
    config = read_config(installed_repository, Variant.GPU)
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    metadata = ModelMetadata.from_props(parameters)
    assert metadata == read_metadata(serving_model)
    assert metadata.fake_threshold == 0.55 and metadata.sequence_length == SERVING_SEQUENCE_LENGTH
    assert parameters[MODEL_SHA256_PARAMETER] == file_sha256(serving_model)


def test_install_adds_versions_and_links_the_model(serving_model: Path, tmp_path: Path) -> None:
    assert latest_version(tmp_path / "cpu" / MODEL_NAME) is None
    assert install_model(serving_model, tmp_path) == 1
    assert install_model(serving_model, tmp_path) == 2
    assert install_model(serving_model, tmp_path, version=7) == 7
    installed = {variant: tmp_path / variant.value / MODEL_NAME / "7" / "model.onnx" for variant in Variant}
    for variant in (Variant.GPU, Variant.CPU):
        assert latest_version(tmp_path / variant.value / MODEL_NAME) == 7
        assert installed[variant].read_bytes() == serving_model.read_bytes()
    # One file shared by the variants, but a copy of the source, which tools may rewrite in place.
    assert os.path.samefile(installed[Variant.GPU], installed[Variant.CPU])
    assert not os.path.samefile(installed[Variant.GPU], serving_model)
    cpu_version = tmp_path / "cpu" / MODEL_NAME / "7"
    source = Path(model_repository.__file__).with_name("triton_python_model.py")
    assert (cpu_version / "model.py").read_text() == source.read_text()
    assert "deepfake_core" not in (cpu_version / "model.py").read_text().split('"""', 2)[2]  # self-contained
    # The TensorRT variant gets its config only: its engine is built on a GPU.
    assert latest_version(tmp_path / "gpu-tensorrt" / MODEL_NAME) is None
    assert (tmp_path / "gpu-tensorrt" / MODEL_NAME / "config.pbtxt").is_file()


def test_latest_version_ignores_files_and_non_numeric_folders(tmp_path: Path) -> None:
    (tmp_path / "3").mkdir()
    (tmp_path / "12").mkdir()
    (tmp_path / "backup").mkdir()
    (tmp_path / "99").write_text("not a folder")
    assert latest_version(tmp_path) == 12
    assert latest_version(tmp_path / "missing") is None


def test_describe_refuses_a_file_that_is_not_a_detector(tmp_path: Path) -> None:
    with pytest.raises(DetectionError) as missing:
        describe_model(tmp_path / "absent.onnx")
    assert missing.value.code is ErrorCode.MODEL_NOT_FOUND
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(DetectionError):
        describe_model(broken)


def test_description_refuses_preferred_sizes_above_the_maximum(serving_model: Path) -> None:
    with pytest.raises(ValueError, match="preferred_batch_sizes"):
        describe_model(serving_model, max_batch_size=4, preferred_batch_sizes=(2, 8))
    description = describe_model(serving_model, max_batch_size=4, preferred_batch_sizes=(2, 4))
    config = parse_config(render_config(description, "cpu"))
    assert config.max_batch_size == 4 and list(config.dynamic_batching.preferred_batch_size) == [2, 4]


def test_command_line_installs_and_reports_errors(serving_model: Path, tmp_path: Path, capsys) -> None:
    assert model_repository.main(["install", str(serving_model), "--repository", str(tmp_path)]) == 0
    assert "version 1" in capsys.readouterr().out
    assert latest_version(tmp_path / "gpu" / MODEL_NAME) == 1
    assert model_repository.main(["render", str(serving_model), "--repository", str(tmp_path / "render")]) == 0
    assert latest_version(tmp_path / "render" / "cpu" / MODEL_NAME) is None
    assert model_repository.main(["install", str(tmp_path / "absent.onnx"), "--repository", str(tmp_path)]) == 2
    assert "No ONNX model" in capsys.readouterr().err


def test_trtexec_command_builds_one_fp16_profile_over_the_declared_shapes(
    installed_repository: Path, serving_model: Path
) -> None:
    description = describe_model(serving_model)
    plan = installed_repository / "gpu-tensorrt" / MODEL_NAME / "1" / "model.plan"
    command = trtexec_command(serving_model, plan, description, timing_cache=Path("/tmp/timing.cache"))
    assert command[0] == "trtexec"
    flags = dict(part.removeprefix("--").split("=", 1) if "=" in part else (part[2:], "") for part in command[1:])
    assert all(part.startswith("--") for part in command[1:])
    assert flags["onnx"] == str(serving_model) and flags["saveEngine"] == str(plan)
    assert "fp16" in flags and "skipInference" in flags
    assert flags["memPoolSize"] == f"workspace:{description.tensorrt_workspace_mib}"

    config = read_config(installed_repository, Variant.GPU_TENSORRT)
    declared = list(config.input[0].dims)  # [-1 (frames), 3, S, S]
    shapes = {}
    for key in ("minShapes", "optShapes", "maxShapes"):
        name, dims = flags[key].split(":")
        assert name == INPUT_NAME
        shapes[key] = [int(dim) for dim in dims.split("x")]
        assert shapes[key][2:] == declared[1:]
    assert shapes["minShapes"][:2] == [1, 1]
    assert shapes["maxShapes"][:2] == [config.max_batch_size, SERVING_SEQUENCE_LENGTH]
    assert all(lo <= hi for lo, hi in zip(shapes["minShapes"], shapes["optShapes"], strict=True))
    assert all(lo <= hi for lo, hi in zip(shapes["optShapes"], shapes["maxShapes"], strict=True))
    # The gpu variant hands onnxruntime's TensorRT accelerator the same profile.
    trt = read_config(installed_repository, Variant.GPU).optimization.execution_accelerators
    parameters = trt.gpu_execution_accelerator[0].parameters
    assert parameters["trt_profile_max_shapes"] == flags["maxShapes"]
    assert parameters["trt_profile_opt_shapes"] == flags["optShapes"]


def test_engine_build_targets_the_installed_version(installed_repository: Path, tmp_path: Path) -> None:
    command = build_engine(installed_repository, MODEL_NAME, dry_run=True)
    assert f"--onnx={installed_repository / 'gpu' / MODEL_NAME / '1' / 'model.onnx'}" in command
    assert f"--saveEngine={installed_repository / 'gpu-tensorrt' / MODEL_NAME / '1' / 'model.plan'}" in command
    with pytest.raises(DetectionError) as missing:
        build_engine(tmp_path, MODEL_NAME, dry_run=True)
    assert missing.value.code is ErrorCode.MODEL_NOT_FOUND
    if shutil.which("trtexec") is None:
        with pytest.raises(DetectionError, match="trtexec"):
            build_engine(installed_repository, MODEL_NAME)
        assert latest_version(installed_repository / "gpu-tensorrt" / MODEL_NAME) is None


def test_committed_configs_parse_and_agree() -> None:
    root = PROJECT_ROOT / "model_repository"
    configs = [root / variant.value / MODEL_NAME / "config.pbtxt" for variant in Variant]
    if not all(path.is_file() for path in configs):
        pytest.fail(f"configs missing under {root}: run `python -m deepfake_core.serving.model_repository render`")
    parts = [shared_part(parse_config(path.read_text())) for path in configs]
    assert parts[0] == parts[1] == parts[2]
