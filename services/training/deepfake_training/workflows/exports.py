"""ONNX exports of a trained detector in FP32, FP16 and static INT8, each carrying the calibrated metadata.

FP32: the core's `export_onnx` (legacy exporter, dynamic batch and sequence axes).
FP16: weights and activations in float16 with float32 inputs/outputs (onnxruntime's converter); saves
      size, not CPU time; for GPUs.
INT8: static QDQ quantisation, per-channel weights, MinMax calibration on face crops (onnxruntime's
      Percentile and Entropy calibrators crash on this model). Adopted for serving only when its AUC on
      the validation set is within `INT8_MAX_AUC_DROP` of FP32's.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from deepfake_core.contract import INPUT_NAME, OUTPUT_NAMES, ModelMetadata, to_model_input
from deepfake_core.model.export import export_onnx, read_metadata, write_metadata
from deepfake_core.model.network import HybridDeepfakeDetector

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
INT8_MAX_AUC_DROP = 0.005


@dataclass(frozen=True)
class ExportedModel:
    precision: str
    path: Path
    size_bytes: int
    seconds: float


def export_fp32(model: HybridDeepfakeDetector, path: Path, metadata: ModelMetadata) -> Path:
    model = model.cpu().eval()
    metadata = replace(metadata, extra={**metadata.extra, "precision": "fp32"})
    return export_onnx(model, Path(path), metadata)


def export_fp16(fp32_path: Path, path: Path) -> Path:
    """Float16 weights and compute; the `faces` input and every output stay float32 (the contract)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load_model(str(fp32_path))
    converted = convert_float_to_float16(proto, keep_io_types=True, disable_shape_infer=False)
    onnx.save_model(converted, str(path))
    _tag_precision(Path(fp32_path), Path(path), "fp16")
    return Path(path)


class FaceCalibrationReader:
    """Feeds onnxruntime's calibrator with face clips [1, T, 3, S, S] float32 in [0, 1]."""

    def __init__(self, clips: Iterable[np.ndarray]) -> None:
        self._clips = [to_model_input(clip)[None] for clip in clips]
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._clips):
            return None
        self._position += 1
        return {INPUT_NAME: self._clips[self._position - 1]}

    def rewind(self) -> None:
        self._position = 0


def export_int8(fp32_path: Path, path: Path, calibration_clips: Sequence[np.ndarray]) -> Path:
    """Static INT8 (QDQ, per-channel, MinMax) calibrated on `calibration_clips` ([T, S, S, 3] uint8 each)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration_clips:
        raise ValueError("INT8 calibration needs at least one face clip")
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(path),
            FaceCalibrationReader(calibration_clips),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # Only the convolutions: the heads and the LSTM are a tiny share of the time and the most
            # sensitive to rounding (the scores come straight out of them).
            op_types_to_quantize=["Conv"],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    _tag_precision(Path(fp32_path), Path(path), "int8")
    return Path(path)


def _tag_precision(source: Path, target: Path, precision: str) -> None:
    """Copy the FP32 file's metadata onto a derived file, with its own precision."""
    metadata = read_metadata(source)
    write_metadata(target, replace(metadata, extra={**metadata.extra, "precision": precision}))


def export_all(
    model: HybridDeepfakeDetector,
    directory: Path,
    metadata: ModelMetadata,
    calibration_clips: Sequence[np.ndarray],
    precisions: Sequence[str] = PRECISIONS,
) -> dict[str, ExportedModel]:
    """model.fp32.onnx, model.fp16.onnx, model.int8.onnx under `directory` (FP32 always: the others derive)."""
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise ValueError(f"unknown precisions {sorted(unknown)}; use {PRECISIONS}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    exported: dict[str, ExportedModel] = {}
    started = time.perf_counter()
    fp32 = export_fp32(model, directory / "model.fp32.onnx", metadata)
    exported["fp32"] = ExportedModel("fp32", fp32, fp32.stat().st_size, time.perf_counter() - started)
    for precision in precisions:
        if precision == "fp32":
            continue
        started = time.perf_counter()
        target = directory / f"model.{precision}.onnx"
        if precision == "fp16":
            export_fp16(fp32, target)
        else:
            export_int8(fp32, target, calibration_clips)
        exported[precision] = ExportedModel(precision, target, target.stat().st_size, time.perf_counter() - started)
        log.info(
            "exported %s (%.1f MB) in %.1f s", target.name, target.stat().st_size / 1e6, exported[precision].seconds
        )
    return exported


def update_metadata(paths: Iterable[Path], extra: dict[str, str] | None = None, **changes: object) -> None:
    """Rewrite fields (thresholds, version, ...) and add `extra` entries in several exported files at once."""
    for path in paths:
        metadata = read_metadata(path)
        write_metadata(path, replace(metadata, **changes, extra={**metadata.extra, **(extra or {})}))


def parity(model: HybridDeepfakeDetector, path: Path, faces: np.ndarray) -> dict[str, float]:
    """Max absolute difference per output, and of P(fake), between torch and an exported file (run by the
    serving backend, so the file is also checked against the inference contract)."""
    import torch
    from deepfake_core.inference.onnx_backend import OnnxBackend
    from deepfake_core.scoring import fake_probability

    model = model.cpu().eval()
    with torch.inference_mode():
        reference = {k: v.numpy() for k, v in model(torch.from_numpy(faces)).items()}
    backend = OnnxBackend(Path(path))
    try:
        output = backend.infer(faces)
    finally:
        backend.close()
    exported = {name: getattr(output, name) for name in OUTPUT_NAMES}
    differences = {name: float(np.max(np.abs(reference[name] - exported[name]))) for name in OUTPUT_NAMES}
    for name in ("frame_logits", "sequence_logits"):
        differences[f"{name}_probability"] = float(
            np.max(np.abs(fake_probability(reference[name]) - fake_probability(exported[name])))
        )
    return differences
