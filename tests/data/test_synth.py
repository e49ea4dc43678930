"""Synthetic satellite video: determinism, target sizes, frame-0 expressions, motion, exact masks, occlusion, CLI."""

import re
from dataclasses import replace

import numpy as np
import pytest

from mqc_edge.cli import main
from mqc_edge.data.dataset import RVOSDataset
from mqc_edge.data.synth import (
    Bridge,
    Cloud,
    Degradation,
    SceneSpec,
    Strip,
    TargetSpec,
    generate_dataset,
    random_scene,
    render_video,
)
from mqc_edge.errors import ConfigError

SIZE = (160, 160)
LOCATION = re.compile(r"(in the center|on the (left|right)|at the (top|bottom)(-(left|right))?)$")


def _random_scenes(count, frames=1, size=SIZE, degrade=False):
    return [random_scene(np.random.default_rng([99, index]), size, frames, degrade) for index in range(count)]


def _centroid(mask):
    rows, columns = np.nonzero(mask)
    return columns.mean(), rows.mean()


def _cell_words(mask):
    """Expected location words from the mask centroid, by thirds of the frame (pixel centres on integers)."""
    height, width = mask.shape
    x, y = _centroid(mask)
    column = min(int(3 * (x + 0.5) / width), 2)
    row = min(int(3 * (y + 0.5) / height), 2)
    return ("top", None, "bottom")[row], ("left", None, "right")[column]


def _parse_location(text):
    match = LOCATION.search(text)
    assert match, f"no location phrase in {text!r}"
    phrase = match.group(0)
    row = "top" if "top" in phrase else "bottom" if "bottom" in phrase else None
    column = "left" if "left" in phrase else "right" if "right" in phrase else None
    return row, column


def _look_alikes_scene(**overrides):
    """One moving aircraft, a parked aircraft of the same paint, a parked car, two look-alike ships."""
    fields = dict(
        width=160,
        height=160,
        targets=(
            TargetSpec("aircraft", (40.0, 30.0), 0.0, 30.0, velocity=(1.5, 0.0), color="white"),
            TargetSpec("aircraft", (120.0, 130.0), 90.0, 30.0, color="white", is_distractor=True),
            TargetSpec("car", (80.0, 80.0), 45.0, 12.0, color="red"),
            TargetSpec("ship", (25.0, 140.0), 180.0, 24.0, color="grey"),
            TargetSpec("ship", (140.0, 25.0), 180.0, 24.0, color="grey"),
        ),
        strips=(Strip("runway", (0.0, 30.0), (160.0, 30.0), 18.0),),
        drift_px=1.0,
        drift_period=20.0,
    )
    fields.update(overrides)
    return SceneSpec(**fields)


def test_same_seed_same_arrays_and_other_seed_differs():
    scene = random_scene(np.random.default_rng(3), SIZE, 4)
    assert scene == random_scene(np.random.default_rng(3), SIZE, 4)
    first, again, other = (render_video(scene, 4, seed) for seed in (7, 7, 8))
    assert all(np.array_equal(a, b) for a, b in zip(first.frames + first.id_masks, again.frames + again.id_masks))
    assert first.expressions == again.expressions
    assert not np.array_equal(first.frames[0], other.frames[0])


def test_video_i_depends_only_on_seed_and_i(tmp_path):
    generate_dataset(tmp_path / "one", videos=1, frames=2, size=(64, 64), seed=4, split="test", degrade=True)
    generate_dataset(tmp_path / "two", videos=2, frames=2, size=(64, 64), seed=4, split="test", degrade=True)
    generate_dataset(tmp_path / "other", videos=1, frames=2, size=(64, 64), seed=5, split="test", degrade=True)
    for kind, suffix in (("JPEGImages", "jpg"), ("Annotations", "png")):
        for frame in ("00000", "00001"):
            relative = f"{kind}/synth_4_0000/{frame}.{suffix}"
            assert (tmp_path / "one" / relative).read_bytes() == (tmp_path / "two" / relative).read_bytes()
    assert (tmp_path / "two" / "JPEGImages" / "synth_4_0001" / "00000.jpg").is_file()
    other = (tmp_path / "other" / "JPEGImages" / "synth_5_0000" / "00000.jpg").read_bytes()
    assert other != (tmp_path / "one" / "JPEGImages" / "synth_4_0000" / "00000.jpg").read_bytes()


def test_every_category_covers_between_0_05_and_2_percent_of_the_frame():
    fractions = {}
    for scene in _random_scenes(40):
        clear = replace(scene, clouds=(), bridges=())
        ids = render_video(clear, 1, 0).id_masks[0]
        for obj_id, target in enumerate(clear.targets, start=1):
            fractions.setdefault(target.category, []).append((ids == obj_id).mean())
    assert set(fractions) == {"aircraft", "ship", "car", "train"}
    for category, values in fractions.items():
        assert 0.0005 <= min(values) and max(values) <= 0.02, (category, min(values), max(values))


def test_expression_location_agrees_with_frame0_centroid_cell():
    checked = 0
    for scene in _random_scenes(40):
        video = render_video(scene, 1, 1)
        referred = {obj_id for obj_id, target in video.objects.items() if not target.is_distractor}
        assert {expression.obj_id for expression in video.expressions} == referred
        for expression in video.expressions:
            mask = video.id_masks[0] == expression.obj_id
            assert _parse_location(expression.text) == _cell_words(mask), expression.text
            assert video.objects[expression.obj_id].category in expression.text
            checked += 1
    assert checked >= 40


def test_look_alikes_get_distinguishing_words():
    video = render_video(_look_alikes_scene(), 1, 0)
    texts = {expression.obj_id: expression.text for expression in video.expressions}
    assert set(texts) == {1, 3, 4, 5}  # the distractor (2) gets no expression
    assert texts[1].endswith("at the top-left") and texts[4].endswith("at the bottom-left")
    assert texts[5].endswith("at the top-right") and texts[3].endswith("in the center")


def test_moving_targets_move_and_stationary_ones_only_drift():
    scene = _look_alikes_scene()
    frames = 21
    video = render_video(scene, frames, 0)
    for obj_id, target in video.objects.items():
        start = np.array(_centroid(video.id_masks[0] == obj_id))
        end = np.array(_centroid(video.id_masks[-1] == obj_id))
        drift = np.array(scene.drift_at(frames - 1))
        expected = np.array(target.velocity) * (frames - 1) + drift
        assert np.linalg.norm(end - start - expected) < 1.0, (obj_id, end - start, expected)
    stationary = video.id_masks[0] == 3
    assert any(not np.array_equal(stationary, ids == 3) for ids in video.id_masks[1:]), "platform drift moved nothing"


def test_mask_is_exactly_the_pixels_the_target_changes():
    scene = _look_alikes_scene(shadow=(0.0, 0.0), targets=_look_alikes_scene().targets[:3])
    for removed in range(len(scene.targets)):
        without = replace(scene, targets=scene.targets[:removed] + scene.targets[removed + 1 :])
        full, background = render_video(scene, 3, 2), render_video(without, 3, 2)
        for t in range(3):
            changed = (full.frames[t] != background.frames[t]).any(axis=2)
            mask = full.id_masks[t] == removed + 1
            assert mask.sum() > 50
            assert np.array_equal(changed, mask), (removed, t, int((changed != mask).sum()))


def test_mask_pixels_differ_from_background_in_random_scenes():
    for scene in _random_scenes(8, frames=2):
        clear = replace(scene, clouds=(), bridges=())
        full = render_video(clear, 2, 3)
        for removed in range(len(clear.targets)):
            background = render_video(replace(clear, targets=clear.targets[:removed] + clear.targets[removed + 1 :]), 2, 3)
            for t in range(2):
                mask = full.id_masks[t] == removed + 1
                changed = (full.frames[t] != background.frames[t]).any(axis=2)
                assert changed[mask].mean() > 0.97


def _occlusion_areas(scene, frames):
    video = render_video(scene, frames, 0)
    return np.array([(ids == 1).sum() for ids in video.id_masks])


def test_cloud_passing_over_a_target_shrinks_then_restores_its_mask():
    car = TargetSpec("car", (80.0, 80.0), 30.0, 16.0, color="white")
    scene = SceneSpec(160, 160, targets=(car,), clouds=(Cloud((10.0, 80.0), 24.0, velocity=(7.0, 0.0)),), drift_px=0.0)
    areas = _occlusion_areas(scene, 21)
    assert areas[0] > 0 and areas[-1] == areas[0]
    assert areas[10] == 0  # the opaque core sits on the car at t = 10
    assert (areas[5:16] < areas[0]).sum() >= 3


def test_bridge_hides_a_target_passing_under_it():
    car = TargetSpec("car", (20.0, 80.0), 0.0, 16.0, velocity=(4.0, 0.0), color="red")
    scene = SceneSpec(160, 160, targets=(car,), strips=(Strip("road", (0.0, 80.0), (160.0, 80.0), 14.0),),
                      bridges=(Bridge((80.0, 60.0), (80.0, 100.0), 24.0),))
    areas = _occlusion_areas(scene, 31)
    assert areas[0] > 50
    assert 0 < areas[12] < areas[0]  # nose under the deck, tail still out
    assert areas[15] == 0  # wholly under the 24 px deck
    assert areas[25] > 0.8 * areas[0]


def test_random_occlusions_reduce_visible_masks():
    occluded = 0
    for index in range(40):
        scene = random_scene(np.random.default_rng([7, index]), SIZE, 24)
        if not (scene.clouds or scene.bridges):
            continue
        video = render_video(scene, 24, 0)
        clear = render_video(replace(scene, clouds=(), bridges=()), 24, 0)
        hidden = [(clear_ids > 0).sum() - (ids > 0).sum() for ids, clear_ids in zip(video.id_masks, clear.id_masks)]
        assert max(hidden) > 0
        for obj_id, target in video.objects.items():
            if not target.is_distractor:  # the expressions read frame 0: referents are never hidden there
                assert np.array_equal(video.id_masks[0] == obj_id, clear.id_masks[0] == obj_id)
        occluded += 1
    assert occluded >= 10


def test_degradation_changes_frames_over_time_but_not_masks():
    scene = _look_alikes_scene(degradation=Degradation(noise_sigma=6.0, blur_sigma=1.5, haze=0.4, darkness=0.5, period=8.0))
    degraded = render_video(scene, 8, 0)
    clean = render_video(replace(scene, degradation=None), 8, 0)
    assert all(np.array_equal(a, b) for a, b in zip(degraded.id_masks, clean.id_masks))
    gaps = [np.abs(a.astype(int) - b).mean() for a, b in zip(degraded.frames, clean.frames)]
    assert max(gaps) > 10.0 and min(gaps) < max(gaps) / 2  # strong at times, and varying over the period


def test_bad_hand_made_spec_names_the_field():
    scene = _look_alikes_scene(targets=(TargetSpec("boat", (10.0, 10.0), 0.0, 10.0),))
    with pytest.raises(ConfigError, match=r"targets\[0\]\.category.*boat"):
        render_video(scene, 1, 0)
    with pytest.raises(ConfigError, match="seed"):
        render_video(_look_alikes_scene(), 1, -1)


def test_cli_round_trip(tmp_path, capsys):
    out = tmp_path / "synth"
    argv = ["data", "synth", "--out", str(out), "--videos", "2", "--frames", "3", "--size", "96x80", "--seed", "5"]
    assert main(argv + ["--split", "train", "--degrade"]) == 0
    dataset = RVOSDataset.load(out, split="train")
    assert sorted(dataset.videos) == ["synth_5_0000", "synth_5_0001"]
    for name, record in dataset.videos.items():
        assert record.frames == ("00000", "00001", "00002")
        assert dataset.read_frame(name, "00002").shape == (80, 96, 3)
        assert record.expressions
        for expression in record.expressions.values():
            assert dataset.object_mask(name, "00000", expression.obj_id).any()
            assert expression.category in ("aircraft", "ship", "car", "train")
            assert expression.category in expression.text.split()
    assert main(["data", "synth", "--out", str(out), "--videos", "0"]) == 2
    assert "videos: expected at least 1, got 0" in capsys.readouterr().err


def test_target_scale_shrinks_every_target_by_its_square_in_area(tmp_path):
    full = generate_dataset(tmp_path / "full", 2, 2, (480, 480), seed=3)
    tiny = generate_dataset(tmp_path / "tiny", 2, 2, (480, 480), seed=3, target_scale=0.25)
    for video, record in full.videos.items():
        first = record.frames[0]
        ratio = (tiny.read_annotation(video, first) > 0).sum() / (full.read_annotation(video, first) > 0).sum()
        assert 1 / 16 * 0.6 < ratio < 1 / 16 * 1.6
    with pytest.raises(ConfigError, match="target scale"):
        generate_dataset(tmp_path / "bad", 1, 1, (64, 64), seed=0, target_scale=0)
