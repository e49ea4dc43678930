"""Clouds and bridges drawn above the targets, and the visibility rule that makes masks exact.

A target pixel stays in the id mask while what covers it is less than half opaque
(`VISIBLE_BELOW`): under a cloud's thin edge the target still shows, under its core or a
bridge deck it is gone, so an occluded target has a partial or empty mask in those frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mqc_edge.data.synth.ground import fractal_noise
from mqc_edge.data.synth.spec import Bridge, Point
from mqc_edge.data.synth.targets import SUBPIXEL_BITS

VISIBLE_BELOW = 0.5  # opacity at which a covered target pixel leaves the mask
DECK = (186.0, 183.0, 176.0)
RAILING = (96.0, 96.0, 98.0)
SPRITE_REACH = 1.5  # sprite half-size in radii: room for the rim that noise pushes outward
CLOUD_WHITE = np.array([236.0, 238.0, 242.0], np.float32)


@dataclass(frozen=True)
class CloudSprite:
    """A cloud's opacity and colour, made once per video and moved each frame."""

    alpha: np.ndarray  # float32 [S, S] in 0..1, opaque core, ragged thin edge
    rgb: np.ndarray  # float32 [S, S, 3]


def make_cloud_sprite(radius: float, rng: np.random.Generator) -> CloudSprite:
    """Opacity = a soft disc whose rim smooth noise pushes in and out: an opaque core, a ragged edge."""
    half = int(math.ceil(SPRITE_REACH * radius))
    size = 2 * half + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    distance = np.hypot(xx, yy) / radius
    falloff = 1.0 - distance
    lumps = fractal_noise((size, size), rng, cells=3, octaves=3)
    rim = 0.35 * lumps * (1.0 - np.clip(falloff, 0.0, 1.0))
    taper = np.clip((SPRITE_REACH - 0.25 - distance) / 0.3, 0.0, 1.0)  # zero 2.5 blur sigmas inside the border
    alpha = np.clip(2.4 * (falloff + rim), 0.0, 1.0) * taper
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(radius / 10.0, 0.5))
    shade = 1.0 - 0.08 * np.clip(fractal_noise((size, size), rng, cells=6, octaves=2), -2, 2)[..., None]
    return CloudSprite(alpha=alpha.astype(np.float32), rgb=(CLOUD_WHITE * shade).astype(np.float32))


def draw_cloud(canvas: np.ndarray, ids: np.ndarray, sprite: CloudSprite, center: Point) -> None:
    """Blend the sprite centred on `center` (rounded to a pixel) and hide the covered targets."""
    height, width = ids.shape
    half = sprite.alpha.shape[0] // 2
    left, top = int(round(center[0])) - half, int(round(center[1])) - half
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + sprite.alpha.shape[1], width), min(top + sprite.alpha.shape[0], height)
    if x0 >= x1 or y0 >= y1:
        return
    alpha = sprite.alpha[y0 - top : y1 - top, x0 - left : x1 - left]
    region = canvas[y0:y1, x0:x1]
    region *= 1.0 - alpha[..., None]
    region += alpha[..., None] * sprite.rgb[y0 - top : y1 - top, x0 - left : x1 - left]
    ids[y0:y1, x0:x1][alpha >= VISIBLE_BELOW] = 0


def draw_bridge(canvas: np.ndarray, ids: np.ndarray, bridge: Bridge, shift: Point) -> None:
    """An opaque deck with railings along both edges; every pixel it covers leaves the masks."""
    start = np.add(bridge.start, shift)
    end = np.add(bridge.end, shift)
    along = (end - start) / np.linalg.norm(end - start)
    normal = np.array([-along[1], along[0]]) * bridge.width / 2
    corners = np.array([start + normal, end + normal, end - normal, start - normal])
    covered = np.zeros(ids.shape, np.uint8)
    unit = 1 << SUBPIXEL_BITS
    cv2.fillPoly(covered, [np.round(corners * unit).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    for side in (1.0, -1.0):
        rail_from, rail_to = (np.round((end_point + side * normal * 0.85) * unit).astype(int) for end_point in (start, end))
        cv2.line(covered, tuple(rail_from), tuple(rail_to), 2, thickness=1, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    canvas[covered == 1] = DECK
    canvas[covered == 2] = RAILING
    ids[covered > 0] = 0
