"""Training: it learns, it resumes step for step, and what it trains is what the runtime runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mqc_edge.cli import main
from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.training.clips import ClipSampling, sample_clip
from mqc_edge.training.trainer import Trainer, TrainConfig
from mqc_edge.training.unroll import ClipUnroller, Start

pytestmark = pytest.mark.slow

TINY = dataclasses.replace(DEFAULT_MODEL_CONFIG, image_size=64, max_text_tokens=16)
SAMPLING = ClipSampling(frames=3, image_size=64)


def _config(**changes) -> TrainConfig:
    base = TrainConfig(steps=8, warmup_steps=2, learning_rate=1e-3, validate_every=0, sampling=SAMPLING)
    return dataclasses.replace(base, **changes)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v for k, v in trainer.model.state_dict().items() if "language_model" not in k}


def _trained(run_dir, steps: int, stop_at: int | None = None) -> Trainer:
    """A seeded run of `steps` steps, stopped after `stop_at` (default: all of them)."""
    torch.manual_seed(0)
    trainer = Trainer(run_dir, _config(steps=steps), TINY)
    trainer.run(steps=stop_at, progress=False)
    return trainer


def _same_weights(a: Trainer, b: Trainer) -> bool:
    mine, theirs = _weights(a), _weights(b)
    return all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_seeded_steps_on_two_clips_lower_the_loss(tmp_path) -> None:
    torch.manual_seed(0)
    trainer = Trainer(tmp_path / "run", _config(steps=24, clip_pool=2), TINY)
    losses = [loss for _, loss in trainer.run(progress=False).losses]
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert last < 0.7 * first, f"loss {first:.3f} -> {last:.3f} after 24 steps on the same 2 clips"


def test_resumed_run_equals_an_uninterrupted_one(tmp_path) -> None:
    straight = _trained(tmp_path / "straight", 4)
    _trained(tmp_path / "split", 4, stop_at=2)
    torch.manual_seed(123)  # a fresh process: nothing but the checkpoint carries over
    second = Trainer.resume(tmp_path / "split")
    assert second.state.step == 2
    second.run(progress=False)
    assert second.state.losses == straight.state.losses
    assert _same_weights(second, straight), "weights differ after resume"


def test_train_cli_refuses_to_overwrite_and_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--steps", "2", "--stop-at", "1", "--image-size", "64", "--validate-every", "0"]
    assert main(args) == 0
    assert main(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main([*args[:3], "--resume", "--steps", "2"]) == 2
    assert "drop ['steps']" in capsys.readouterr().err
    assert main([*args[:3], "--resume"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "training.png").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("kind", ["text", "box"])
def test_training_unroll_equals_the_runtime_tracker(kind: str) -> None:
    """Logits of every frame: the training unroll (eval mode) vs the torch-free Tracker on the
    torch backend, TMCC and hole filling off (neither is part of the training graph)."""
    from mqc_edge.model.torch_backend import TorchBackend
    from mqc_edge.runtime.config import TrackerConfig
    from mqc_edge.runtime.text import TextTokenizer
    from mqc_edge.runtime.tracker import Tracker
    from mqc_edge.training.clips import TextFeatureCache

    torch.manual_seed(1)
    model = MQCSAM(TINY).eval()
    clip = sample_clip(5, 0, dataclasses.replace(SAMPLING, frames=5))
    config = TrackerConfig(mode="mqc" if kind == "text" else "sam2", tmcc=None, fill_hole_area=0)
    hidden, mask = TextFeatureCache(model.text_encoder)(clip.text)
    start = Start(kind, text_hidden=hidden, text_mask=mask, box=clip.box)
    with torch.no_grad():
        unrolled = ClipUnroller(model, config)(torch.from_numpy(clip.images), start)
    backend = TorchBackend(model)
    tracker = Tracker(backend, config, TextTokenizer(backend.tokenizer_file, TINY.max_text_tokens))
    frames = [_rgb(image) for image in clip.images]
    prompt = {"text": clip.text} if kind == "text" else {"box": clip.box}
    results = tracker.start(frames[0], **prompt)
    for frame in frames[1:]:
        results += tracker.step(frame)
    results += tracker.finish()
    assert len(results) == len(unrolled) == 5
    for result, out in zip(results, unrolled):
        ours = out.mask_lowres[0, 0].numpy()
        scale = max(np.abs(result.logits_lowres).max(), 1.0)
        assert np.abs(ours - result.logits_lowres).max() <= 1e-4 * scale


def _rgb(normalised: np.ndarray) -> np.ndarray:
    """Undo the ImageNet normalisation of a clip frame: uint8 [S, S, 3] the Tracker re-normalises."""
    from mqc_edge.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD

    return np.rint((normalised * IMAGENET_STD + IMAGENET_MEAN) * 255).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)


def test_a_run_can_start_from_a_checkpoint(tmp_path) -> None:
    first = _trained(tmp_path / "first", 1)
    torch.manual_seed(1)
    second = Trainer(tmp_path / "second", _config(steps=1), TINY)
    assert "loaded" in second.start_from(tmp_path / "first" / "model.safetensors")
    assert second.config.init_from.startswith(str(tmp_path / "first" / "model.safetensors"))
    assert _same_weights(second, first)
