"""The referring protocol end to end on tiny datasets written with DatasetWriter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mqc_edge.cli import main
from mqc_edge.data.dataset import DatasetWriter
from mqc_edge.data.evaluate import evaluate_predictions, format_table, read_prediction
from mqc_edge.errors import DatasetError

HEIGHT, WIDTH = 24, 40  # not square, so a swapped W/H in a message or check shows


def box(top: int, left: int, size: int = 8) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def write_video(writer: DatasetWriter, video: str, id_maps: list[np.ndarray]) -> None:
    rgb = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    for index, ids in enumerate(id_maps):
        writer.write_frame(video, f"{index:05d}", rgb, ids.astype(np.uint8))


def write_prediction(pred_root: Path, video: str, exp_id: str, frame: int, mask: np.ndarray, mode: str) -> None:
    """Save `mask` as a PNG of `mode`: palette index 1, grey 255, or colour (0, 0, 7)."""
    path = pred_root / video / exp_id / f"{frame:05d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        pixels = np.zeros((*mask.shape, 3), dtype=np.uint8)
        pixels[mask] = (0, 0, 7)
        Image.fromarray(pixels).save(path)
    elif mode == "P":
        image = Image.fromarray(mask.astype(np.uint8))
        image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        image.save(path)
    else:
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)


@pytest.fixture
def referring_case(tmp_path: Path) -> tuple[Path, Path]:
    """Two videos, three expressions; expected scores derived in the test that uses them.

    v1 has object 1 (frames 0-2, absent from frame 3) and object 2 (all 4 frames);
    v2 has object 1 in its 2 frames.
    """
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    writer = DatasetWriter(gt)
    obj1, obj2 = box(2, 2), box(12, 24)
    v1 = [obj1 * 1 + obj2 * 2 for _ in range(3)] + [obj2 * 2]
    write_video(writer, "v1", v1)
    writer.add_expression("v1", "0", "the ship at the top-left", 1)
    writer.add_expression("v1", "1", "the plane at the bottom-right", 2)
    write_video(writer, "v2", [obj1 * 1, obj1 * 1])
    writer.add_expression("v2", "0", "the only car", 1)
    writer.close()
    # v1/0: right on frames 0 and 1, empty on frame 2, wrong but irrelevant on frame 3 (no target).
    for frame, mask in enumerate([obj1, obj1, np.zeros_like(obj1), box(0, 30)]):
        write_prediction(pred, "v1", "0", frame, mask, "P")
    for frame in range(4):
        write_prediction(pred, "v1", "1", frame, obj2, "RGB")
    for frame in range(2):
        write_prediction(pred, "v2", "0", frame, obj1, "L")
    return pred, gt


def test_referring_averaging(referring_case: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = referring_case
    report = evaluate_predictions(pred, gt, tmp_path / "out")
    # v1/0 scores frames 0-2 only (frame 3 has empty GT, excluded): J = F = [1, 1, 0] -> 2/3.
    # v1/1 and v2/0 are perfect: 1. Expressions weigh equally: J = (2/3 + 1 + 1) / 3 = 8/9;
    # weighting by frames instead would give (2 + 4 + 2) / 9.
    assert report["J"] == pytest.approx(8 / 9)
    assert report["F"] == pytest.approx(8 / 9)
    assert report["J&F"] == pytest.approx(8 / 9)
    assert (report["expressions"], report["frames"], report["frames_excluded"]) == (3, 9, 1)
    # v1/0 recall: 2 of 3 frames above 0.5. Decay, n = 3: edges 0, 0.5, 1, 1.5, 2 -> 0, 1, 1, 2, 2;
    # first bin frames 0-1 = 1, last bin frame 2 = 0 -> 1. Others: recall 1, decay 0.
    assert report["J_recall"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert report["F_decay"] == pytest.approx(1 / 3)
    v1 = report["per_video"]["v1"]
    assert v1["J"] == pytest.approx(5 / 6)
    assert v1["J_decay"] == pytest.approx(0.5)
    assert v1["per_expression"]["0"]["J"] == pytest.approx(2 / 3)
    assert v1["per_expression"]["0"]["frames_excluded"] == 1
    assert v1["per_expression"]["1"]["F"] == 1.0
    assert report["per_video"]["v2"]["J&F"] == 1.0


def test_reports_are_written(referring_case: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = referring_case
    out = tmp_path / "out"
    report = evaluate_predictions(pred, gt, out)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == report
    for key in ("J&F", "J", "F", "J_recall", "F_recall", "J_decay", "F_decay", "per_video", "expressions", "frames"):
        assert key in saved
    table = (out / "metrics.md").read_text()
    assert table == format_table(report)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["**overall**", "v1", "v2"]
    assert "| 0.8889 | 0.8889 | 0.8889 |" in rows[1]
    assert sorted(path.name for path in out.iterdir()) == ["metrics.json", "metrics.md"]


def test_per_category_summary_when_the_dataset_names_categories(referring_case: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    pred, gt = referring_case
    assert "per_category" not in evaluate_predictions(pred, gt, tmp_path / "plain")
    meta_path = gt / "meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"]["v1"]["expressions"]["0"]["category"] = "ship"
    meta["videos"]["v2"]["expressions"]["0"]["category"] = "ship"
    meta_path.write_text(json.dumps(meta))
    report = evaluate_predictions(pred, gt, tmp_path / "out")
    # ships: v1/0 (J = F = 2/3) and v2/0 (1); v1/1 names no category.
    assert sorted(report["per_category"]) == ["(no category)", "ship"]
    ship = report["per_category"]["ship"]
    assert ship["J&F"] == pytest.approx(5 / 6)
    assert (ship["expressions"], ship["frames"]) == (2, 5)
    assert report["per_category"]["(no category)"]["J&F"] == 1.0
    assert report["J&F"] == pytest.approx(8 / 9)
    table = (tmp_path / "out" / "metrics.md").read_text().splitlines()
    rows = [line.split("|")[1].strip() for line in table if line.startswith("| ")]
    assert rows[-2:] == ["(no category)", "ship"]


def test_read_prediction_accepts_palette_grey_and_colour(referring_case: tuple[Path, Path]) -> None:
    pred, _ = referring_case
    expected = box(12, 24)
    np.testing.assert_array_equal(read_prediction(pred / "v1" / "1" / "00000.png"), expected)  # RGB (0, 0, 7)
    np.testing.assert_array_equal(read_prediction(pred / "v2" / "0" / "00000.png"), box(2, 2))  # L
    np.testing.assert_array_equal(read_prediction(pred / "v1" / "0" / "00000.png"), box(2, 2))  # P


def test_missing_prediction_names_the_file(referring_case: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = referring_case
    (pred / "v1" / "1" / "00002.png").unlink()
    (pred / "v2" / "0" / "00001.png").unlink()
    with pytest.raises(DatasetError, match=r"v1/1/00002\.png: prediction missing \(and 1 more\)"):
        evaluate_predictions(pred, gt, tmp_path / "out")
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_prediction_of_wrong_size_names_file_and_sizes(referring_case: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = referring_case
    Image.fromarray(np.zeros((WIDTH, HEIGHT), dtype=np.uint8)).save(pred / "v2" / "0" / "00001.png")
    with pytest.raises(DatasetError, match=r"v2/0/00001\.png: prediction is 24x40 \(WxH\), expected 40x24"):
        evaluate_predictions(pred, gt, tmp_path / "out")


def test_unreadable_prediction_is_a_dataset_error(referring_case: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = referring_case
    (pred / "v1" / "0" / "00003.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"v1/0/00003\.png: unreadable prediction"):
        evaluate_predictions(pred, gt, tmp_path / "out")


def test_prediction_of_unsupported_mode_is_refused(referring_case: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = referring_case
    Image.new("LA", (WIDTH, HEIGHT)).save(pred / "v2" / "0" / "00000.png")
    with pytest.raises(DatasetError, match=r"v2/0/00000\.png: prediction PNG mode must be one of .*, got LA"):
        evaluate_predictions(pred, gt, tmp_path / "out")


def test_dataset_without_expressions_is_refused(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "gt")
    write_video(writer, "v", [box(2, 2) * 1])
    writer.close()
    with pytest.raises(DatasetError, match="no expressions to evaluate"):
        evaluate_predictions(tmp_path / "pred", tmp_path / "gt", tmp_path / "out")


def test_expression_whose_target_never_appears(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "gt")
    write_video(writer, "v", [box(2, 2) * 1])
    writer.add_expression("v", "0", "the missing ship", 5)
    writer.close()
    write_prediction(tmp_path / "pred", "v", "0", 0, box(2, 2), "L")
    with pytest.raises(DatasetError, match=r"Annotations/v: object id 5 of expression '0' appears in none of the 1"):
        evaluate_predictions(tmp_path / "pred", tmp_path / "gt", tmp_path / "out")


def test_split_limits_the_videos_needed(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    writer = DatasetWriter(gt)
    write_video(writer, "train_v", [box(2, 2) * 1])
    writer.add_expression("train_v", "0", "a ship", 1)
    writer.close(split="train")
    writer = DatasetWriter(gt)
    write_video(writer, "test_v", [box(2, 2) * 1])
    writer.add_expression("test_v", "0", "a ship", 1)
    writer.close(split="test")
    write_prediction(pred, "test_v", "0", 0, box(2, 2), "L")
    report = evaluate_predictions(pred, gt, tmp_path / "out", split="test")
    assert list(report["per_video"]) == ["test_v"]
    with pytest.raises(DatasetError, match=r"train_v/0/00000\.png: prediction missing"):
        evaluate_predictions(pred, gt, tmp_path / "out")


def test_video_longer_than_256_frames(tmp_path: Path) -> None:
    # 300 frames, target everywhere; prediction right on frames 0-149, empty after.
    # Decay edges for n = 300: 0, 75, 150, 224, 299; first bin (0-75) J = 1, last (224-299) J = 0.
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    target = box(2, 2)
    writer = DatasetWriter(gt)
    write_video(writer, "long", [target * 1] * 300)
    writer.add_expression("long", "0", "the ship", 1)
    writer.close()
    for frame in range(300):
        write_prediction(pred, "long", "0", frame, target if frame < 150 else np.zeros_like(target), "L")
    report = evaluate_predictions(pred, gt, tmp_path / "out")
    assert report["frames"] == 300
    assert report["J"] == pytest.approx(0.5)
    assert report["J_recall"] == pytest.approx(0.5)
    assert report["J_decay"] == 1.0
    assert report["F_decay"] == 1.0


def test_cli_round_trip(referring_case: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred, gt = referring_case
    out = tmp_path / "cli"
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert report["J"] == pytest.approx(8 / 9)
    assert format_table(report) in printed
    (pred / "v2" / "0" / "00000.png").unlink()
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mqc-edge: error: ") and "v2/0/00000.png" in error and error.count("\n") == 1
