"""The torch side's packages load and work together in one fresh interpreter.

torchvision (pulled in by rf-sam-2's metadata) breaks transformers' imports beside this torch, so
the environment is installed without it; this test catches a regression of that install.
"""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import importlib.util

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper
from sam2.build_sam import build_sam2
from transformers import BertConfig, BertModel

assert importlib.util.find_spec("torchvision") is None, "torchvision is installed: it breaks transformers here"

bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
hidden = bert(input_ids=torch.tensor([[101, 2023, 102]])).last_hidden_state
assert hidden.shape == (1, 3, 32), hidden.shape

sam = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", hydra_overrides_extra=["++model.image_size=64"])
assert sam.image_size == 64

graph = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"])], "relu",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
(y,) = session.run(None, {"x": np.array([-1.0, 2.0], dtype=np.float32)})
assert y.tolist() == [0.0, 2.0], y
print("together-ok")
"""


def test_transformers_sam2_and_onnxruntime_work_in_one_process():
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # a shared CI box: no OpenMP spin-waiting
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("together-ok")
