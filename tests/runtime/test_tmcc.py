"""TMCC mechanism tests on small synthetic clips: textured ground, a textured target that
translates, and a static look-alike of it just above."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mqc_edge.errors import BadFrameError, ConfigError
from mqc_edge.runtime.mqc.tmcc import TMCCConfig, calibrate

SIZE = 128
TARGET = 20  # target side (px)
LOOKALIKE = 14  # side of the static look-alike, cut from the target's own texture
TOP, LEFT = 54, 40  # target corner on frame 0
GAP = 6  # rows between the look-alike and the target
LOOSE_GUARDS = TMCCConfig(max_removed_fraction=0.7, max_added_fraction=float("inf"))
"""The guards before the eighteenth session (remove up to 70 % of R0, add without limit): the
mechanism tests grow R0 to twice its size or remove a third of it, which the defaults refuse
(test_the_guards_refuse_...)."""


def _texture(rng: np.random.Generator, shape: tuple[int, int], blur: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.normal(0.0, 1.0, shape).astype(np.float32), (0, 0), blur)
    return (noise - noise.min()) / (noise.max() - noise.min())


def _clip(
    velocity: tuple[float, float], drift: tuple[float, float] = (0.0, 0.0), frames: int = 9, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Frames, the target mask on frame 0 and the look-alike mask; velocity and drift (dx, dy)
    in px/frame, drift moving the whole scene as a drifting platform would."""
    rng = np.random.default_rng(seed)
    pad = 32
    ground = 60 + 120 * _texture(rng, (SIZE + 2 * pad, SIZE + 2 * pad), 1.5)
    target = 100 + 150 * _texture(rng, (TARGET, TARGET), 1.0)
    lookalike_top = TOP - GAP - LOOKALIKE
    clip = []
    for k in range(frames):
        shift_x, shift_y = round(drift[0] * k), round(drift[1] * k)
        scene = ground.copy()
        scene[pad + lookalike_top : pad + TOP - GAP, pad + LEFT : pad + LEFT + LOOKALIKE] = target[
            :LOOKALIKE, :LOOKALIKE
        ]
        y, x = pad + TOP + round(velocity[1] * k), pad + LEFT + round(velocity[0] * k)
        scene[y : y + TARGET, x : x + TARGET] = target
        view = scene[pad - shift_y : pad - shift_y + SIZE, pad - shift_x : pad - shift_x + SIZE]
        clip.append(np.repeat(view.astype(np.uint8)[..., None], 3, axis=2))
    target_mask = np.zeros((SIZE, SIZE), bool)
    target_mask[TOP : TOP + TARGET, LEFT : LEFT + TARGET] = True
    lookalike_mask = np.zeros((SIZE, SIZE), bool)
    lookalike_mask[lookalike_top : TOP - GAP, LEFT : LEFT + LOOKALIKE] = True
    return clip, target_mask, lookalike_mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _half(mask: np.ndarray, side: str) -> np.ndarray:
    """One half of a box mask: 'left', 'right', 'top' or 'bottom'."""
    rows, cols = np.nonzero(mask)
    half = mask.copy()
    mid_row, mid_col = (rows.min() + rows.max() + 1) // 2, (cols.min() + cols.max() + 1) // 2
    cut = {"left": (slice(None), slice(mid_col, None)), "right": (slice(None), slice(None, mid_col)),
           "top": (slice(mid_row, None), slice(None)), "bottom": (slice(None, mid_row), slice(None))}[side]
    half[cut] = False
    return half


@pytest.mark.parametrize(
    ("velocity", "side"),
    [((3, 0), "left"), ((3, 0), "right"), ((0, 0.6), "top"), ((2, 1), "bottom"), ((-1.5, 1.5), "left")],
)
def test_repairs_an_under_segmented_moving_target(velocity: tuple[float, float], side: str) -> None:
    frames, target, _ = _clip(velocity)
    r0 = _half(target, side)
    result = calibrate(r0, r0, frames, LOOSE_GUARDS)
    assert not result.stationary
    assert _iou(r0, target) == pytest.approx(0.5)
    assert _iou(result.mask, target) > 0.75
    assert result.added_px > 0


@pytest.mark.parametrize("velocity", [(3, 0), (0.5, 0), (0, 0.6)])
def test_prunes_a_static_lookalike_from_r0(velocity: tuple[float, float]) -> None:
    frames, target, lookalike = _clip(velocity)
    r0 = target | lookalike
    result = calibrate(r0, r0, frames, LOOSE_GUARDS)
    assert (result.mask & lookalike).sum() <= 0.05 * lookalike.sum()
    assert _iou(result.mask, target) > 0.75 > _iou(r0, target)


def test_moment_statistics_let_a_third_of_r0_hide_a_lookalike() -> None:
    """Why robust_stats is the default: with mean/std, a look-alike holding a third of R0
    inflates sigma so much that beta*sigma no longer separates it."""
    frames, target, lookalike = _clip((3, 0))
    r0 = target | lookalike
    robust = calibrate(r0, r0, frames, dataclasses.replace(LOOSE_GUARDS, robust_stats=True))
    moments = calibrate(r0, r0, frames, dataclasses.replace(LOOSE_GUARDS, robust_stats=False))
    assert (moments.mask & lookalike).sum() > 0.5 * lookalike.sum()
    assert (robust.mask & lookalike).sum() < 0.05 * lookalike.sum()
    assert moments.sigma_px > 2 * robust.sigma_px


def test_the_guards_refuse_growing_r0_by_half_or_pruning_a_fifth_and_keep_r0() -> None:
    """The defaults refuse what the unguarded mechanism does above: doubling a half target (added
    1.0 of R0 > 0.5) and dropping a look-alike that holds a third of R0 (removed 0.33 > 0.2)."""
    frames, target, lookalike = _clip((3, 0))
    half = _half(target, "left")
    for r0 in (half, target | lookalike):
        result = calibrate(r0, r0, frames)
        assert result.rejected and not result.stationary
        assert np.array_equal(result.mask, r0)
    assert calibrate(half, half, frames, dataclasses.replace(TMCCConfig(), max_added_fraction=1.5)).added_px > 0


def test_stationary_target_keeps_r0_exactly_and_is_flagged() -> None:
    frames, target, _ = _clip((0, 0))
    r0 = _half(target, "left")
    result = calibrate(r0, r0, frames)
    assert result.stationary
    assert np.array_equal(result.mask, r0)
    assert result.window == TMCCConfig().n_max
    assert result.motion_px <= TMCCConfig().tau_motion_px


def test_platform_drift_is_not_taken_for_target_motion() -> None:
    frames, target, _ = _clip((0, 0), drift=(1.0, 0.5))
    compensated = calibrate(target, target, frames)
    raw = calibrate(target, target, frames, TMCCConfig(compensate_drift=False))
    assert compensated.stationary and np.array_equal(compensated.mask, target)
    # the whole scene moves by the drift per frame, and the window ran to frame 8
    assert compensated.drift_px == pytest.approx((8.0, 4.0), abs=0.5)
    assert not raw.stationary and raw.drift_px == (0.0, 0.0)


def test_window_grows_only_as_far_as_the_motion_needs() -> None:
    config = TMCCConfig()
    fast_frames, target, _ = _clip((3, 0))
    slow_frames, _, _ = _clip((0.4, 0))
    fast = calibrate(target, target, fast_frames, config)
    slow = calibrate(target, target, slow_frames, config)
    assert fast.window == config.n0
    assert config.n0 < slow.window <= config.n_max
    assert not slow.stationary and slow.motion_px > config.tau_motion_px


def test_a_short_buffer_caps_the_window() -> None:
    frames, target, _ = _clip((0, 0), frames=4)
    result = calibrate(target, target, frames)
    assert result.stationary and result.window == 3


def test_a_confidence_map_anchor_works_like_a_mask_anchor() -> None:
    frames, target, _ = _clip((3, 0))
    r0 = _half(target, "right")
    confidence = np.where(r0, 0.95, 0.02).astype(np.float32)
    by_mask = calibrate(r0, r0, frames, LOOSE_GUARDS)
    by_confidence = calibrate(r0, confidence, frames, LOOSE_GUARDS)
    assert _iou(by_confidence.mask, target) > 0.75
    assert _iou(by_confidence.mask, by_mask.mask) > 0.95


def test_empty_r0_comes_back_unchanged() -> None:
    frames, target, _ = _clip((3, 0))
    empty = np.zeros_like(target)
    result = calibrate(empty, empty, frames)
    assert result.stationary and result.window == 0 and not result.mask.any()


def test_bad_frame_is_named() -> None:
    frames, target, _ = _clip((3, 0))
    frames[2] = frames[2][:64]
    with pytest.raises(BadFrameError, match="frame 2"):
        calibrate(target, target, frames)


def test_config_requires_beta_above_alpha() -> None:
    with pytest.raises(ConfigError, match="beta > alpha"):
        TMCCConfig(alpha=2.0, beta=2.0)
    with pytest.raises(ConfigError, match="max_added_fraction"):
        TMCCConfig(max_added_fraction=0.0)


def test_imports_without_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import mqc_edge.runtime.mqc.tmcc"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
