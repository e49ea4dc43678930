"""The CroBIM-U uncertainty head: shapes and range, its contract stage and ONNX parity, optional
in checkpoints, and its training step (error targets, only the head moves, calibrated bias)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import onnxruntime
import pytest
import torch

from mqc_edge.contract import OBJECTS, ModelGeometry, MQCGeometry, stage_specs
from mqc_edge.export.onnx_export import export_stage
from mqc_edge.export.parity import ParityThresholds, compare_outputs
from mqc_edge.model.checkpoint import load_checkpoint, load_tensors_into, save_checkpoint
from mqc_edge.model.mqc_sam import MQCSAM, MQCSAMConfig
from mqc_edge.model.mqc_stages import build_mqc_stages, mqc_geometry_of
from mqc_edge.model.uncertainty import UncertaintyHead
from mqc_edge.training.uncertainty import HeadData, UncertaintyTraining, error_target, positive_weight, train_head


def test_head_maps_fpn0_and_logits_to_a_probability_map_per_object() -> None:
    torch.manual_seed(0)
    head = UncertaintyHead(fpn0_channels=32, hidden=16)
    assert 5_000 < sum(p.numel() for p in head.parameters()) < 10_000  # a few thousand parameters
    logits = torch.randn(3, 1, 16, 16) * 5
    logits[0] = 1e4  # an empty SAM output's saturated logits stay finite
    with torch.no_grad():
        out = head(torch.randn(1, 32, 16, 16), logits)
    assert out.shape == (3, 1, 16, 16) and torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_the_stage_joins_the_contract_only_with_the_head() -> None:
    plain = stage_specs(ModelGeometry(image_size=128, mqc=MQCGeometry()))
    assert "uncertainty_head" not in plain
    spec = stage_specs(ModelGeometry(image_size=128, mqc=MQCGeometry(uncertainty=True)))["uncertainty_head"]
    inputs = [(t.name, t.shape) for t in spec.inputs]
    assert inputs == [("fpn0", (1, 32, 32, 32)), ("mask_lowres", (OBJECTS, 1, 32, 32))]
    assert [(t.name, t.shape) for t in spec.outputs] == [("uncertainty", (OBJECTS, 1, 32, 32))]


def test_the_model_geometry_and_stages_follow_the_config(mqc_model) -> None:
    assert mqc_geometry_of(mqc_model).uncertainty and "uncertainty_head" in build_mqc_stages(mqc_model)
    without = MQCSAM(dataclasses.replace(mqc_model.config, moga=False, uncertainty_head=False))
    assert without.uncertainty is None and not mqc_geometry_of(without).uncertainty
    assert "uncertainty_head" not in build_mqc_stages(without)


def test_exported_stage_matches_torch_for_two_objects(mqc_model, tmp_path) -> None:
    geometry = dataclasses.replace(ModelGeometry(image_size=128), mqc=mqc_geometry_of(mqc_model))
    spec = stage_specs(geometry)["uncertainty_head"]
    module = build_mqc_stages(mqc_model)["uncertainty_head"]
    generator = torch.Generator().manual_seed(3)
    example = {"fpn0": torch.randn(1, 32, 32, 32, generator=generator),
               "mask_lowres": 8 * torch.randn(1, 1, 32, 32, generator=generator)}
    path = tmp_path / "uncertainty_head.onnx"
    export_stage(module, spec, example, path, opset=18)
    inputs = {"fpn0": np.random.default_rng(0).normal(size=(1, 32, 32, 32)).astype(np.float32),
              "mask_lowres": (10 * np.random.default_rng(1).normal(size=(2, 1, 32, 32))).astype(np.float32)}
    onnx_out = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    with torch.no_grad():
        torch_out = module(*(torch.from_numpy(inputs[t.name]) for t in spec.inputs)).numpy()
    assert onnx_out.shape == (2, 1, 32, 32)
    assert compare_outputs(torch_out, onnx_out, ParityThresholds())["passed"]


def test_a_checkpoint_without_the_head_loads(mqc_model, tmp_path) -> None:
    old = MQCSAM(dataclasses.replace(mqc_model.config, moga=False, uncertainty_head=False))
    path = tmp_path / "old.safetensors"
    save_checkpoint(old, path)
    loaded, report = load_checkpoint(path)
    assert loaded.uncertainty is None and "uncertainty" not in report.fresh_parts
    with_head = copy.deepcopy(mqc_model)
    tensors = {k: v for k, v in mqc_model.state_dict().items()
               if not k.startswith(("uncertainty.", "text_encoder.language_model."))}
    report = load_tensors_into(with_head, tensors, path, "mqc-edge")
    assert report.fresh_parts == ("uncertainty",)  # asked for, absent from the file: reported


def test_a_config_saved_before_the_head_existed_parses_without_it() -> None:
    values = {k: v for k, v in json.loads(MQCSAMConfig().to_json()).items() if not k.startswith("uncertainty")}
    assert MQCSAMConfig.from_json(json.dumps(values), "old.safetensors").uncertainty_head is False


def test_error_target_is_the_share_of_wrong_pixels_per_lowres_cell() -> None:
    logits = torch.full((1, 1, 4, 4), -10.0)
    logits[0, 0, 0, 0] = 10.0  # predicted: roughly the top-left 4 x 4 input block (bilinear edge spreads)
    truth = np.zeros((16, 16), bool)
    target = error_target(logits, truth)
    predicted = torch.nn.functional.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False) > 0
    assert target.shape == (1, 1, 4, 4)
    assert float(target.sum()) * 16 == pytest.approx(float(predicted.sum()))  # every predicted pixel is wrong
    assert float(error_target(torch.full((1, 1, 4, 4), -10.0), truth).sum()) == 0.0


def test_training_moves_only_the_head_and_folds_the_positive_weight_into_the_bias(mqc_model) -> None:
    model = copy.deepcopy(mqc_model)
    generator = torch.Generator().manual_seed(0)
    logits = 6 * torch.randn(8, 1, 32, 32, generator=generator)
    target = ((logits.abs() < 1.0).float())  # errors where the decoder is unsure
    data = HeadData(torch.randn(2, 32, 32, 32, generator=generator).half(), torch.arange(8) % 2, logits, target)
    weight = positive_weight(data, cap=20.0)
    assert weight == pytest.approx(min((1 - float(target.mean())) / float(target.mean()), 20.0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}  # the output bias at the last forward, i.e. before the last (tiny, cosine-decayed) step
    model.uncertainty.net[-1].register_forward_hook(lambda m, i, o: seen.update(bias=float(m.bias.detach())))
    record = train_head(model, data, UncertaintyTraining(steps=200, batch=4, learning_rate=1e-2), log=lambda _: None)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("uncertainty.") for k in changed)
    assert record["pos_weight"] == pytest.approx(weight) and record["loss_last_10pct"] < record["loss_first_10pct"]
    assert float(model.uncertainty.net[-1].bias) == pytest.approx(seen["bias"] - math.log(weight), abs=1e-3)
