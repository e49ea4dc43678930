"""The memory probe: frame 0 is the same under every probe, and the probes change what they claim to."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.training.clips import VALIDATION_SEED, ClipSampling, sample_clip
from mqc_edge.training.memory_probe import identity_iou, per_frame_jf, probe_unroller
from mqc_edge.training.unroll import Start

TINY = dataclasses.replace(DEFAULT_MODEL_CONFIG, image_size=64, max_text_tokens=16)


def test_probes_keep_frame_0_and_change_the_tracked_frames() -> None:
    torch.manual_seed(0)
    model = MQCSAM(TINY, text_model=False).eval()
    clip = sample_clip(VALIDATION_SEED, 0, ClipSampling(frames=3, image_size=64, degraded_share=0.0))
    images, start = torch.from_numpy(clip.images), Start("box", box=clip.objects[0].box)
    with torch.no_grad():
        runs = {probe: probe_unroller(model, probe)(images, start) for probe in ("normal", "zero-memory", "no-content")}
    for probe, outputs in runs.items():
        torch.testing.assert_close(outputs[0].hypotheses, runs["normal"][0].hypotheses, rtol=0, atol=0)
        if probe != "normal":  # each probe reaches the tracked frames' heads
            assert (outputs[1].predicted_iou - runs["normal"][1].predicted_iou).abs().max() > 1e-5, probe
    jf = per_frame_jf(model, "normal", "box", clips=2, frames=3)
    assert jf.shape == (3,) and np.all((0 <= jf) & (jf <= 1))


def test_identity_scores_each_tracked_object_against_itself_and_the_others() -> None:
    torch.manual_seed(0)
    model = MQCSAM(TINY, text_model=False).eval()
    own, other, pairs = identity_iou(model, clips=4, frames=3)
    assert pairs >= 2  # some validation clip prompts several objects
    assert 0 <= own <= 1 and 0 <= other <= 1


def test_identity_tells_an_object_tracked_as_itself_from_one_tracked_as_another(monkeypatch) -> None:
    """With every object's masks its own ground truth, own IoU is high and other IoU low; with every
    object given the first object's masks (identity lost), own IoU falls."""
    import torch.nn.functional as F

    from mqc_edge.training import memory_probe
    from mqc_edge.training.unroll import FrameOutput

    sampling = ClipSampling(frames=3, image_size=256, degraded_share=0.0, start_shares=(0.0, 1.0, 0.0), max_objects=4)
    clip = next(c for c in (sample_clip(VALIDATION_SEED, i, sampling) for i in range(20)) if len(c.objects) > 1)
    monkeypatch.setattr(memory_probe, "sample_clip", lambda *args, **kwargs: clip)

    def lowres(mask: np.ndarray) -> torch.Tensor:  # the decoder's S/4 logits of that mask
        return 20 * F.avg_pool2d(torch.from_numpy(mask.astype(np.float32))[None, None], 4) - 10

    def tracked_as(chosen):
        return lambda self, images, starts: [[FrameOutput(None, None, None, lowres(m), None, (), None) for m in obj.masks]
                                             for obj in chosen]

    model = MQCSAM(TINY, text_model=False).eval()
    monkeypatch.setattr(memory_probe.ClipUnroller, "objects", tracked_as(clip.objects))
    own, other, pairs = memory_probe.identity_iou(model, clips=1, frames=3)
    assert pairs == len(clip.objects) * (len(clip.objects) - 1)
    assert own > 0.5 and other < 0.1
    monkeypatch.setattr(memory_probe.ClipUnroller, "objects", tracked_as([clip.objects[0]] * len(clip.objects)))
    lost_own, lost_other, _ = memory_probe.identity_iou(model, clips=1, frames=3)
    assert lost_own < own and lost_other > other
