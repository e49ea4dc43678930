"""The memory probe: frame 0 is the same under every probe, and the probes change what they claim to."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.training.clips import VALIDATION_SEED, ClipSampling, sample_clip
from mqc_edge.training.memory_probe import per_frame_jf, probe_unroller
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
