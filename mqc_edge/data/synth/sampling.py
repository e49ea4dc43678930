"""Random SceneSpecs that look like satellite video: a layout of parallel bands, targets where they belong.

The ground is laid out as parallel bands (water, an airport's runway and apron, a railway,
roads) across the frame, the way infrastructure runs side by side in real overhead scenes.
Each category lives on its band: ships on water, taxiing aircraft on the runway and parked
ones on the apron, cars in road lanes, trains on tracks. Every referred target gets look-alike
distractors of its category that differ from it in paint or in motion, so that frame-0 words
can always single it out; some videos get a cloud or a bridge that hides a referred target
for a while.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mqc_edge.data.synth.spec import CATEGORIES, Bridge, Cloud, Degradation, SceneSpec, Strip, TargetSpec
from mqc_edge.data.synth.targets import CATEGORY_COLORS, HALF_WIDTH, length_for_area
from mqc_edge.errors import ConfigError

# Fraction of the frame a target covers, inside the 0.05%..2% with room for rasterisation.
AREA_FRACTION = {"aircraft": (0.0025, 0.016), "ship": (0.001, 0.012), "car": (0.0008, 0.002), "train": (0.0015, 0.006)}
# px/frame at 480 px: a chosen spread of taxiing, sailing, driving and train speeds.
SPEED = {"aircraft": (0.6, 2.2), "ship": (0.25, 1.0), "car": (0.6, 2.0), "train": (0.8, 2.2)}
# Band widths as fractions of min(width, height).
BAND_WIDTH = {"water": (0.25, 0.4), "runway": (0.11, 0.13), "apron": (0.28, 0.3), "rail": (0.07, 0.08), "road": (0.07, 0.09)}
# (band for a moving target, band for a stationary one)
HOME_BANDS = {"aircraft": ("runway", "apron"), "ship": ("water", "water"), "car": ("road", "road"), "train": ("rail", "rail")}
MOVING_PROBABILITY = 0.65
OCCLUSION_PROBABILITY = 0.6
PLACEMENT_ATTEMPTS = 40
LAYOUT_ATTEMPTS = 50


@dataclass(frozen=True)
class _Band:
    kind: str
    center: np.ndarray  # a point of the centre line, px
    forward: np.ndarray  # unit vector along the band
    width: float  # px

    @property
    def normal(self) -> np.ndarray:
        return np.array([-self.forward[1], self.forward[0]])

    def point(self, along: float, across: float) -> np.ndarray:
        return self.center + along * self.forward + across * self.normal

    def strip(self, reach: float) -> Strip:
        start, end = self.point(-reach, 0.0), self.point(reach, 0.0)
        return Strip(self.kind, (float(start[0]), float(start[1])), (float(end[0]), float(end[1])), self.width)


@dataclass(frozen=True)
class _Placed:
    target: TargetSpec
    band: _Band


def _band_groups(rng: np.random.Generator, categories: set[str]) -> list[list[str]]:
    """Which bands the scene has; an airport's runway and apron stay side by side as one group."""
    groups = []
    if "ship" in categories or rng.random() < 0.3:
        groups.append(["water"])
    if "aircraft" in categories:
        groups.append(["runway", "apron"] if rng.random() < 0.5 else ["apron", "runway"])
    if "train" in categories:
        groups.append(["rail"])
    if "car" in categories or rng.random() < 0.6:
        groups.append(["road"])
        if rng.random() < 0.4:
            groups.append(["road"])
    rng.shuffle(groups)
    return groups


def _layout(rng: np.random.Generator, width: int, height: int, categories: set[str]) -> list[_Band]:
    """Stack the band groups across the frame with random gaps, all parallel to one direction."""
    short = min(width, height)
    angle = rng.uniform(0.0, math.pi)
    forward = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-forward[1], forward[0]])
    middle = np.array([(width - 1) / 2, (height - 1) / 2])
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]]) - middle
    low, high = (corners @ normal).min(), (corners @ normal).max()
    groups = _band_groups(rng, categories)
    widths = [[rng.uniform(*BAND_WIDTH[kind]) * short for kind in group] for group in groups]
    inner_gap = 0.02 * short
    total = sum(sum(group) + inner_gap * (len(group) - 1) for group in widths)
    gaps = rng.dirichlet(np.ones(len(groups) + 1)) * max(high - low - total, 0.0)
    bands, offset = [], low
    for group, group_widths, gap in zip(groups, widths, gaps):
        offset += gap
        for kind, band_width in zip(group, group_widths):
            bands.append(_Band(kind, middle + normal * (offset + band_width / 2), forward, band_width))
            offset += band_width + inner_gap
        offset -= inner_gap
    return bands


def _extent(category: str, length: float, heading: float) -> np.ndarray:
    """Half extents (x, y) of the target's body rectangle at this heading."""
    forward = np.abs([math.cos(heading), math.sin(heading)])
    return length / 2 * forward + HALF_WIDTH[category] * length * forward[::-1]


def _along_range(band: _Band, across: float, extent: np.ndarray, width: int, height: int) -> tuple[float, float]:
    """Positions along the band where the body stays wholly inside the frame."""
    low, high = -np.inf, np.inf
    origin = band.point(0.0, across)
    for axis, size in ((0, width), (1, height)):
        lo_bound, hi_bound = extent[axis], size - 1 - extent[axis]
        step = band.forward[axis]
        if abs(step) < 1e-9:
            if not lo_bound <= origin[axis] <= hi_bound:
                return 0.0, -1.0
            continue
        ends = sorted(((lo_bound - origin[axis]) / step, (hi_bound - origin[axis]) / step))
        low, high = max(low, ends[0]), min(high, ends[1])
    return low, high


def _pose(rng: np.random.Generator, band: _Band, category: str, moving: bool, length: float,
          bands: list[_Band]) -> tuple[float, float]:
    """(across offset, heading in radians) of a target on its band."""
    along_band = math.atan2(band.forward[1], band.forward[0])
    reverse = rng.random() < 0.5
    if band.kind in ("road", "rail"):
        lane = band.width / 4
        return (lane if reverse else -lane), along_band + (math.pi if reverse else 0.0)
    if band.kind == "runway":
        return 0.0, along_band + (math.pi if reverse else 0.0)
    if band.kind == "apron":
        runway = next(other for other in bands if other.kind == "runway")
        toward = 1.0 if float((runway.center - band.center) @ band.normal) > 0 else -1.0
        return rng.uniform(-0.1, 0.1) * band.width, along_band + toward * math.pi / 2
    room = band.width / 2 - (HALF_WIDTH[category] if moving else 0.5) * length - 2.0
    heading = along_band + (math.pi if reverse else 0.0) if moving else rng.uniform(0.0, 2 * math.pi)
    return rng.uniform(-room, room) if room > 0 else 0.0, heading


def _propose(rng: np.random.Generator, category: str, moving: bool, color: str, bands: list[_Band],
             frames: int, size: tuple[int, int], target_scale: float = 1.0) -> _Placed | None:
    """A random pose for the category on its home band, or None if it does not fit in the frame;
    `target_scale` multiplies the target's length (its sampled area by the square)."""
    width, height = size
    kind = HOME_BANDS[category][0 if moving else 1]
    homes = [band for band in bands if band.kind == kind]
    if not homes:
        return None
    band = homes[int(rng.integers(len(homes)))]
    area = target_scale**2 * rng.uniform(*AREA_FRACTION[category]) * width * height
    length = length_for_area(category, area)
    if kind == "apron":
        length = min(length, 0.9 * band.width)
    if kind == "water" and not moving:
        length = min(length, band.width - 4.0)
    across, heading = _pose(rng, band, category, moving, length, bands)
    low, high = _along_range(band, across, _extent(category, length, heading), width, height)
    if high < low:
        return None
    direction = np.array([math.cos(heading), math.sin(heading)])
    speed = 0.0
    if moving:
        speed = rng.uniform(*SPEED[category]) * min(width, height) / 480.0
        speed = min(speed, 0.9 * (high - low) / max(frames - 1, 1))
    travel = speed * (frames - 1) * float(direction @ band.forward)
    start = rng.uniform(low - min(travel, 0.0), high - max(travel, 0.0))
    center = band.point(start, across)
    target = TargetSpec(
        category=category,
        center=(float(center[0]), float(center[1])),
        heading_deg=math.degrees(heading) % 360.0,
        length=float(length),
        velocity=(float(speed * direction[0]), float(speed * direction[1])),
        color=color,
    )
    return _Placed(target, band)


def _segment_distance(p: np.ndarray, q: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Distance between segments pq and rs, vectorised over the leading axis (sampled by endpoints)."""
    def point_to_segment(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ab = b - a
        t = np.clip(np.sum((point - a) * ab, axis=-1) / np.maximum(np.sum(ab * ab, axis=-1), 1e-9), 0.0, 1.0)
        return np.linalg.norm(point - (a + t[..., None] * ab), axis=-1)

    return np.minimum.reduce([point_to_segment(p, r, s), point_to_segment(q, r, s),
                              point_to_segment(r, p, q), point_to_segment(s, p, q)])


def _axis(target: TargetSpec, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    heading = math.radians(target.heading_deg)
    half = 0.5 * target.length * np.array([math.cos(heading), math.sin(heading)])
    centers = np.asarray(target.center) + times[:, None] * np.asarray(target.velocity)
    return centers - half, centers + half


def _collides(candidate: TargetSpec, placed: list[_Placed], frames: int) -> bool:
    """Whether the two bodies (capsules around their axes) come close at any sampled frame."""
    times = np.linspace(0.0, max(frames - 1, 0), min(frames, 40))
    step = (frames - 1) / max(len(times) - 1, 1)
    ends = _axis(candidate, times)
    for other in placed:
        target = other.target
        clearance = (HALF_WIDTH[candidate.category] * candidate.length + HALF_WIDTH[target.category] * target.length
                     + 3.0 + step * (math.hypot(*candidate.velocity) + math.hypot(*target.velocity)))
        if (_segment_distance(*ends, *_axis(target, times)) < clearance).any():
            return True
    return False


def _place(rng: np.random.Generator, category: str, moving: bool, color: str, bands: list[_Band],
           placed: list[_Placed], frames: int, size: tuple[int, int], target_scale: float) -> _Placed | None:
    for _ in range(PLACEMENT_ATTEMPTS):
        proposal = _propose(rng, category, moving, color, bands, frames, size, target_scale)
        if proposal is not None and not _collides(proposal.target, placed, frames):
            return proposal
    return None


def _distractor_look(rng: np.random.Generator, referent: TargetSpec) -> tuple[bool, str]:
    """(moving, color) of a look-alike: same paint only if it differs in motion, so words still tell them apart."""
    moving = bool(rng.random() < 0.5)
    palette = CATEGORY_COLORS[referent.category]
    if moving != referent.moving and rng.random() < 0.6:
        return moving, referent.color
    others = [color for color in palette if color != referent.color]
    return moving, others[int(rng.integers(len(others)))]


def _targets(rng: np.random.Generator, bands: list[_Band], categories: list[str], frames: int,
             size: tuple[int, int], target_scale: float) -> list[_Placed]:
    """One referred target per category, each followed by 0-2 look-alike distractors."""
    placed: list[_Placed] = []
    for category in categories:
        palette = CATEGORY_COLORS[category]
        referent = _place(rng, category, bool(rng.random() < MOVING_PROBABILITY), palette[int(rng.integers(len(palette)))],
                          bands, placed, frames, size, target_scale)
        if referent is None:
            continue
        placed.append(referent)
        for _ in range(int(rng.choice(3, p=[0.25, 0.45, 0.3]))):
            moving, color = _distractor_look(rng, referent.target)
            distractor = _place(rng, category, moving, color, bands, placed, frames, size, target_scale)
            if distractor is not None:
                placed.append(_Placed(replace(distractor.target, is_distractor=True), distractor.band))
    return placed


def _clear_at_frame0(referents: list[TargetSpec], blocked: np.ndarray, radius: float) -> bool:
    return all(np.linalg.norm(np.asarray(target.center) - blocked) > radius + target.length / 2 for target in referents)


def _bridge_over(rng: np.random.Generator, victim: _Placed, referents: list[TargetSpec], frames: int,
                 short: float) -> Bridge | None:
    """A deck across the victim's band on its path, reached after frame 0 (frame 0 must stay clear)."""
    target, band = victim.target, victim.band
    speed = math.hypot(*target.velocity)
    deck = rng.uniform(0.5, 1.2) * target.length
    t_cover = max(rng.uniform(0.35, 0.75) * (frames - 1), (deck / 2 + target.length / 2 + 2.0) / speed)
    if t_cover > frames - 2:
        return None
    on_path = np.asarray(target.center_at(t_cover))
    middle = band.center + band.forward * float((on_path - band.center) @ band.forward)
    span = band.width / 2 + 0.04 * short
    start, end = middle - band.normal * span, middle + band.normal * span
    for other in referents:
        offset = np.asarray(other.center) - middle
        if abs(float(offset @ band.forward)) < deck / 2 + other.length / 2 + 2.0 and abs(float(offset @ band.normal)) < span + other.length / 2:
            return None
    return Bridge((float(start[0]), float(start[1])), (float(end[0]), float(end[1])), float(deck))


def _cloud_over(rng: np.random.Generator, victim: TargetSpec, referents: list[TargetSpec], frames: int,
                short: float) -> Cloud | None:
    """A cloud whose core passes over the victim mid-video and which covers no referent at frame 0."""
    radius = max(rng.uniform(0.7, 1.3) * victim.length, 0.08 * short)
    crossing_frames = max(rng.uniform(0.15, 0.35) * frames, 2.0)
    speed = (2 * radius + victim.length) / crossing_frames
    t_cover = rng.uniform(0.35, 0.75) * (frames - 1)
    over = np.asarray(victim.center_at(t_cover))
    for _ in range(8):
        angle = rng.uniform(0.0, 2 * math.pi)
        velocity = speed * np.array([math.cos(angle), math.sin(angle)])
        start = over - velocity * t_cover
        if _clear_at_frame0(referents, start, radius):
            return Cloud((float(start[0]), float(start[1])), float(radius), (float(velocity[0]), float(velocity[1])))
    return None


def _occlusion(rng: np.random.Generator, placed: list[_Placed], frames: int, short: float) -> tuple[tuple[Bridge, ...], tuple[Cloud, ...]]:
    referred = [item for item in placed if not item.target.is_distractor]
    if frames < 8 or not referred or rng.random() >= OCCLUSION_PROBABILITY:
        return (), ()
    victim = referred[int(rng.integers(len(referred)))]
    referents = [item.target for item in referred]
    if victim.target.moving and victim.target.category != "aircraft" and rng.random() < 0.5:
        bridge = _bridge_over(rng, victim, referents, frames, short)
        if bridge is not None:
            return (bridge,), ()
    cloud = _cloud_over(rng, victim.target, referents, frames, short)
    return (), (() if cloud is None else (cloud,))


def _degradation(rng: np.random.Generator, frames: int) -> Degradation:
    """Random peak strengths; each kind is on with probability 3/4 and at least one is on."""
    on = rng.random(4) < 0.75
    if not on.any():
        on[int(rng.integers(4))] = True
    return Degradation(
        noise_sigma=float(on[0] * rng.uniform(3.0, 10.0)),
        blur_sigma=float(on[1] * rng.uniform(0.6, 1.8)),
        haze=float(on[2] * rng.uniform(0.15, 0.45)),
        darkness=float(on[3] * rng.uniform(0.25, 0.6)),
        period=float(rng.uniform(max(8.0, frames / 2), max(16.0, 1.5 * frames))),
        phase=float(rng.uniform(0.0, 2 * math.pi)),
    )


def random_scene(rng: np.random.Generator, size: tuple[int, int], frames: int, degrade: bool = False,
                 target_scale: float = 1.0) -> SceneSpec:
    """A random satellite-like scene for `frames` frames of `size` = (width, height) px; targets
    `target_scale` times their usual length (0.25: the 10-30 px cars of a 1920x1080 orbit frame)."""
    width, height = size
    short = min(width, height)
    primary = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    categories = [primary] + [c for c in CATEGORIES if c != primary and rng.random() < 0.35]
    for _ in range(LAYOUT_ATTEMPTS):
        bands = _layout(rng, width, height, set(categories))
        placed = _targets(rng, bands, categories, frames, size, target_scale)
        if placed:
            break
    else:
        raise ConfigError(f"size {width}x{height}: no target fits in the frame after {LAYOUT_ATTEMPTS} layouts")
    bridges, clouds = _occlusion(rng, placed, frames, short)
    shadow_angle = rng.uniform(0.0, 2 * math.pi)
    shadow_length = rng.uniform(0.04, 0.1)
    return SceneSpec(
        width=width,
        height=height,
        targets=tuple(item.target for item in placed),
        strips=tuple(band.strip(reach=float(width + height)) for band in bands),
        bridges=bridges,
        clouds=clouds,
        drift_px=float(rng.uniform(0.3, 1.5)),
        drift_period=float(rng.uniform(40.0, 120.0)),
        shadow=(shadow_length * math.cos(shadow_angle), shadow_length * math.sin(shadow_angle)),
        degradation=_degradation(rng, frames) if degrade else None,
    )
