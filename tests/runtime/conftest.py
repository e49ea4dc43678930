"""A numpy stage backend for orchestration tests: every contract stage, cheap and deterministic.

The stage outputs are simple functions of their inputs with the contract's shapes (checked on
every call), so the Tracker's streaming logic can run hundreds of frames in a second. What the
real stages compute is tested in tests/model.
"""

from __future__ import annotations

import numpy as np
import pytest

from mqc_edge.contract import ModelGeometry, MQCGeometry, stage_specs
from mqc_edge.runtime.backends.stage_backend import HostProcessing, slot_index

FAKE_GEOMETRY = ModelGeometry(image_size=64, hidden_dim=32, mem_dim=8, mqc=MQCGeometry(text_tokens=8))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class FakeBackend(HostProcessing):
    """Handles are numpy arrays; `fail` maps a stage name to the call number whose outputs become NaN;
    pre- and post-processing are the host default."""

    def __init__(self, geometry: ModelGeometry = FAKE_GEOMETRY) -> None:
        self.geometry = geometry
        self.specs = stage_specs(geometry)
        self.calls: dict[str, int] = {}
        self.fail: dict[str, int] = {}

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.specs[stage]
        for tensor in spec.inputs:
            tensor.check(stage, inputs[tensor.name].shape, str(inputs[tensor.name].dtype))
        outputs = getattr(self, "_" + stage)(**inputs)
        self.calls[stage] = self.calls.get(stage, 0) + 1
        if self.fail.get(stage) == self.calls[stage]:
            outputs = {name: np.full_like(value, np.nan) if value.dtype.kind == "f" else value
                       for name, value in outputs.items()}
        for tensor in spec.outputs:
            tensor.check(stage, outputs[tensor.name].shape, str(outputs[tensor.name].dtype))
        return outputs

    def to_host(self, handle: np.ndarray) -> np.ndarray:
        return np.array(handle)

    def from_host(self, array: np.ndarray) -> np.ndarray:
        return np.array(array)

    def zeros(self, spec) -> np.ndarray:
        return np.zeros(spec.shape, dtype=spec.dtype)

    def write_slot(self, buffer: np.ndarray, index: int, value: np.ndarray) -> None:
        buffer[slot_index(buffer.ndim, value.ndim, index)] = value[0]

    def concat(self, handles: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(handles)

    def split(self, handle: np.ndarray) -> list[np.ndarray]:
        return [handle[index:index + 1] for index in range(handle.shape[0])]

    # ---- stages: feat is the image pooled to stride 16, the mask its first channel's contrast
    def _image_encoder(self, image):
        g = self.geometry
        s, cell = g.feat_size, g.image_size // g.feat_size
        pooled = image[0].reshape(3, s, cell, s, cell).mean(axis=(2, 4))
        feat = np.tile(pooled, (g.hidden_dim // 3 + 1, 1, 1))[: g.hidden_dim][None].astype(np.float32)
        return {"fpn0": np.zeros((1, g.hidden_dim // 8, 4 * s, 4 * s), np.float32),
                "fpn1": np.zeros((1, g.hidden_dim // 4, 2 * s, 2 * s), np.float32), "feat": feat}

    def _prompt_encoder(self, point_coords, point_labels, mask_prompt, use_mask):
        g = self.geometry
        low = mask_prompt[:, :, ::4, ::4] * 20.0 - 10.0
        return {"sparse_prompt": np.zeros((1, point_coords.shape[1], g.hidden_dim), np.float32),
                "dense_prompt": np.zeros((1, g.hidden_dim, g.feat_size, g.feat_size), np.float32),
                "mask_prompt_lowres": low.astype(np.float32)}

    def _no_memory(self, feat):
        return {"feat_conditioned": feat.copy()}

    def _text_encoder(self, input_ids, attention_mask):
        g = self.geometry
        return {"text_tokens": np.zeros((1, input_ids.shape[1], g.hidden_dim), np.float32),
                "text_mask": attention_mask.astype(bool), "text_pooled": np.zeros((1, g.hidden_dim), np.float32)}

    def _prompt_fusion(self, feat_conditioned, text_tokens, text_mask):
        g = self.geometry
        return {"sparse_prompt": np.zeros((1, g.mqc.fusion_tokens, g.hidden_dim), np.float32),
                "dense_prompt": np.zeros_like(feat_conditioned)}

    def _dami_attention(self, feat, memory, memory_valid, fifo_age, obj_ptrs, obj_ptr_tpos, obj_ptr_valid,
                        ptr_fifo_age):
        read = memory[memory_valid].mean() if memory_valid.any() else 0.0
        return {"feat_conditioned": (feat + 0.01 * read).astype(np.float32)}

    def _memory_attention(self, feat, memory, memory_tpos, memory_valid, obj_ptrs, obj_ptr_tpos, obj_ptr_valid):
        read = [slots[valid].mean() if valid.any() else 0.0 for slots, valid in zip(memory, memory_valid)]
        return {"feat_conditioned": np.concatenate([feat + 0.01 * one for one in read]).astype(np.float32)}

    def _mask_decoder(self, feat_conditioned, fpn0, fpn1, sparse_prompt, dense_prompt, multimask):
        outputs = [self._decode_one(one) for one in feat_conditioned]
        return {name: np.concatenate([one[name] for one in outputs]) for name in outputs[0]}

    def _decode_one(self, feat_conditioned):
        first = feat_conditioned[0]
        logits = np.kron(first - first.mean(), np.ones((4, 4), np.float32)) * 10.0
        masks = np.stack([logits, logits, logits + 0.5, logits - 0.5])[None].astype(np.float32)
        return {"masks_lowres_all": masks, "ious_all": np.array([[0.9, 0.8, 0.7, 0.6]], np.float32),
                "mask_lowres": masks[:, 1:2].copy(), "iou": np.array([[0.8]], np.float32),
                "obj_ptr": np.full((1, self.geometry.hidden_dim), first.mean(), np.float32),
                "object_score": np.array([[1.0]], np.float32)}

    def _memory_encoder(self, feat, mask_lowres, object_score, binarize):
        weights = [(one > 0).mean() if binarize[0] else _sigmoid(one).mean() for one in mask_lowres]
        return {"memory": np.concatenate([feat[:, : self.geometry.mem_dim] * w for w in weights]).astype(np.float32)}

    def _quality_head(self, feat, mask_lowres, area_change):
        mean = feat.mean(axis=(2, 3))
        return {"feat_summary": np.stack([mean, mean], axis=1).astype(np.float32),
                "robustness": np.array([0.6], np.float32)}


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()
