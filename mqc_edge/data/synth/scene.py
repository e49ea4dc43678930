"""Rendering a SceneSpec frame by frame: drifted ground, shadows, wakes, targets, occluders, degradations.

Randomness comes only from `seed`, split into independent streams (ground, per-frame glints and
noise, per-cloud shapes, expression wording), so removing a target from a spec changes nothing
but the pixels that target drew: that is what the exact-mask test relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mqc_edge.data.dataset import Expression
from mqc_edge.data.synth.degrade import degrade
from mqc_edge.data.synth.expressions import make_expressions
from mqc_edge.data.synth.ground import Ground, render_ground
from mqc_edge.data.synth.occluders import draw_bridge, draw_cloud, make_cloud_sprite
from mqc_edge.data.synth.spec import SceneSpec, TargetSpec, validate_scene
from mqc_edge.data.synth.targets import COLORS, draw_body, draw_shadow, draw_wake
from mqc_edge.errors import ConfigError

GROUND_STREAM, FRAME_STREAM, CLOUD_STREAM, WORDING_STREAM = range(4)
SHADOW_DARKENING = 0.55  # fraction of light left in a sun shadow on open ground (a chosen value)
GLINTS_PER_WATER_PX = 1 / 900  # sun glints on water per pixel per frame (a chosen value)
SHIP_WAKE_SPEED = 0.6  # px/frame at 480 px that gives a fully developed wake (a chosen value)


@dataclass(frozen=True)
class SynthVideo:
    """A rendered video: frames, exact id masks and the frame-0 expressions."""

    scene: SceneSpec
    frames: list[np.ndarray]  # uint8 RGB [H, W, 3] per frame
    id_masks: list[np.ndarray]  # uint8 [H, W] per frame: obj id (1..K) of each visible body pixel, 0 elsewhere
    expressions: list[Expression]

    @property
    def objects(self) -> dict[int, TargetSpec]:
        """obj id -> the target's spec (category, moving, is_distractor, ...)."""
        return {obj_id: target for obj_id, target in enumerate(self.scene.targets, start=1)}


def check_seed(seed: int) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected an integer >= 0, got {seed!r}")


class SceneRenderer:
    """Holds what is fixed for a video (ground, cloud sprites) and renders any frame t from it."""

    def __init__(self, scene: SceneSpec, seed: int) -> None:
        validate_scene(scene, set(COLORS))
        check_seed(seed)
        self.scene = scene
        self.seed = seed
        pad = int(math.ceil(scene.drift_px)) + 2
        shadow_norm = math.hypot(*scene.shadow) or 1.0
        sun = (scene.shadow[0] / shadow_norm, scene.shadow[1] / shadow_norm)
        ground_rng = np.random.default_rng([seed, GROUND_STREAM])
        self.ground: Ground = render_ground(scene.strips, (scene.width, scene.height), pad, ground_rng, sun)
        self.water_pixels = np.flatnonzero(self.ground.water)
        self.clouds = [make_cloud_sprite(cloud.radius, np.random.default_rng([seed, CLOUD_STREAM, index]))
                       for index, cloud in enumerate(scene.clouds)]
        self.wake_speed = SHIP_WAKE_SPEED * min(scene.width, scene.height) / 480.0

    def _background(self, drift: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
        """The ground with this frame's glints, translated by the platform drift (bilinear, sub-pixel)."""
        ground = self.ground.rgb
        if self.water_pixels.size:
            ground = ground.copy()
            count = max(1, int(self.water_pixels.size * GLINTS_PER_WATER_PX))
            spots = self.water_pixels[rng.integers(0, self.water_pixels.size, count)]
            ground.reshape(-1, 3)[spots] += rng.uniform(60.0, 150.0, size=(count, 1)).astype(np.float32)
        pad = self.ground.pad
        shift = np.array([[1.0, 0.0, pad - drift[0]], [0.0, 1.0, pad - drift[1]]], np.float32)
        return cv2.warpAffine(ground, shift, (self.scene.width, self.scene.height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)

    def _draw_targets(self, canvas: np.ndarray, ids: np.ndarray, t: int, drift: tuple[float, float]) -> None:
        """Shadows of all targets, then wakes, then bodies: no shadow or wake ever covers a body."""
        centers = [(x + drift[0], y + drift[1]) for x, y in (target.center_at(t) for target in self.scene.targets)]
        shadows = np.zeros(ids.shape, np.uint8)
        for target, center in zip(self.scene.targets, centers):
            draw_shadow(shadows, target, center, self.scene.shadow)
        canvas[shadows > 0] *= SHADOW_DARKENING
        for target, center in zip(self.scene.targets, centers):
            draw_wake(canvas, target, center, self.wake_speed)
        for obj_id, (target, center) in enumerate(zip(self.scene.targets, centers), start=1):
            draw_body(canvas, ids, target, obj_id, center)

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 RGB [H, W, 3], uint8 ids [H, W]) of frame t."""
        scene = self.scene
        rng = np.random.default_rng([self.seed, FRAME_STREAM, t])
        drift = scene.drift_at(t)
        canvas = self._background(drift, rng)
        ids = np.zeros((scene.height, scene.width), np.uint8)
        self._draw_targets(canvas, ids, t, drift)
        for bridge in scene.bridges:
            draw_bridge(canvas, ids, bridge, drift)
        for cloud, sprite in zip(scene.clouds, self.clouds):
            x, y = cloud.center_at(t)
            draw_cloud(canvas, ids, sprite, (x + drift[0], y + drift[1]))
        if scene.degradation is not None:
            canvas = degrade(canvas, scene.degradation, t, rng)
        return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), ids

    def expressions(self, ids_frame0: np.ndarray) -> list[Expression]:
        return make_expressions(ids_frame0, self.scene.targets, np.random.default_rng([self.seed, WORDING_STREAM]))


def render_video(scene: SceneSpec, frames: int, seed: int) -> SynthVideo:
    """Render `frames` frames of a (random or hand-made) scene; same (scene, seed) -> same arrays."""
    if frames < 1:
        raise ConfigError(f"frames: expected at least 1, got {frames}")
    renderer = SceneRenderer(scene, seed)
    rendered = [renderer.frame(t) for t in range(frames)]
    return SynthVideo(
        scene=scene,
        frames=[rgb for rgb, _ in rendered],
        id_masks=[ids for _, ids in rendered],
        expressions=renderer.expressions(rendered[0][1]),
    )
