"""What a synthetic scene is made of: plain frozen records, hand-writable for mechanism tests.

Coordinates are image pixels with pixel centres on integers (x to the right, y down), in the
scene's own frame at time 0; platform drift is added at render time and moves everything alike.
Headings are degrees clockwise on screen from +x, so the unit forward vector is (cos h, sin h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mqc_edge.errors import ConfigError

CATEGORIES = ("aircraft", "ship", "car", "train")
STRIP_KINDS = ("water", "runway", "apron", "road", "rail")

Point = tuple[float, float]


@dataclass(frozen=True)
class TargetSpec:
    """One object of the scene; object id = its position in `SceneSpec.targets` + 1."""

    category: str  # one of CATEGORIES: the four the issue asks for, all common in RS-RVOS Bench
    center: Point  # (x, y) px of the shape's bounding-box centre at frame 0
    heading_deg: float  # nose direction, degrees clockwise on screen from +x
    length: float  # px nose to tail; the category's shape fixes the width
    velocity: Point = (0.0, 0.0)  # px/frame; (0, 0) = stationary
    color: str = "white"  # a key of targets.COLORS
    is_distractor: bool = False  # a look-alike that no expression refers to

    @property
    def moving(self) -> bool:
        return self.velocity != (0.0, 0.0)

    def center_at(self, t: float) -> Point:
        return (self.center[0] + self.velocity[0] * t, self.center[1] + self.velocity[1] * t)


@dataclass(frozen=True)
class Strip:
    """A straight ground feature (river, runway, road, ...) from `start` to `end`, static."""

    kind: str  # one of STRIP_KINDS
    start: Point  # px, centre line start (may lie outside the frame)
    end: Point  # px, centre line end
    width: float  # px across


@dataclass(frozen=True)
class Bridge:
    """An opaque deck drawn above the targets: whatever passes under it leaves the mask."""

    start: Point  # px, deck centre line start
    end: Point  # px, deck centre line end
    width: float  # px across the deck


@dataclass(frozen=True)
class Cloud:
    """A drifting cloud; target pixels under opacity >= 0.5 leave the mask (see scene.py)."""

    center: Point  # px at frame 0
    radius: float  # px; the shape is irregular inside this disc
    velocity: Point = (0.0, 0.0)  # px/frame

    def center_at(self, t: float) -> Point:
        return (self.center[0] + self.velocity[0] * t, self.center[1] + self.velocity[1] * t)


@dataclass(frozen=True)
class Degradation:
    """Time-varying image degradations (RobustPVOS/MoGA degradation suite, DESIGN.md section 7).

    Each strength follows 0.5 - 0.5 cos(2 pi t / period + phase + k pi / 2), k the kind's index,
    so the kinds peak at different times and every strength is zero at some frames.
    """

    noise_sigma: float = 0.0  # peak Gaussian sensor noise, grey levels
    blur_sigma: float = 0.0  # peak Gaussian defocus/motion blur, px
    haze: float = 0.0  # peak blend toward haze grey, 0..1
    darkness: float = 0.0  # peak fraction of light lost (low light), 0..1
    period: float = 48.0  # frames per cycle; a chosen default, about two seconds at 25 fps
    phase: float = 0.0  # radians


@dataclass(frozen=True)
class SceneSpec:
    """Everything that fixes a synthetic video except the random seed of textures and noise."""

    width: int  # px
    height: int  # px
    targets: tuple[TargetSpec, ...]
    strips: tuple[Strip, ...] = ()  # drawn in order over the field texture
    bridges: tuple[Bridge, ...] = ()
    clouds: tuple[Cloud, ...] = ()
    drift_px: float = 0.8  # platform drift amplitude: sub-pixel to pixel, as the issue asks
    drift_period: float = 60.0  # frames per drift cycle; a chosen default (slow sway)
    shadow: Point = (0.07, 0.05)  # sun shadow offset as a fraction of each target's length
    degradation: Degradation | None = None  # None = clean frames

    def drift_at(self, t: float) -> Point:
        """Whole-scene translation at frame t, zero at frame 0 so that specs are frame-0 positions."""
        angle = 2.0 * math.pi * t / self.drift_period
        return (self.drift_px * math.sin(angle), self.drift_px * (1.0 - math.cos(0.7 * angle)) / 2.0)


def _fail(where: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"SceneSpec.{where}: expected {expected}, got {got!r}")


def validate_scene(scene: SceneSpec, known_colors: set[str]) -> None:
    """Raise ConfigError naming the first field a hand-written spec gets wrong."""
    if scene.width < 16 or scene.height < 16:
        raise _fail("width/height", "at least 16 px", (scene.width, scene.height))
    if len(scene.targets) > 255:
        raise _fail("targets", "at most 255 (ids are uint8)", len(scene.targets))
    for index, target in enumerate(scene.targets):
        if target.category not in CATEGORIES:
            raise _fail(f"targets[{index}].category", f"one of {', '.join(CATEGORIES)}", target.category)
        if target.color not in known_colors:
            raise _fail(f"targets[{index}].color", f"one of {', '.join(sorted(known_colors))}", target.color)
        if not target.length > 0:
            raise _fail(f"targets[{index}].length", "> 0 px", target.length)
    for index, strip in enumerate(scene.strips):
        if strip.kind not in STRIP_KINDS:
            raise _fail(f"strips[{index}].kind", f"one of {', '.join(STRIP_KINDS)}", strip.kind)
        if not strip.width > 0 or strip.start == strip.end:
            raise _fail(f"strips[{index}]", "width > 0 and start != end", strip)
    for index, bridge in enumerate(scene.bridges):
        if not bridge.width > 0 or bridge.start == bridge.end:
            raise _fail(f"bridges[{index}]", "width > 0 and start != end", bridge)
    for index, cloud in enumerate(scene.clouds):
        if not cloud.radius >= 2:
            raise _fail(f"clouds[{index}].radius", ">= 2 px", cloud.radius)
    if scene.drift_px < 0 or not scene.drift_period > 0:
        raise _fail("drift_px/drift_period", "drift_px >= 0 and drift_period > 0", (scene.drift_px, scene.drift_period))
