"""Training: it learns, it resumes step for step, and what it trains is what the runtime runs."""

from __future__ import annotations

import dataclasses
import json

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


@pytest.mark.parametrize("kind", ["text", "box", "text-moga", "text-single"])
def test_training_unroll_equals_the_runtime_tracker(kind: str) -> None:
    """Logits of every frame: the training unroll (eval mode) vs the torch-free Tracker on the
    torch backend, TMCC and hole filling off (neither is part of the training graph). With MoGA
    on (its up vectors made non-zero), both gate frame t's adapters on frame t-1's pointer;
    text-single: both decode the text start through the single-mask token."""
    from mqc_edge.model.torch_backend import TorchBackend
    from mqc_edge.runtime.config import TrackerConfig
    from mqc_edge.runtime.text import TextTokenizer
    from mqc_edge.runtime.tracker import Tracker
    from mqc_edge.training.clips import TextFeatureCache

    torch.manual_seed(1)
    model = MQCSAM(dataclasses.replace(TINY, moga=kind == "text-moga")).eval()
    if model.moga is not None:
        with torch.no_grad():
            for bank in model.moga.banks.values():
                bank.up.normal_(std=0.5)
    single = kind == "text-single"
    kind = kind.removesuffix("-moga").removesuffix("-single")
    clip = sample_clip(5, 0, dataclasses.replace(SAMPLING, frames=5))
    referred = clip.objects[0]
    config = TrackerConfig(mode="mqc" if kind == "text" else "sam2", tmcc=None, fill_hole_area=0,
                           text_start_multimask=not single)
    hidden, mask = TextFeatureCache(model.text_encoder)(referred.text)
    start = Start(kind, text_hidden=hidden, text_mask=mask, box=referred.box)
    with torch.no_grad():
        unrolled = ClipUnroller(model, config)(torch.from_numpy(clip.images), start)
    backend = TorchBackend(model)
    tracker = Tracker(backend, config, TextTokenizer(backend.tokenizer_file, TINY.max_text_tokens))
    frames = [_rgb(image) for image in clip.images]
    prompt = {"text": referred.text} if kind == "text" else {"box": referred.box}
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


def test_single_mask_text_starts_reach_the_unroller_and_survive_a_resume(tmp_path) -> None:
    trainer = Trainer(tmp_path / "run", _config(steps=1, text_start_multimask=False), TINY)
    assert trainer.unroller.config.text_start_multimask is False
    assert TrainConfig.from_json(trainer.config.to_json()).text_start_multimask is False
    assert TrainConfig.from_json(_config().to_json()).text_start_multimask is True


def test_a_run_can_start_from_a_checkpoint(tmp_path) -> None:
    first = _trained(tmp_path / "first", 1)
    torch.manual_seed(1)
    second = Trainer(tmp_path / "second", _config(steps=1), TINY)
    assert "loaded" in second.start_from(tmp_path / "first" / "model.safetensors")
    assert second.config.init_from.startswith(str(tmp_path / "first" / "model.safetensors"))
    assert _same_weights(second, first)


@pytest.mark.parametrize("start", ["text", "box"])
def test_a_clip_prompts_several_distinct_objects(start: str) -> None:
    """Each object of a clip is its own ground truth (no two share a pixel) with a box around its
    frame-0 mask and a click inside it; text clips prompt referable objects only, box clips a
    referable one first, then any other."""
    shares = (1.0, 0.0, 0.0) if start == "text" else (0.0, 1.0, 0.0)
    sampling = ClipSampling(frames=3, image_size=128, start_shares=shares, max_objects=3, box_jitter=0.0)
    counts = []
    for index in range(12):
        clip = sample_clip(11, index, sampling)
        objects = clip.objects
        counts.append(len(objects))
        assert clip.start == start and 1 <= len(objects) <= 3
        assert objects[0].text is not None
        if start == "text":
            assert all(obj.text for obj in objects)
        stacked = np.stack([obj.masks for obj in objects])
        assert stacked.shape == (len(objects), 3, 128, 128)
        assert stacked.sum(0).max() <= 1, "two objects share a pixel"
        for obj in objects:
            ys, xs = np.nonzero(obj.masks[0])
            assert len(xs) >= sampling.min_object_pixels
            np.testing.assert_array_equal(obj.box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert obj.masks[0][int(obj.point[1]), int(obj.point[0])]
    assert max(counts) > 1, f"every clip had one object: {counts}"


def test_objects_of_one_clip_unroll_as_each_alone() -> None:
    """`ClipUnroller.objects` shares the image encoder and nothing else: each object's frames equal
    a single-object unroll of its own prompt, and different prompts give different logits."""
    torch.manual_seed(2)
    model = MQCSAM(TINY).eval()
    sampling = dataclasses.replace(SAMPLING, start_shares=(0.0, 1.0, 0.0))
    clip = next(c for c in (sample_clip(11, i, sampling) for i in range(20)) if len(c.objects) > 1)
    starts = [Start("box", box=obj.box) for obj in clip.objects]
    unroller = ClipUnroller(model)
    images = torch.from_numpy(clip.images)
    with torch.no_grad():
        together = unroller.objects(images, starts)
        alone = [unroller(images, start) for start in starts]
    for mine, theirs in zip(together, alone):
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a.mask_lowres, b.mask_lowres, rtol=0, atol=1e-5)
            torch.testing.assert_close(a.predicted_iou, b.predicted_iou, rtol=0, atol=1e-5)
    # the IoU head reads the prompt tokens (masks may all be the no-object fill at random init)
    assert (together[0][0].predicted_iou - together[1][0].predicted_iou).abs().max() > 1e-4


def test_reinit_keeps_a_fresh_head_over_the_init_checkpoint(tmp_path) -> None:
    from mqc_edge.errors import ConfigError

    first = _trained(tmp_path / "first", 1)
    torch.manual_seed(7)
    second = Trainer(tmp_path / "second", _config(steps=1), TINY)
    fresh = {k: v.clone() for k, v in _weights(second).items()}
    report = second.start_from(tmp_path / "first" / "model.safetensors", ("sam.sam_mask_decoder",))
    assert "kept fresh: sam.sam_mask_decoder" in report
    assert second.config.reinitialized == ("sam.sam_mask_decoder",)
    trained, now = _weights(first), _weights(second)
    for name, value in now.items():
        expected = fresh[name] if name.startswith("sam.sam_mask_decoder") else trained[name]
        assert torch.equal(value, expected), name
    with pytest.raises(ConfigError, match="no parameter of the model starts with it"):
        Trainer(tmp_path / "third", _config(steps=1), TINY).start_from(tmp_path / "first" / "model.safetensors", ("sam.nothing",))


def test_trainable_prefixes_freeze_everything_else(tmp_path) -> None:
    torch.manual_seed(0)
    trainer = Trainer(tmp_path, _config(steps=2, trainable=("sam.sam_mask_decoder",), focal_weight=1.0), TINY)
    before = {k: v.clone() for k, v in _weights(trainer).items()}
    trainer.run(progress=False)
    changed = {k for k, v in _weights(trainer).items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("sam.sam_mask_decoder") for k in changed)
    resumed = Trainer.resume(tmp_path)
    assert resumed.config.trainable == ("sam.sam_mask_decoder",) and resumed.config.focal_weight == 1.0


def test_train_cli_trains_moga_alone_on_degraded_text_clips(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    base = ["train", "--out", str(out), "--steps", "2", "--image-size", "64", "--validate-every", "0"]
    assert main([*base, "--start-shares", "0.5", "0.5", "0.5"]) == 2
    assert "start-shares: expected three non-negative shares summing to 1" in capsys.readouterr().err
    torch.manual_seed(0)
    assert main([*base, "--moga", "--trainable", "moga.", "--degraded-share", "1", "--start-shares", "1", "0", "0",
                 "--clip-frames", "3"]) == 0
    trainer = Trainer.resume(out)
    assert trainer.model.config.moga and trainer.config.trainable == ("moga.",)
    assert trainer.config.sampling.degraded_share == 1.0 and trainer.config.sampling.start_shares == (1.0, 0.0, 0.0)
    ups = [bank.up for bank in trainer.model.moga.banks.values()]
    assert any(up.abs().sum() > 0 for up in ups), "MoGA's up vectors start at zero and must have trained"


def test_memory_curriculum_schedule_holds_then_fades_in() -> None:
    from mqc_edge.training.trainer import tracked_content

    config = _config(memory_curriculum=(3, 4))
    assert [tracked_content(config, step) for step in range(9)] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert tracked_content(_config(), 0) == 1.0  # off by default
    assert TrainConfig.from_json(config.to_json()).memory_curriculum == (3, 4)


@pytest.mark.parametrize("kind", ["box", "text"])
def test_without_content_a_tracked_frame_comes_from_memory_alone(kind: str) -> None:
    """With `tracked_content` 0, frame 1's masks do not depend on frame 1's pixels (only the memory
    of frame 0 says where the target is); at 1 they do."""
    torch.manual_seed(3)
    model = MQCSAM(TINY).eval()
    sampling = dataclasses.replace(SAMPLING, start_shares=(0.0, 1.0, 0.0))
    clip = sample_clip(11, 0, sampling)
    obj = clip.objects[0]
    if kind == "text":
        ids, mask = model.text_encoder.tokenize(["the car"])
        start = Start("text", text_hidden=model.text_encoder.hidden_states(ids, mask), text_mask=mask)
    else:
        start = Start("box", box=obj.box)
    images = torch.from_numpy(clip.images)
    other = images.clone()
    other[1] = torch.flip(images[1], dims=(-1,)) + 0.5  # frame 1's content changed, frame 0 kept
    unroller = ClipUnroller(model)
    with torch.no_grad():
        unroller.tracked_content = 0.0
        blind = [_frame_outputs(unroller(x, start)[1]) for x in (images, other)]
        unroller.tracked_content = 1.0
        seeing = [_frame_outputs(unroller(x, start)[1]) for x in (images, other)]
    torch.testing.assert_close(blind[0], blind[1], rtol=0, atol=1e-6)
    assert (seeing[0] - seeing[1]).abs().max() > 1e-3


def _frame_outputs(out) -> torch.Tensor:
    """Logits, IoU and object score of one frame (at random init the masks may all be the
    no-object fill, so the heads' outputs are compared too)."""
    return torch.cat([out.hypotheses.flatten(), out.predicted_iou.flatten(), out.object_score.flatten()])


def test_train_cli_records_the_memory_curriculum(tmp_path) -> None:
    out = tmp_path / "run"
    torch.manual_seed(0)
    assert main(["train", "--out", str(out), "--steps", "2", "--image-size", "64", "--validate-every", "0",
                 "--clip-frames", "2", "--memory-curriculum", "1", "1", "--memory-locality", "4",
                 "--memory-mask-gain", "3", "--balanced-weight", "0.5", "--stop-at", "1"]) == 0
    resumed = Trainer.resume(out)
    assert resumed.config.memory_curriculum == (1, 1) and resumed.config.balanced_weight == 0.5
    assert resumed.config.memory_locality == 4.0 and resumed.config.memory_mask_gain == 3.0
    assert main(["train", "--out", str(out), "--resume", "--memory-locality", "4"]) == 2  # the start is fixed
    assert main(["train", "--out", str(out), "--resume"]) == 0
    import json

    logged = [json.loads(line)["tracked_content"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert logged == [0.0, 1.0]


def test_batched_steps_render_the_same_clips_ahead_and_stop_at_a_time_limit(tmp_path) -> None:
    """`batch_clips` B: B clips a step, the same whatever renders them (in the loop or worker processes
    ahead); a time limit stops the run checkpointed, and --resume goes on to the same weights."""
    config = _config(steps=2, batch_clips=3, sampling=dataclasses.replace(SAMPLING, start_shares=(0.3, 0.4, 0.3)))
    runs = []
    for workers in (0, 1):
        torch.manual_seed(0)
        trainer = Trainer(tmp_path / f"w{workers}", config, TINY)
        trainer.run(progress=False, loader_workers=workers)
        runs.append(trainer)
    logged = [[json.loads(line) for line in (tmp_path / f"w{w}" / "log.jsonl").read_text().splitlines()]
              for w in (0, 1)]
    assert [entry["step"] for entry in logged[0]] == [0, 1]
    assert all(entry["objects"] >= 3 for entry in logged[0])  # at least one object from each of the 3 clips
    for mine, theirs in zip(*logged, strict=True):  # the same clips, so the same losses
        assert (mine["objects"], mine["start"]) == (theirs["objects"], theirs["start"])
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-6)

    torch.manual_seed(0)
    stopped = Trainer(tmp_path / "limited", config, TINY)
    assert stopped.run(progress=False, time_limit_s=0.0).step == 0
    resumed = Trainer.resume(tmp_path / "limited")
    assert resumed.run(progress=False).step == 2
    assert _same_weights(resumed, runs[0])


def test_a_run_on_precomputed_text_states_leaves_the_language_model_out(tmp_path) -> None:
    """`text_states`: the language model is never loaded, and a text clip's loss is the live model's
    (fp16 storage: within 1e-3); a file written for another text length is refused by name."""
    from mqc_edge.errors import ConfigError
    from mqc_edge.training.text_states import write_text_states
    from mqc_edge.training.trainer import step_clips

    config = _config(steps=2, sampling=dataclasses.replace(SAMPLING, start_shares=(1.0, 0.0, 0.0)))
    torch.manual_seed(0)
    live = Trainer(tmp_path / "live", config, TINY)
    texts = sorted({obj.text for index in range(2) for clip in step_clips(config, index) for obj in clip.objects})
    path = tmp_path / "states.safetensors"
    write_text_states(live.model.text_encoder, texts, path)
    torch.manual_seed(0)
    stored = Trainer(tmp_path / "stored", dataclasses.replace(config, text_states=str(path)), TINY)
    assert stored.model.text_encoder.language_model is None and live.model.text_encoder.language_model is not None
    assert [stored.step(), stored.step()] == pytest.approx([live.step(), live.step()], rel=1e-3)

    with pytest.raises(ConfigError, match="written for 16 text tokens"):
        Trainer(tmp_path / "other", dataclasses.replace(config, text_states=str(path)),
                dataclasses.replace(TINY, max_text_tokens=32))


def test_a_batched_step_has_the_loss_of_its_clips_one_by_one(tmp_path) -> None:
    """The batched path (encoder once, SAM 2 starts batched, their loss batched) gives every object the
    loss the one-clip path gives it, the memory-read loss included."""
    config = _config(batch_clips=4, sampling=dataclasses.replace(SAMPLING, start_shares=(0.3, 0.4, 0.3)),
                     memory_read_weight=0.5)
    torch.manual_seed(0)
    trainer = Trainer(tmp_path, config, TINY)
    trainer.model.eval()
    from mqc_edge.training.trainer import step_clips

    clips = step_clips(config, 0)
    assert {clip.start for clip in clips} == {"text", "box", "point"}
    with torch.no_grad():
        batched = trainer._batched_losses(clips)
        order = [kind for kind in ("box", "point", "text")]
        one_by_one = torch.cat([trainer._clip_losses(clip) for kind in order for clip in clips if clip.start == kind])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)


def test_the_memory_read_head_trains_and_resumes_with_the_run(tmp_path) -> None:
    config = _config(steps=3, memory_read_weight=1.0)
    runs = []
    for name, stops in (("whole", [None]), ("split", [1, None])):
        torch.manual_seed(0)
        trainer = Trainer(tmp_path / name, config, TINY)
        start = [p.detach().clone() for p in trainer.memory_head.parameters()]
        for stop in stops:
            trainer.run(steps=stop, progress=False)
            if stop is not None:
                trainer = Trainer.resume(tmp_path / name)
        runs.append(trainer)
    assert any(not torch.equal(a, b) for a, b in zip(start, runs[0].memory_head.parameters()))
    assert _same_weights(*runs)
    assert all(torch.equal(a, b) for a, b in zip(runs[0].memory_head.parameters(), runs[1].memory_head.parameters()))


def test_a_fresh_run_is_initialised_from_its_own_seed(tmp_path) -> None:
    """Two processes starting the same run get the same fresh weights and memory-read head, whatever
    drew from the global generator before (the CLI seeds nothing itself)."""
    config = _config(memory_read_weight=1.0)
    built = []
    for draws in (0, 5):
        torch.rand(draws)
        built.append(Trainer(tmp_path / f"run{draws}", config, TINY))
    assert _same_weights(*built)
    assert all(torch.equal(a, b) for a, b in zip(built[0].memory_head.parameters(), built[1].memory_head.parameters()))
    other = Trainer(tmp_path / "other", dataclasses.replace(config, seed=config.seed + 1), TINY)
    assert not _same_weights(built[0], other), "the seed should decide the fresh init"
