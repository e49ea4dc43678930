"""Export-safe pieces of the model: real-valued RoPE and DAMI segmented-softmax attention.

Each one is written so that `torch.export` + the ONNX exporter turn it into plain float ops
(no complex tensors, no infinities) and has a test proving it equals the piece it replaces.
"""
