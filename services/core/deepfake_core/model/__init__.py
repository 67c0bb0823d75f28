"""The hybrid ResNeXt-50 + spatial attention + BiLSTM network (torch) and its ONNX export."""
