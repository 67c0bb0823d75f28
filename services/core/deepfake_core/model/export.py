"""ONNX export of the detector, and the metadata every model file carries about itself.

`write_metadata`/`read_metadata` need only `onnx`, so they also serve the FP16 and INT8 variants and
tools that run where torch is not installed; `export_onnx` and `create_untrained_model` need torch.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from deepfake_core.contract import INPUT_NAME, META_PREFIX, OUTPUT_NAMES, ModelMetadata

if TYPE_CHECKING:
    from deepfake_core.model.network import HybridDeepfakeDetector

DEFAULT_OPSET = 17
# The example batch used for tracing; neither axis is 1, so nothing gets specialised to a singleton.
_EXAMPLE_BATCH, _EXAMPLE_SEQUENCE = 2, 3

_DYNAMIC_AXES: dict[str, dict[int, str]] = {
    INPUT_NAME: {0: "batch", 1: "seq"},
    "frame_logits": {0: "batch", 1: "seq"},
    "sequence_logits": {0: "batch"},
    "frame_cams": {0: "batch", 1: "seq"},
    "attention": {0: "batch", 1: "seq"},
}


def export_onnx(model: HybridDeepfakeDetector, path: Path, metadata: ModelMetadata, opset: int = DEFAULT_OPSET) -> Path:
    """Write `model` as one self-contained ONNX file with dynamic `batch` and `seq` axes and `metadata`.

    Uses the legacy TorchScript exporter (`dynamo=False`): with `dynamic_axes` it keeps both axes
    symbolic, which the dynamo exporter does not. The model is left in eval mode afterwards.
    """
    import torch

    from deepfake_core.model.network import ContractOutputs

    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset {opset} is too old: the contract needs opset {DEFAULT_OPSET} or newer")
    if metadata.input_size != model.config.input_size:
        raise ValueError(
            f"metadata.input_size {metadata.input_size} differs from the model's input size {model.config.input_size}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    wrapper = ContractOutputs(model).eval()
    size = model.config.input_size
    example = torch.rand(_EXAMPLE_BATCH, _EXAMPLE_SEQUENCE, 3, size, size, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The legacy exporter is deprecated, and the RNN export warns about batch sizes
            # that our explicit LSTM state handles; neither is actionable here.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=_DYNAMIC_AXES,
                do_constant_folding=True,
            )
    finally:
        # The exporter restores the wrapper's previous mode, which may be train mode.
        model.eval()

    proto = onnx.load_from_string(buffer.getvalue())
    _set_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path


def write_metadata(onnx_path: Path, metadata: ModelMetadata) -> None:
    """Replace the `deepfake.*` metadata of an ONNX file in place; other metadata entries are kept."""
    proto = onnx.load_model(str(onnx_path))
    _set_metadata(proto, metadata)
    onnx.save_model(proto, str(onnx_path), save_as_external_data=False)


def read_metadata(onnx_path: Path) -> ModelMetadata:
    """The `ModelMetadata` stored in an ONNX file (defaults, with trained=False, where keys are missing)."""
    proto = onnx.load_model(str(onnx_path), load_external_data=False)
    return ModelMetadata.from_props({entry.key: entry.value for entry in proto.metadata_props})


def create_untrained_model(path: Path, input_size: int = 224, seed: int = 0) -> Path:
    """Export a freshly initialised model (same `seed`, same weights) marked trained=False.

    For tests and plumbing only: its scores mean nothing, and backends refuse it unless told otherwise.
    """
    import torch

    from deepfake_core.model.network import DetectorConfig, HybridDeepfakeDetector

    with torch.random.fork_rng():  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = HybridDeepfakeDetector(DetectorConfig(input_size=input_size)).eval()
    metadata = ModelMetadata(
        input_size=input_size,
        sequence_length=model.config.sequence_length,
        trained=False,
        extra={"origin": f"untrained, seed {seed}"},
    )
    return export_onnx(model, path, metadata)


def _set_metadata(proto: onnx.ModelProto, metadata: ModelMetadata) -> None:
    kept = [(entry.key, entry.value) for entry in proto.metadata_props if not entry.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.to_props().items()]:
        proto.metadata_props.add(key=key, value=value)
