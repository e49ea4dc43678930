"""TMCC on scenes from the synthetic satellite generator, built on purpose for each mechanism."""

import numpy as np
import pytest

from mqc_edge.data.synth import SceneSpec, TargetSpec, render_video
from mqc_edge.runtime.mqc.tmcc import TMCCConfig, calibrate

SIZE = 256
FRAMES = 9
LOOSE_GUARDS = TMCCConfig(max_removed_fraction=0.7, max_added_fraction=float("inf"))
"""The guards before the eighteenth session (remove up to 70 % of R0, add without limit), not the
defaults (20 %, 50 %): repairing a half target doubles R0, and a look-alike as large as the target
is half of it."""


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _render(*targets: TargetSpec):
    video = render_video(SceneSpec(SIZE, SIZE, targets, drift_px=0.5), frames=FRAMES, seed=3)
    return video.frames, [video.id_masks[0] == obj_id for obj_id in range(1, len(targets) + 1)]


def test_moving_aircraft_keeps_itself_and_drops_a_parked_look_alike():
    frames, (target, look_alike) = _render(
        TargetSpec("aircraft", (110.0, 128.0), 0.0, 40.0, velocity=(2.5, 0.0)),
        TargetSpec("aircraft", (110.0, 172.0), 0.0, 40.0, is_distractor=True),
    )
    r0 = target | look_alike  # the decoder confused the two look-alikes on frame 0
    result = calibrate(r0, r0, frames, LOOSE_GUARDS)
    assert not result.stationary
    assert (result.mask & look_alike).sum() <= 0.05 * look_alike.sum()
    assert _iou(result.mask, target) > _iou(r0, target) + 0.3


def test_under_segmented_moving_ship_is_repaired():
    frames, (ship,) = _render(TargetSpec("ship", (100.0, 120.0), 20.0, 48.0, velocity=(2.0, 0.8), color="orange"))
    ys, xs = np.nonzero(ship)
    r0 = ship & (np.arange(SIZE)[None, :] < np.median(xs))  # only the stern half was found
    result = calibrate(r0, r0, frames, LOOSE_GUARDS)
    assert _iou(result.mask, ship) > _iou(r0, ship) + 0.2


def test_under_segmented_moving_car_is_repaired():
    """A small uniformly painted car moving 3 px/frame, an eighth of its length: not stationary."""
    frames, (car,) = _render(TargetSpec("car", (100.0, 120.0), 0.0, 24.0, velocity=(3.0, 0.0), color="red"))
    ys, xs = np.nonzero(car)
    r0 = car & (np.arange(SIZE)[None, :] < np.median(xs))  # only the rear half was found
    result = calibrate(r0, r0, frames, LOOSE_GUARDS)
    assert not result.stationary
    assert (result.mask & ~car).sum() <= 0.2 * car.sum()
    assert _iou(result.mask, car) > _iou(r0, car) + 0.2


@pytest.mark.parametrize("category", ["car", "train"])
def test_parked_target_keeps_r0_and_is_flagged(category):
    frames, (target,) = _render(TargetSpec(category, (128.0, 128.0), 35.0, 40.0))
    result = calibrate(target, target, frames)
    assert result.stationary and np.array_equal(result.mask, target)


def test_pruning_most_of_r0_is_refused_and_r0_kept():
    """A thin train moving along its own axis: the flow sees little but its ends, and pruning
    would delete most of a correct half R0 (IoU 0.06 measured before the guard)."""
    frames, (train,) = _render(TargetSpec("train", (100.0, 120.0), 0.0, 80.0, velocity=(3.0, 0.0), color="red"))
    ys, xs = np.nonzero(train)
    r0 = train & (np.arange(SIZE)[None, :] < np.median(xs))
    result = calibrate(r0, r0, frames, LOOSE_GUARDS)  # the 70 % removal guard alone refuses it
    assert result.rejected and not result.stationary
    assert np.array_equal(result.mask, r0)
