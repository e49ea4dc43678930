"""Export-safe pieces of the model: real-valued RoPE, masked and segmented-softmax (DAMI)
memory attention, and exact FLOP cuts. They import nothing from `model/` (tested): the model
builds on them, not the other way round.

Each one is written so that `torch.export` + the ONNX exporter turn it into plain float ops
(no complex tensors, no infinities) and has a test proving it equals the piece it replaces.
"""
