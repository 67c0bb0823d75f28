"""Serving the detector with Triton: the model repository layout, the python-backend model, TensorRT engines.

`model_repository` renders every Triton variant (GPU onnxruntime+TensorRT, GPU TensorRT plan, CPU python
backend) from one `ServingDescription`, so that the variants cannot drift apart.
"""
