"""RS-RVOS layout: round trip through the writer, and validation errors that name the file."""

import json

import numpy as np
import pytest
from PIL import Image

from mqc_edge.data.dataset import DatasetWriter, RVOSDataset, object_palette
from mqc_edge.errors import DatasetError


def _write_small(root, videos=("v0", "v1"), frames=3, split="test"):
    writer = DatasetWriter(root)
    rng = np.random.default_rng(0)
    for video in videos:
        for index in range(frames):
            ids = np.zeros((40, 56), np.uint8)
            ids[5 + index : 15 + index, 10:20] = 1
            ids[30:35, 40:50] = 2
            writer.write_frame(video, f"{index:05d}", rng.integers(0, 255, (40, 56, 3), dtype=np.uint8), ids)
        writer.add_expression(video, "0", f"the car in {video}", 1)
        writer.add_expression(video, "1", "the ship", 2)
    return writer.close(split)


def test_round_trip_keeps_ids_expressions_and_split(tmp_path):
    dataset = _write_small(tmp_path)
    loaded = RVOSDataset.load(tmp_path, split="test")
    assert sorted(loaded.videos) == ["v0", "v1"]
    assert loaded.videos["v1"].frames == ("00000", "00001", "00002")
    assert loaded.videos["v0"].expressions["0"].text == "the car in v0"
    assert loaded.videos["v0"].expressions["1"].obj_id == 2
    mask = loaded.object_mask("v0", "00002", 1)
    assert mask.sum() == 100 and mask[7:17, 10:20].all()
    assert loaded.read_frame("v0", "00000").shape == (40, 56, 3)
    assert dataset.splits() == ["test"]


def test_category_is_optional_and_round_trips(tmp_path):
    writer = DatasetWriter(tmp_path)
    writer.write_frame("v", "00000", np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint8))
    writer.add_expression("v", "0", "the ship", 1, category="ship")
    writer.add_expression("v", "1", "the thing", 1)
    expressions = writer.close().videos["v"].expressions
    assert (expressions["0"].category, expressions["1"].category) == ("ship", None)
    assert "category" not in json.loads((tmp_path / "meta_expressions.json").read_text())["videos"]["v"]["expressions"]["1"]


def test_bad_category_is_named(tmp_path):
    _write_small(tmp_path)
    meta_path = tmp_path / "meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"]["v0"]["expressions"]["1"]["category"] = 3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"meta_expressions.json: video 'v0' expression '1': category must be a non-empty string, got 3"):
        RVOSDataset.load(tmp_path)


def test_annotation_is_a_palette_png_with_davis_colours(tmp_path):
    _write_small(tmp_path, videos=("v0",), frames=1)
    with Image.open(tmp_path / "Annotations" / "v0" / "00000.png") as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]  # id 1 is DAVIS red
    assert object_palette()[6:9] == [0, 128, 0]


def test_second_writer_merges_meta_and_appends_split(tmp_path):
    _write_small(tmp_path, videos=("a",), split="train")
    _write_small(tmp_path, videos=("b",), split="test")
    assert sorted(RVOSDataset.load(tmp_path).videos) == ["a", "b"]
    assert list(RVOSDataset.load(tmp_path, split="train").videos) == ["a"]


def test_missing_meta_names_the_file(tmp_path):
    with pytest.raises(DatasetError, match="meta_expressions.json: missing"):
        RVOSDataset.load(tmp_path)


def test_broken_json_names_the_file(tmp_path):
    (tmp_path / "meta_expressions.json").write_text("{not json")
    with pytest.raises(DatasetError, match="meta_expressions.json: not valid JSON"):
        RVOSDataset.load(tmp_path)


def test_missing_frame_file_names_it(tmp_path):
    _write_small(tmp_path, videos=("v0",))
    (tmp_path / "JPEGImages" / "v0" / "00001.jpg").unlink()
    with pytest.raises(DatasetError, match=r"v0/00001\.jpg: frame listed"):
        RVOSDataset.load(tmp_path)


def test_bad_obj_id_and_unknown_split_video_are_named(tmp_path):
    _write_small(tmp_path, videos=("v0",))
    meta = json.loads((tmp_path / "meta_expressions.json").read_text())
    meta["videos"]["v0"]["expressions"]["0"]["obj_id"] = "car"
    (tmp_path / "meta_expressions.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="expression '0': obj_id must be an integer, got 'car'"):
        RVOSDataset.load(tmp_path)
    meta["videos"]["v0"]["expressions"]["0"]["obj_id"] = "1"
    (tmp_path / "meta_expressions.json").write_text(json.dumps(meta))
    (tmp_path / "splits" / "test.txt").write_text("v0\nghost\n")
    with pytest.raises(DatasetError, match=r"test\.txt:2: video 'ghost'"):
        RVOSDataset.load(tmp_path, split="test")


def test_missing_annotation_is_named(tmp_path):
    _write_small(tmp_path, videos=("v0",))
    (tmp_path / "Annotations" / "v0" / "00000.png").unlink()
    dataset = RVOSDataset.load(tmp_path)
    with pytest.raises(DatasetError, match=r"00000\.png: annotation missing"):
        dataset.object_mask("v0", "00000", 1)
