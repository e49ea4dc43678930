"""The batched SAM 2 mode unroll (GPU training path) equals `ClipUnroller`, object by object."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.training.batched_unroll import BatchedSAM2Unroller, BatchedStart, stack_clip_features
from mqc_edge.training.clips import ClipSampling, sample_clip
from mqc_edge.training.unroll import ClipUnroller, Start

TINY = dataclasses.replace(DEFAULT_MODEL_CONFIG, image_size=64, max_text_tokens=16)
SAMPLING = ClipSampling(frames=4, image_size=64, start_shares=(0.0, 1.0, 0.0), max_objects=3)


@pytest.mark.parametrize("kind", ["box", "point"])
def test_objects_of_several_clips_in_one_batch_equal_each_alone(kind: str) -> None:
    torch.manual_seed(4)
    model = MQCSAM(TINY, text_model=False).eval()
    clips = [sample_clip(21, i, SAMPLING) for i in range(3)]
    pairs = [(c, obj) for c, clip in enumerate(clips) for obj in clip.objects]
    assert len(pairs) > len(clips)  # some clip gives several objects
    unroller = ClipUnroller(model, TrackerConfig(mode="sam2"))
    batched = BatchedSAM2Unroller(unroller)
    images = torch.from_numpy(np.concatenate([clip.images for clip in clips]))
    prompts = np.stack([obj.box if kind == "box" else obj.point for _, obj in pairs])
    with torch.no_grad():
        features = stack_clip_features(*_encoder_outputs(unroller, images), SAMPLING.frames, [c for c, _ in pairs])
        together = batched(*features, BatchedStart(kind, prompts))
        alone = [unroller(torch.from_numpy(clips[c].images), Start(kind, box=obj.box, point=obj.point))
                 for c, obj in pairs]
    for mine, theirs in zip(together, alone, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a.hypotheses, b.hypotheses, rtol=0, atol=1e-4)
            torch.testing.assert_close(a.mask_lowres, b.mask_lowres, rtol=0, atol=1e-4)
            torch.testing.assert_close(a.predicted_iou, b.predicted_iou, rtol=0, atol=1e-5)
            torch.testing.assert_close(a.object_score, b.object_score, rtol=0, atol=1e-5)
    # the objects differ (their prompts reach the IoU head), so the check above is not of one object N times
    assert (together[0][0].predicted_iou - together[1][0].predicted_iou).abs().max() > 1e-4


def _encoder_outputs(unroller: ClipUnroller, images: torch.Tensor):
    fpn0, fpn1, feat = unroller.stages["image_encoder"](images)
    return feat, fpn0, fpn1
