"""The static ground of a scene, rendered once per video: fields, town blocks, water, runways, roads, rails.

What makes an overhead frame read as satellite imagery rather than noise is structure at
several scales: field parcels with crop rows and hedges, blocks of buildings with shadows,
straight man-made strips with their markings, water with shores. Everything here is a
vectorised numpy/OpenCV function of pixel coordinates, so a 480x480 ground costs well under a
second; the renderer only translates it per frame (platform drift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mqc_edge.data.synth.spec import Point, Strip

FIELD_PAINTS = np.array(
    [
        (88, 110, 60),  # green crop
        (72, 98, 52),  # dense green crop
        (108, 126, 72),  # young crop
        (162, 150, 102),  # ripe grain
        (176, 162, 112),  # stubble
        (122, 102, 80),  # ploughed soil
        (138, 118, 92),  # dry soil
        (52, 72, 46),  # woodland
    ],
    dtype=np.float32,
)
WOODLAND = 7
TOWN_PAINT = np.array([128, 126, 122], dtype=np.float32)
ROOF_PAINTS = np.array([(168, 92, 72), (150, 150, 152), (198, 196, 190), (96, 100, 108), (140, 112, 88)], np.float32)


@dataclass(frozen=True)
class Ground:
    """A ground image with a border of `pad` px on every side, so drifted frames never run out."""

    rgb: np.ndarray  # float32 [H + 2 pad, W + 2 pad, 3]; pixel (r, c) shows scene point (c - pad, r - pad)
    water: np.ndarray  # bool, same grid: where glints may sparkle
    pad: int


def fractal_noise(shape: tuple[int, int], rng: np.random.Generator, cells: int, octaves: int) -> np.ndarray:
    """Zero-mean, unit-std smooth noise: random grids upsampled bicubically, halving per octave."""
    height, width = shape
    total = np.zeros(shape, np.float32)
    for octave in range(octaves):
        count = cells * 2**octave
        grid = rng.standard_normal((max(2, count * height // max(shape)), max(2, count * width // max(shape))))
        total += 0.5**octave * cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return (total - total.mean()) / (total.std() + 1e-6)


def _field_labels(shape: tuple[int, int], rng: np.random.Generator, field_px: float) -> np.ndarray:
    """Parcels as a Chebyshev Voronoi partition in a rotated, stretched frame: rectangular fields.

    Computed at half resolution (the parcels are tens of pixels wide) and repeated up.
    """
    height, width = shape
    half_h, half_w = (height + 1) // 2, (width + 1) // 2
    count = max(4, int(height * width / field_px**2))
    angle = rng.uniform(0.0, math.pi / 2)
    yy, xx = np.mgrid[0:half_h, 0:half_w].astype(np.float32)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    across = -xx * math.sin(angle) + yy * math.cos(angle)
    seeds = rng.uniform((0, 0), (half_w, half_h), size=(count, 2))
    stretch = rng.uniform(1.0, 2.5, size=count)
    best = np.full((half_h, half_w), np.inf, np.float32)
    labels = np.zeros((half_h, half_w), np.int32)
    for index, (sx, sy) in enumerate(seeds):
        seed_along = sx * math.cos(angle) + sy * math.sin(angle)
        seed_across = -sx * math.sin(angle) + sy * math.cos(angle)
        distance = np.maximum(np.abs(along - seed_along) * stretch[index], np.abs(across - seed_across))
        closer = distance < best
        best[closer] = distance[closer]
        labels[closer] = index
    return labels.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]


def _fields(shape: tuple[int, int], rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Parcels with per-field paint, crop-row stripes or canopy speckle, and darker hedges."""
    labels = _field_labels(shape, rng, field_px=70.0 * scale)
    count = int(labels.max()) + 1
    kinds = rng.integers(0, len(FIELD_PAINTS), size=count)
    paint = FIELD_PAINTS[kinds] + rng.uniform(-8, 8, size=(count, 3)).astype(np.float32)
    angle = rng.uniform(0, math.pi, size=count).astype(np.float32)
    period = rng.uniform(3.0, 6.0, size=count).astype(np.float32) * max(scale, 0.75)
    amplitude = rng.uniform(4.0, 12.0, size=count).astype(np.float32)
    amplitude[kinds == WOODLAND] = 0.0
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    phase = (xx * np.cos(angle[labels]) + yy * np.sin(angle[labels])) * (2 * math.pi / period[labels])
    rows = amplitude[labels] * np.sin(phase)
    canopy = np.where(kinds[labels] == WOODLAND, 14.0, 4.0) * fractal_noise(shape, rng, cells=max(8, shape[0] // 6), octaves=2)
    rgb = paint[labels] + (rows + canopy)[..., None]
    hedge = np.zeros(shape, bool)
    hedge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    hedge[1:, :] |= labels[1:, :] != labels[:-1, :]
    rgb[hedge] *= 0.72
    return rgb, labels


def _draw_town(rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator, scale: float, sun: Point) -> None:
    """Turn a few parcels into town blocks: paved ground with buildings and their shadows."""
    count = int(labels.max()) + 1
    in_town = (rng.random(count) < 0.15)[labels]
    if not in_town.any():
        return
    rgb[in_town] = TOWN_PAINT + 6.0 * fractal_noise(labels.shape, rng, cells=16, octaves=2)[in_town][:, None]
    grid_angle = rng.uniform(0, math.pi / 2)
    town_rows, town_columns = np.nonzero(in_town)
    for pick in rng.integers(0, town_rows.size, size=int(town_rows.size / (150.0 * scale**2))):
        x, y = town_columns[pick] + rng.random(), town_rows[pick] + rng.random()
        size = rng.uniform(4.0, 14.0, size=2) * scale
        corners = cv2.boxPoints(((x, y), (float(size[0]), float(size[1])), math.degrees(grid_angle)))
        shadow = corners + np.array(sun, np.float32) * float(size.max()) * 0.6
        cv2.fillConvexPoly(rgb, np.round(shadow).astype(np.int32), (60.0, 60.0, 62.0))
        roof = ROOF_PAINTS[rng.integers(len(ROOF_PAINTS))] + rng.uniform(-10, 10)
        cv2.fillConvexPoly(rgb, np.round(corners).astype(np.int32), tuple(float(c) for c in roof))


@dataclass(frozen=True)
class _StripPixels:
    """Pixel coordinates in a strip's own frame, and the strip's context, for the painters below."""

    strip: Strip
    along: np.ndarray  # px along the centre line from `start`
    across: np.ndarray  # signed px across the centre line
    inside: np.ndarray  # bool: within the strip
    length: float  # px from start to end
    scale: float  # min(width, height) / 480: markings keep their look at any frame size

    @property
    def line(self) -> float:
        """Width of painted markings, px: one pixel at least so that they survive small frames."""
        return max(1.0, 1.2 * self.scale)


def _strip_pixels(strip: Strip, xx: np.ndarray, yy: np.ndarray, scale: float) -> _StripPixels:
    dx, dy = strip.end[0] - strip.start[0], strip.end[1] - strip.start[1]
    length = math.hypot(dx, dy)
    along = ((xx - strip.start[0]) * dx + (yy - strip.start[1]) * dy) / length
    across = (-(xx - strip.start[0]) * dy + (yy - strip.start[1]) * dx) / length
    inside = (np.abs(across) <= strip.width / 2) & (along >= 0) & (along <= length)
    return _StripPixels(strip, along, across, inside, length, scale)


def _paint_water(rgb: np.ndarray, water: np.ndarray, px: _StripPixels, rng: np.random.Generator) -> None:
    """Dark water with slow tone changes and fine ripples, a sandy shore a few pixels wide."""
    reach = np.abs(px.across) <= px.strip.width / 2 + 3.0 * px.scale
    rgb[reach & (px.along >= 0) & (px.along <= px.length) & ~px.inside] = (168.0, 158.0, 128.0)
    shape = rgb.shape[:2]
    ripple = 3.0 * fractal_noise(shape, rng, cells=24, octaves=2) + 7.0 * fractal_noise(shape, rng, cells=3, octaves=2)
    rgb[px.inside] = np.array([30.0, 60.0, 74.0]) + ripple[px.inside][:, None] * np.array([0.6, 0.9, 1.0])
    water |= px.inside


def _paint_runway(rgb: np.ndarray, px: _StripPixels) -> None:
    """Concrete with rubber-darkened middle, white edge lines and dashed centre line."""
    half, line = px.strip.width / 2, px.line
    rgb[px.inside] = (176.0, 176.0, 170.0)
    rgb[px.inside & (np.abs(px.across) < half / 2)] *= 0.9
    edges = np.abs(np.abs(px.across) - (half - 2.5 * line)) < line / 2
    dashes = (np.abs(px.across) < line / 2 + 0.25) & (np.mod(px.along, 36.0 * px.scale) < 18.0 * px.scale)
    rgb[px.inside & (edges | dashes)] = (236.0, 236.0, 232.0)


def _paint_apron(rgb: np.ndarray, px: _StripPixels) -> None:
    """Concrete slabs with joints and yellow parking-stand lines."""
    period = 14.0 * px.scale
    rgb[px.inside] = (160.0, 160.0, 156.0)
    joints = (np.mod(px.along, period) < 0.9) | (np.mod(px.across + px.strip.width / 2, period) < 0.9)
    rgb[px.inside & joints] *= 0.9
    stands = (np.mod(px.along, 90.0 * px.scale) < px.line) & (np.abs(px.across) < 0.35 * px.strip.width)
    rgb[px.inside & stands] = (210.0, 186.0, 70.0)


def _paint_road(rgb: np.ndarray, px: _StripPixels) -> None:
    """Asphalt with a dashed centre line and light kerbs."""
    rgb[px.inside] = (74.0, 74.0, 78.0)
    centre = (np.abs(px.across) < px.line / 2 + 0.25) & (np.mod(px.along, 14.0 * px.scale) < 7.0 * px.scale)
    kerb = np.abs(px.across) > px.strip.width / 2 - px.line
    rgb[px.inside & (centre | kerb)] = (200.0, 200.0, 196.0)


def _paint_rail(rgb: np.ndarray, px: _StripPixels) -> None:
    """Two tracks at +-width/4 (where sampling.py puts trains) on ballast: sleepers, then rails."""
    rgb[px.inside] = (124.0, 114.0, 104.0)
    gauge = max(2.0, 0.1 * px.strip.width)
    for track in (-px.strip.width / 4, px.strip.width / 4):
        offset = np.abs(px.across - track)
        sleepers = (offset < 0.9 * gauge) & (np.mod(px.along, 3.0 * max(px.scale, 0.7)) < 1.2)
        rgb[px.inside & sleepers] = (96.0, 78.0, 62.0)
        rgb[px.inside & (np.abs(offset - gauge / 2) < 0.6)] = (70.0, 66.0, 64.0)


_PAINTERS = {"runway": _paint_runway, "apron": _paint_apron, "road": _paint_road, "rail": _paint_rail}


def render_ground(strips: tuple[Strip, ...], size: tuple[int, int], pad: int, rng: np.random.Generator,
                  sun: Point) -> Ground:
    """The ground of a `size` = (width, height) scene plus `pad` px around it; deterministic in `rng`."""
    width, height = size
    shape = (height + 2 * pad, width + 2 * pad)
    scale = min(width, height) / 480.0
    rgb, labels = _fields(shape, rng, scale)
    _draw_town(rgb, labels, rng, scale, sun)
    rgb *= (1.0 + 0.07 * fractal_noise(shape, rng, cells=3, octaves=3))[..., None]
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32) - pad
    water = np.zeros(shape, bool)
    for strip in strips:
        pixels = _strip_pixels(strip, xx, yy, scale)
        if strip.kind == "water":
            _paint_water(rgb, water, pixels, rng)
        else:
            _PAINTERS[strip.kind](rgb, pixels)
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.6)
    rgb += 2.0 * rng.standard_normal(rgb.shape, dtype=np.float32)
    return Ground(rgb=np.clip(rgb, 0, 255).astype(np.float32), water=water, pad=pad)
