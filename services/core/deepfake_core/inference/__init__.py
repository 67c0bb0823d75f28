"""Inference backends implementing `deepfake_core.contract.InferenceBackend`: onnxruntime in-process and Triton."""
