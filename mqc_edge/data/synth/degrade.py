"""Image degradations applied to a finished frame; masks are untouched (the object is still there).

The kinds follow the degradation suite of RobustPVOS/MoGA (DESIGN.md section 7): sensor noise,
blur, low light, haze and cloud cover. Each is one function of a float32 RGB canvas and a
strength in physical units, 0 the identity. The generator (`degrade`, `mqc-edge data synth
--degrade`) cycles four of them with their own phases inside a video; the robustness suite
(`degrade_frame`, `mqc-edge eval --degrade`) applies them to the frames of a finished dataset,
constant over a video or coming and going (`timevarying`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mqc_edge.data.synth.ground import fractal_noise
from mqc_edge.data.synth.occluders import CLOUD_WHITE, VISIBLE_BELOW
from mqc_edge.data.synth.spec import Degradation
from mqc_edge.errors import ConfigError

HAZE_GREY = np.float32(205.0)
MIN_BLUR_SIGMA = 0.3  # px; below it a Gaussian kernel is a single tap and blurring is skipped
CLOUD_EDGE_GAIN = 1.5  # opacity per unit std of the cloud field: edges ~0.7 std wide (a chosen value)
CLOUD_DRIFT = (0.7, 0.3)  # px/frame of the cloud field over the ground (a chosen value)
KINDS = ("noise", "blur", "lowlight", "haze", "clouds")
"""Frame-level kinds, in the order they act: sensor noise last (see `degrade_frame`)."""
RANGES = {"noise": (0.0, 255.0), "blur": (0.0, 64.0), "lowlight": (0.0, 1.0), "haze": (0.0, 1.0), "clouds": (0.0, 1.0)}
"""Allowed strengths per kind, in the units of `FrameDegradation`."""
NOISE_STREAM, CLOUD_STREAM = range(2)


def add_noise(canvas: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise of std `sigma` grey levels (8-bit units)."""
    if sigma <= 0:
        return canvas
    return canvas + sigma * rng.standard_normal(canvas.shape, dtype=np.float32)


def blur(canvas: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian defocus / motion blur of std `sigma` px."""
    return cv2.GaussianBlur(canvas, (0, 0), sigma) if sigma >= MIN_BLUR_SIGMA else canvas


def darken(canvas: np.ndarray, darkness: float) -> np.ndarray:
    """Low light: `darkness` is the fraction of light lost, so the exposure gain is 1 - darkness."""
    return canvas * (1.0 - darkness)


def add_haze(canvas: np.ndarray, haze: float) -> np.ndarray:
    """Blend toward haze grey; `haze` = 1 - the atmosphere's transmission (Koschmieder's model)."""
    return canvas * (1.0 - haze) + HAZE_GREY * haze


def cloud_opacity(shape: tuple[int, int], cover: float, t: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [H, W] cloud opacity at frame t covering the fraction `cover` of the frame.

    A smooth noise field twice the frame drifts by CLOUD_DRIFT px/frame (back and forth, so a long
    video never jumps); the field's (1 - cover) quantile on this frame is where opacity crosses
    VISIBLE_BELOW, so `cover` is exactly the share of pixels at least half opaque; cores are opaque.
    `rng` must be seeded per video (the field is the same cloud deck on every frame).
    """
    height, width = shape
    field = fractal_noise((2 * height, 2 * width), rng, cells=3, octaves=4)
    dy, dx = (int(round(_ping_pong(speed * t, span))) for speed, span in zip(CLOUD_DRIFT[::-1], (height, width)))
    window = field[dy : dy + height, dx : dx + width]
    threshold = np.quantile(window, 1.0 - cover)
    return np.clip(VISIBLE_BELOW + CLOUD_EDGE_GAIN * (window - threshold), 0.0, 1.0).astype(np.float32)


def _ping_pong(position: float, span: int) -> float:
    """`position` folded into 0..span and back: a triangle wave of period 2 span."""
    return span - abs(span - position % (2 * span))


def add_clouds(canvas: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """Blend cloud white over the ground with per-pixel `opacity` [H, W]."""
    return canvas * (1.0 - opacity[..., None]) + CLOUD_WHITE * opacity[..., None]


def strengths(spec: Degradation, t: int) -> tuple[float, float, float, float]:
    """(blur, haze, darkness, noise) multipliers in 0..1 at frame t."""
    base = 2.0 * math.pi * t / spec.period + spec.phase
    return tuple(0.5 - 0.5 * math.cos(base + kind * math.pi / 2) for kind in range(4))  # type: ignore[return-value]


def degrade(canvas: np.ndarray, spec: Degradation, t: int, rng: np.random.Generator) -> np.ndarray:
    """Haze, blur, low light, noise: the order in which atmosphere, optics, exposure and sensor act."""
    blur_now, haze_now, darkness_now, noise_now = strengths(spec, t)
    canvas = add_haze(canvas, spec.haze * haze_now)
    canvas = blur(canvas, spec.blur_sigma * blur_now)
    canvas = darken(canvas, spec.darkness * darkness_now)
    return add_noise(canvas, spec.noise_sigma * noise_now, rng)


@dataclass(frozen=True)
class FrameDegradation:
    """One condition of the robustness suite: a strength per kind (absent = 0), constant or in turn.

    Units: noise = Gaussian std in grey levels (8-bit); blur = Gaussian std in px; lowlight =
    fraction of light lost (gain 1 - lowlight); haze = 1 - transmission; clouds = fraction of
    the frame under cloud at least half opaque.
    """

    strengths: tuple[tuple[str, float], ...]  # (kind, strength), kinds from KINDS, each at most once
    timevarying: bool = False  # each kind in turn rises from 0 to its strength and back over the video

    def __post_init__(self) -> None:
        kinds = [kind for kind, _ in self.strengths]
        if len(set(kinds)) != len(kinds) or not set(kinds) <= set(KINDS):
            raise ConfigError(f"degradation kinds: expected distinct kinds of {list(KINDS)}, got {kinds}")
        for kind, value in self.strengths:
            low, high = RANGES[kind]
            if not low <= value <= high:
                raise ConfigError(f"degradation {kind}: strength must be in [{low:g}, {high:g}], got {value:g}")

    def at(self, t: int, frames: int) -> dict[str, float]:
        """Strength of every kind at frame t of a `frames`-frame video."""
        if not self.timevarying:
            return dict(self.strengths)
        count = len(self.strengths)
        return {kind: value * turn_envelope(t, frames, index, count)
                for index, (kind, value) in enumerate(self.strengths)}


def turn_envelope(t: int, frames: int, index: int, count: int) -> float:
    """0..1: kind `index` of `count` in turn, a raised-cosine bump centred at (index + 1) / (count + 1)
    of the video and as wide as two such steps, so neighbours overlap and the first and last frames
    are clean (the prompt frame is seen undegraded; the memory must survive what follows)."""
    step = max(frames - 1, 1) / (count + 1)
    offset = abs(t - (index + 1) * step)
    return 0.5 + 0.5 * math.cos(math.pi * offset / step) if offset < step else 0.0


def degrade_frame(rgb: np.ndarray, condition: FrameDegradation, t: int, frames: int, video_seed: int) -> np.ndarray:
    """uint8 RGB [H, W, 3] frame t of `frames` under `condition`, deterministic in (video_seed, t).

    Clouds, haze, blur, low light, noise: above the ground, atmosphere, optics, exposure, sensor.
    The result is rounded to 8 bits, so low light also loses grey levels as a real sensor does.
    """
    now = condition.at(t, frames)
    if not any(now.values()):
        return rgb
    canvas = rgb.astype(np.float32)
    if now.get("clouds", 0.0) > 0:
        opacity = cloud_opacity(rgb.shape[:2], now["clouds"], t, np.random.default_rng([video_seed, CLOUD_STREAM]))
        canvas = add_clouds(canvas, opacity)
    canvas = add_haze(canvas, now.get("haze", 0.0))
    canvas = blur(canvas, now.get("blur", 0.0))
    canvas = darken(canvas, now.get("lowlight", 0.0))
    canvas = add_noise(canvas, now.get("noise", 0.0), np.random.default_rng([video_seed, NOISE_STREAM, t]))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
