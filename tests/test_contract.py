"""The stage contract: static shapes from the geometry, typed errors naming stage and tensor."""

from __future__ import annotations

import pytest

from mqc_edge.contract import OBJECTS, PROMPT_TOKENS, ModelGeometry, MQCGeometry, TensorSpec, stage_specs
from mqc_edge.errors import StageContractError


def test_shapes_are_resolved_from_the_geometry() -> None:
    specs = stage_specs(ModelGeometry(image_size=480))
    assert specs["image_encoder"].input("image").shape == (1, 3, 480, 480)
    assert specs["image_encoder"].output("feat").shape == (1, 256, 30, 30)
    assert specs["image_encoder"].output("fpn0").shape == (1, 32, 120, 120)
    assert specs["mask_decoder"].output("mask_lowres").shape == (OBJECTS, 1, 120, 120)
    assert specs["memory_attention"].input("memory").shape == (OBJECTS, 7, 64, 30, 30)
    assert specs["memory_attention"].input("obj_ptrs").shape == (OBJECTS, 16, 256)
    assert specs["memory_encoder"].output("memory").shape == (OBJECTS, 64, 30, 30)
    assert specs["memory_attention"].input("memory").resolved({OBJECTS: 1}).shape == (1, 7, 64, 30, 30)


def test_prompt_tokens_and_per_object_batches_are_the_only_symbolic_dims() -> None:
    specs = stage_specs(ModelGeometry(mqc=MQCGeometry()))
    symbolic = {
        (stage.name, tensor.name, dim)
        for stage in specs.values()
        for tensor in stage.inputs + stage.outputs
        for dim in tensor.shape
        if isinstance(dim, str)
    }
    prompt = {("prompt_encoder", "point_coords"), ("prompt_encoder", "point_labels"),
              ("prompt_encoder", "sparse_prompt"), ("mask_decoder", "sparse_prompt")}
    assert {(stage, tensor) for stage, tensor, dim in symbolic if dim == PROMPT_TOKENS} == prompt
    batched = {(stage, tensor) for stage, tensor, dim in symbolic if dim == OBJECTS}
    assert {stage for stage, _ in batched} == {"memory_attention", "mask_decoder", "memory_encoder"}
    shared = {("memory_attention", "feat"), ("mask_decoder", "fpn0"), ("mask_decoder", "fpn1"),
              ("mask_decoder", "multimask"), ("memory_encoder", "feat"), ("memory_encoder", "binarize")}
    for stage, tensor in shared:  # the frame's features and flags are read once for the batch
        assert (stage, tensor) not in batched
    for name in ("memory_attention", "mask_decoder", "memory_encoder"):
        assert all((name, t.name) in batched for t in specs[name].outputs)


def test_a_symbolic_dim_must_have_one_size_across_a_stage_s_tensors() -> None:
    spec = stage_specs(ModelGeometry(image_size=64))["memory_encoder"]
    given = {"feat": ((1, 256, 4, 4), "float32"), "mask_lowres": ((3, 1, 16, 16), "float32"),
             "object_score": ((3, 1), "float32"), "binarize": ((1,), "bool")}
    spec.check_tensors(spec.inputs, given)
    with pytest.raises(StageContractError, match=r"objects is 3 in 'mask_lowres' but 2 in 'object_score'"):
        spec.check_tensors(spec.inputs, dict(given, object_score=((2, 1), "float32")))


def test_tensor_names_are_unique_within_each_side_of_a_stage() -> None:
    for stage in stage_specs(ModelGeometry()).values():
        for side in (stage.inputs, stage.outputs):
            names = [tensor.name for tensor in side]
            assert len(names) == len(set(names)), stage.name


def test_check_accepts_any_symbolic_size_and_rejects_wrong_shapes_or_dtypes() -> None:
    spec = TensorSpec("point_labels", "int32", (1, PROMPT_TOKENS))
    spec.check("prompt_encoder", (1, 5), "int32")
    with pytest.raises(StageContractError, match=r"'prompt_encoder' tensor 'point_labels'.*int32.*int64"):
        spec.check("prompt_encoder", (1, 5), "int64")
    with pytest.raises(StageContractError, match=r"expected float32\[1, 2\], got float32\[1, 2, 1\]"):
        TensorSpec("x", "float32", (1, 2)).check("s", (1, 2, 1), "float32")


def test_geometry_rejects_sizes_that_do_not_divide() -> None:
    with pytest.raises(StageContractError, match="multiple of the stride"):
        ModelGeometry(image_size=250)


def test_unknown_tensor_lists_the_known_ones() -> None:
    with pytest.raises(StageContractError, match="has no tensor 'pos'"):
        stage_specs(ModelGeometry())["image_encoder"].output("pos")


def test_mqc_stages_join_only_with_an_mqc_geometry_and_have_static_slots() -> None:
    plain = stage_specs(ModelGeometry(image_size=480))
    assert not {"text_encoder", "prompt_fusion", "dami_attention", "quality_head"} & set(plain)
    specs = stage_specs(ModelGeometry(image_size=480, mqc=MQCGeometry(fifo_slots=3, prototype_slots=3, moga=True)))
    assert specs["text_encoder"].input("input_ids").shape == (1, 32)
    assert specs["text_encoder"].output("text_tokens").shape == (1, 32, 256)
    assert specs["prompt_fusion"].output("sparse_prompt").shape == (1, 2, 256)
    dami = specs["dami_attention"]
    assert dami.input("memory").shape == (7, 64, 30, 30) and dami.input("fifo_age").shape == (3,)
    assert dami.input("obj_ptrs").shape == (7, 256) and dami.inputs[-1].name == "gate_obj_ptr"
    assert specs["quality_head"].output("feat_summary").shape == (1, 2, 256)
    assert specs["mask_decoder"] == plain["mask_decoder"]  # SAM 2 stages are untouched


def test_mqc_geometry_rejects_a_split_the_stages_cannot_hold() -> None:
    with pytest.raises(StageContractError, match="exactly 1 anchor slot"):
        MQCGeometry(anchor_slots=2)
    with pytest.raises(StageContractError, match="8 FIFO slots need as many temporal encodings"):
        ModelGeometry(mqc=MQCGeometry(fifo_slots=8))
