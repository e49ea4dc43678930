"""Deterministic synthetic satellite video with exact masks and frame-0 referring expressions.

`generate_dataset` writes a random RS-RVOS dataset (`mqc-edge data synth`); `render_video`
renders any SceneSpec, random (`random_scene`) or written by hand for mechanism tests.
"""

from mqc_edge.data.synth.generate import generate_dataset
from mqc_edge.data.synth.sampling import random_scene
from mqc_edge.data.synth.scene import SynthVideo, render_video
from mqc_edge.data.synth.spec import Bridge, Cloud, Degradation, SceneSpec, Strip, TargetSpec

__all__ = [
    "Bridge",
    "Cloud",
    "Degradation",
    "SceneSpec",
    "Strip",
    "SynthVideo",
    "TargetSpec",
    "generate_dataset",
    "random_scene",
    "render_video",
]
