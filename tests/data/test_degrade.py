"""The frame-level degradations of the robustness suite: identity at 0, monotonic, deterministic, time-varying."""

from __future__ import annotations

import numpy as np
import pytest

from mqc_edge.data.synth.degrade import KINDS, FrameDegradation, cloud_opacity, degrade_frame, turn_envelope
from mqc_edge.errors import ConfigError

FRAMES = 16


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A textured uint8 RGB frame: smooth gradients plus detail, so blur and haze have something to take."""
    yy, xx = np.mgrid[0:96, 0:128]
    detail = 60 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    rgb = np.stack([60 + xx + detail, 40 + yy + detail, 120 + 0.5 * detail + 0 * xx], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def one(kind: str, strength: float, timevarying: bool = False) -> FrameDegradation:
    return FrameDegradation(((kind, strength),), timevarying)


@pytest.mark.parametrize("kind", KINDS)
def test_strength_zero_is_the_identity(frame, kind) -> None:
    assert np.array_equal(degrade_frame(frame, one(kind, 0.0), 3, FRAMES, video_seed=1), frame)


def test_noise_std_grows_with_strength(frame) -> None:
    residual_std = [np.std(degrade_frame(frame, one("noise", sigma), 0, FRAMES, 1).astype(float) - frame)
                    for sigma in (4.0, 8.0, 16.0)]
    assert residual_std == sorted(residual_std)
    assert residual_std[1] == pytest.approx(8.0, rel=0.1)  # sigma is in grey levels


@pytest.mark.parametrize("kind, strengths", [("haze", (0.3, 0.5, 0.7)), ("blur", (1.0, 2.0, 4.0)),
                                             ("lowlight", (0.5, 0.75, 0.9)), ("clouds", (0.1, 0.3, 0.6))])
def test_contrast_falls_with_strength(frame, kind, strengths) -> None:
    """Haze, blur, low light and clouds all take local contrast: the std of the detail falls."""
    def detail(rgb: np.ndarray) -> float:
        grey = rgb.astype(float).mean(axis=-1)
        return float(np.abs(np.diff(grey, axis=1)).mean())

    contrast = [detail(frame)] + [detail(degrade_frame(frame, one(kind, s), 0, FRAMES, 1)) for s in strengths]
    assert contrast == sorted(contrast, reverse=True), contrast


def test_cloud_cover_is_the_share_of_frame_at_least_half_opaque() -> None:
    for cover in (0.1, 0.25, 0.5):
        opacity = cloud_opacity((96, 128), cover, 5, np.random.default_rng(0))
        assert np.mean(opacity >= 0.5) == pytest.approx(cover, abs=0.01)


def test_deterministic_for_a_seed_and_different_across_seeds_and_frames(frame) -> None:
    condition = FrameDegradation((("noise", 8.0), ("clouds", 0.3)))
    first = degrade_frame(frame, condition, 4, FRAMES, video_seed=7)
    assert np.array_equal(first, degrade_frame(frame, condition, 4, FRAMES, video_seed=7))
    assert not np.array_equal(first, degrade_frame(frame, condition, 4, FRAMES, video_seed=8))
    assert not np.array_equal(first, degrade_frame(frame, condition, 5, FRAMES, video_seed=7))


def test_timevarying_comes_and_goes_with_clean_ends(frame) -> None:
    condition = FrameDegradation(tuple((kind, 0.5) for kind in KINDS), timevarying=True)
    outputs = [degrade_frame(frame, condition, t, FRAMES, 1) for t in range(FRAMES)]
    assert np.array_equal(outputs[0], frame) and np.array_equal(outputs[-1], frame)
    changes = [float(np.abs(out.astype(float) - frame).mean()) for out in outputs]
    assert min(changes[3:-3]) > 0 and len(set(np.round(changes, 3))) > FRAMES // 2
    for index in range(len(KINDS)):  # each kind peaks at its full strength once, in turn
        peak = max(range(FRAMES * 8), key=lambda t: turn_envelope(t, FRAMES * 8, index, len(KINDS)))
        assert turn_envelope(peak, FRAMES * 8, index, len(KINDS)) == pytest.approx(1.0, abs=0.01)
    constant = FrameDegradation(condition.strengths)
    assert constant.at(0, FRAMES) == constant.at(FRAMES // 2, FRAMES) == dict(condition.strengths)


@pytest.mark.parametrize("strengths", [(("fog", 0.5),), (("haze", 1.5),), (("noise", 1.0), ("noise", 2.0))])
def test_bad_conditions_are_rejected(strengths) -> None:
    with pytest.raises(ConfigError):
        FrameDegradation(strengths)
