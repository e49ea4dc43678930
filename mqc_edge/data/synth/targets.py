"""Target shapes seen from above, drawn as polygons with heading; the id mask is what they cover.

A shape is a list of parts in body coordinates (x forward, y to starboard, in units of the
target's length, centred on the bounding box). The frame and the id mask are filled with the
same polygons by the same rasteriser (OpenCV fillPoly, 1/16 px vertices), so the mask is exactly
the set of body pixels. Shadows and ship wakes are drawn too but belong to no mask, as in the
annotations of real satellite-video benchmarks.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from mqc_edge.data.synth.spec import Point, TargetSpec

COLORS: dict[str, tuple[float, float, float]] = {
    "white": (228.0, 228.0, 224.0),
    "silver": (188.0, 190.0, 194.0),
    "grey": (132.0, 134.0, 138.0),
    "black": (34.0, 35.0, 40.0),
    "red": (172.0, 44.0, 38.0),
    "blue": (44.0, 78.0, 156.0),
    "yellow": (214.0, 182.0, 58.0),
    "orange": (208.0, 112.0, 42.0),
    "green": (58.0, 112.0, 70.0),
}

# Paint a category plausibly carries; random scenes draw from these, hand specs may use any colour.
CATEGORY_COLORS: dict[str, tuple[str, ...]] = {
    "aircraft": ("white", "silver", "grey", "blue"),
    "ship": ("white", "red", "blue", "black", "orange", "grey"),
    "car": ("white", "black", "red", "blue", "silver", "yellow"),
    "train": ("white", "red", "blue", "green", "grey"),
}

# Half the width across the heading, as a fraction of length: the disc/capsule that the random
# scene keeps free around each target (aircraft: half the wingspan).
HALF_WIDTH: dict[str, float] = {"aircraft": 0.48, "ship": 0.09, "car": 0.23, "train": 0.024}

SUBPIXEL_BITS = 4  # fillPoly fractional bits: vertices on a 1/16 px grid

Part = tuple[np.ndarray, float]  # (polygon [N, 2] in body units, brightness factor of the paint)


def _rect(x0: float, x1: float, half_width: float) -> np.ndarray:
    return np.array([[x0, -half_width], [x1, -half_width], [x1, half_width], [x0, half_width]])


def _mirror_pair(points: list[tuple[float, float]]) -> np.ndarray:
    """A polygon symmetric about the body axis from its starboard outline, nose to tail."""
    starboard = np.array(points)
    port = starboard[::-1] * np.array([1.0, -1.0])
    return np.concatenate([starboard, port])


def _aircraft() -> list[Part]:
    fuselage = _mirror_pair([(0.5, 0.0), (0.45, 0.03), (0.36, 0.038), (-0.4, 0.032), (-0.5, 0.012)])
    wings = [
        np.array([[0.12, 0.0], [-0.12, side * 0.48], [-0.2, side * 0.48], [-0.08, 0.0]]) for side in (1.0, -1.0)
    ]
    tail = [np.array([[-0.36, 0.0], [-0.45, side * 0.17], [-0.5, side * 0.17], [-0.47, 0.0]]) for side in (1.0, -1.0)]
    engines = [_rect(0.02, 0.12, 0.02) + np.array([0.0, side * 0.17]) for side in (1.0, -1.0)]
    return [(wing, 0.93) for wing in wings] + [(part, 0.93) for part in tail] + [(fuselage, 1.0)] + [
        (engine, 0.62) for engine in engines
    ]


def _ship() -> list[Part]:
    hull = _mirror_pair([(0.5, 0.0), (0.34, 0.075), (0.2, 0.09), (-0.46, 0.09), (-0.5, 0.07)])
    hatches = [(_rect(x, x + 0.1, 0.06), 0.78) for x in (-0.06, 0.07, 0.2)]
    bridge = (_rect(-0.4, -0.24, 0.07), 1.25)
    return [(hull, 1.0), *hatches, bridge]


def _car() -> list[Part]:
    body = _mirror_pair([(0.5, 0.12), (0.44, 0.225), (-0.44, 0.225), (-0.5, 0.12)])
    windshield = (_rect(0.1, 0.24, 0.18), 0.3)
    rear_window = (_rect(-0.34, -0.25, 0.17), 0.35)
    return [(body, 1.0), windshield, rear_window]


def _train(wagons: int = 5, gap: float = 0.012) -> list[Part]:
    wagon_length = (1.0 - gap * (wagons - 1)) / wagons
    parts: list[Part] = []
    for index in range(wagons):
        front = 0.5 - index * (wagon_length + gap)
        if index == 0:
            outline = _mirror_pair([(front, 0.012), (front - 0.02, 0.024), (front - wagon_length, 0.024)])
        else:
            outline = _rect(front - wagon_length, front, 0.024)
        parts.append((outline, 1.0))
        parts.append((_rect(front - wagon_length + 0.01, front - 0.03, 0.008), 0.8))
    return parts


_SHAPES = {"aircraft": _aircraft, "ship": _ship, "car": _car, "train": _train}


@lru_cache(maxsize=None)
def body_parts(category: str) -> tuple[Part, ...]:
    return tuple(_SHAPES[category]())


def world_polygons(target: TargetSpec, center: Point) -> list[tuple[np.ndarray, float]]:
    """The parts placed at `center` with the target's heading, as fillPoly int32 vertices."""
    heading = math.radians(target.heading_deg)
    forward = np.array([math.cos(heading), math.sin(heading)])
    starboard = np.array([-math.sin(heading), math.cos(heading)])
    placed = []
    for outline, brightness in body_parts(target.category):
        points = np.asarray(center) + target.length * (outline[:, :1] * forward + outline[:, 1:] * starboard)
        placed.append((np.round(points * (1 << SUBPIXEL_BITS)).astype(np.int32), brightness))
    return placed


def draw_body(canvas: np.ndarray, ids: np.ndarray, target: TargetSpec, obj_id: int, center: Point) -> None:
    """Paint the target on `canvas` (float RGB) and write `obj_id` on exactly those pixels of `ids`."""
    paint = np.asarray(COLORS[target.color])
    for polygon, brightness in world_polygons(target, center):
        color = tuple(float(c) for c in np.clip(paint * brightness, 0, 255))
        cv2.fillPoly(canvas, [polygon], color, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
        cv2.fillPoly(ids, [polygon], obj_id, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)


def draw_shadow(layer: np.ndarray, target: TargetSpec, center: Point, offset: Point) -> None:
    """Mark on `layer` (uint8) the sun shadow: the silhouette moved by offset * length."""
    shifted = (center[0] + offset[0] * target.length, center[1] + offset[1] * target.length)
    for polygon, _ in world_polygons(target, shifted):
        cv2.fillPoly(layer, [polygon], 1, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)


FOAM = np.array([232.0, 238.0, 238.0], dtype=np.float32)
KELVIN_SLOPE = math.tan(math.radians(19.47))  # Kelvin wake half-angle, deep-water ship waves


def draw_wake(canvas: np.ndarray, target: TargetSpec, center: Point, reference_speed: float) -> None:
    """Blend foam behind a moving ship: a turbulent centre trail plus the two Kelvin arms.

    The wake grows with speed (`reference_speed` px/frame gives a wake about 2.5 lengths long),
    which is what lets an annotator call a ship "moving" from one frame.
    """
    speed = math.hypot(*target.velocity)
    if target.category != "ship" or speed == 0.0:
        return
    length = target.length * (1.0 + 1.5 * min(speed / reference_speed, 1.5))
    heading = math.radians(target.heading_deg)
    forward = np.array([math.cos(heading), math.sin(heading)])
    starboard = np.array([-math.sin(heading), math.cos(heading)])
    stern = np.asarray(center) - forward * target.length * 0.5
    spread = length * KELVIN_SLOPE + 0.2 * target.length
    corners = np.array([stern + starboard * side * spread + forward * ahead for side in (-1, 1) for ahead in (0.0, -length)])
    height, width = canvas.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, (width, height))
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    behind = -((xx - stern[0]) * forward[0] + (yy - stern[1]) * forward[1])
    across = np.abs((xx - stern[0]) * starboard[0] + (yy - stern[1]) * starboard[1])
    fade = np.exp(-behind / length) * (behind > 0)
    trail_width = 0.09 * target.length * (1.0 + 0.6 * behind / target.length)
    trail = 0.6 * np.sqrt(np.clip(1.0 - across / trail_width, 0.0, 1.0)) * np.exp(-behind / (0.4 * length))
    arms = 0.3 * np.exp(-(((across - behind * KELVIN_SLOPE) / (0.6 + 0.02 * behind)) ** 2))
    alpha = (np.maximum(trail, arms) * fade)[..., None]
    region = canvas[y0:y1, x0:x1]
    region *= 1.0 - alpha
    region += alpha * FOAM


def rasterised_area(category: str, length: float) -> int:
    """Pixels a body of this length covers (heading 0); thin parts make small bodies fatter than their polygons."""
    size = int(math.ceil(length)) + 8
    ids = np.zeros((size, size), np.uint8)
    probe = TargetSpec(category=category, center=(size / 2, size / 2), heading_deg=0.0, length=length)
    for polygon, _ in world_polygons(probe, probe.center):
        cv2.fillPoly(ids, [polygon], 1, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    return int(ids.sum())


@lru_cache(maxsize=None)
def _area_per_length_squared(category: str) -> float:
    return rasterised_area(category, 900.0) / 900.0**2


def length_for_area(category: str, area_px: float) -> float:
    """The length whose rasterised body covers about `area_px` pixels: the polygon estimate, corrected twice."""
    length = math.sqrt(area_px / _area_per_length_squared(category))
    for _ in range(2):
        length *= math.sqrt(area_px / max(rasterised_area(category, length), 1))
    return length
