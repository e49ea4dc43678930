"""Stage backends: the protocol and contract check (stage_backend), onnxruntime, TensorRT.

The torch backend lives in `mqc_edge/model/torch_backend.py` (it imports torch; this package never does)."""
