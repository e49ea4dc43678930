"""Issue 5 item 7 on a tiny synthetic set: onnxruntime against the torch reference, J&F and per-frame IoU."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from mqc_edge.benchmarks.parity_eval import (
    FRAME_IOU_MIN,
    FRAME_LOGIT_RELATIVE,
    LogitDelta,
    ParityEvalConfig,
    compare_predictions,
    frames_under,
    mask_iou,
    run_parity_eval,
)
from mqc_edge.cli import main
from mqc_edge.data.dataset import RVOSDataset
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.results import FrameResult
from suite_helpers import synth_dataset

VIDEOS, FRAMES, SIZE = 2, 8, 128


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return synth_dataset(tmp_path_factory.mktemp("synth"), VIDEOS, FRAMES, SIZE, seed=3)


def test_mask_iou_by_hand() -> None:
    a, b = np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    assert mask_iou(np.zeros(4, bool), np.zeros(4, bool)) == 1.0


@pytest.fixture(scope="module")
def parity(exported, dataset, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("parity")
    code = main(["eval", "--model", str(exported[0]), "--gt", str(dataset), "--out", str(out), "--threads", "1"])
    return out, code


def test_onnxruntime_matches_torch_on_a_synthetic_set_in_both_modes(parity, dataset) -> None:
    out, code = parity
    report = json.loads((out / "parity.json").read_text())
    assert code == 0 and report["passed"], report
    expressions = sum(len(video.expressions) for video in RVOSDataset.load(dataset).videos.values())
    assert sorted(report["modes"]) == ["mqc", "sam2"]
    for mode, row in report["modes"].items():
        assert row["frames_compared"] == expressions * FRAMES
        assert row["iou_mean"] >= 0.999 and row["jf_delta"] <= 0.002, (mode, row)
        for backend in ("onnxruntime", "torch"):
            metrics = json.loads((out / "metrics" / mode / backend / "metrics.json").read_text())
            assert metrics["J&F"] == row["scores"][backend]["J&F"]
            assert len(list((out / "predictions" / mode / backend).rglob("*.png"))) == expressions * FRAMES
        logits = row["logits"]
        assert logits["frames"] == expressions * FRAMES and logits["threshold_relative"] == FRAME_LOGIT_RELATIVE
        assert 0 < logits["max_relative"] <= FRAME_LOGIT_RELATIVE and logits["frames_over"] == 0, (mode, logits)
        assert row["every_frame"] == (row["frames_under"]["count"] == 0)
        worst = row["frames_under"]["worst"]
        assert len(worst) == min(row["frames_under"]["count"], 5)
        assert all(w["iou"] < FRAME_IOU_MIN for w in worst) and [w["iou"] for w in worst] == sorted(w["iou"] for w in worst)
    markdown = (out / "parity.md").read_text()
    assert "| mqc |" in markdown and f"frames IoU < {FRAME_IOU_MIN}" in markdown
    assert f"frames over {FRAME_LOGIT_RELATIVE:g}" in markdown


def test_the_comparison_sees_a_single_changed_mask(parity, dataset, tmp_path) -> None:
    out, _ = parity
    candidate = tmp_path / "candidate"
    shutil.copytree(out / "predictions" / "sam2" / "onnxruntime", candidate)
    changed = sorted(candidate.rglob("*.png"))[3]
    mask = np.asarray(Image.open(changed)) > 0
    mask[: mask.shape[0] // 2] = ~mask[: mask.shape[0] // 2]
    Image.fromarray(mask.astype(np.uint8) * 255).save(changed)
    loaded = RVOSDataset.load(dataset)
    ious = compare_predictions(loaded, candidate, out / "predictions" / "sam2" / "torch")
    assert sum(iou < 1.0 for iou in ious) == 1 and min(ious) < 0.9
    under = frames_under(loaded, ious)
    video, exp_id = changed.relative_to(candidate).parts[:2]
    assert under["count"] == 1 and under["threshold"] == FRAME_IOU_MIN
    assert under["worst"] == [{"video": video, "expression": exp_id, "frame": changed.stem, "iou": min(ious)}]


def test_comparing_torch_with_itself_is_refused(exported, dataset, tmp_path) -> None:
    with pytest.raises(ConfigError, match="compare a graph backend with torch"):
        run_parity_eval(ParityEvalConfig(exported[0], dataset, tmp_path, backend="torch"))


def _result(index: int, logits: np.ndarray) -> FrameResult:
    return FrameResult(frame_index=index, logits=logits, mask=logits > 0, logits_lowres=logits, object_score=1.0,
                       iou=1.0)


def _results(logits: list[np.ndarray]) -> list[list[FrameResult]]:
    """One object's results on frames 0.. with these logits."""
    return [[_result(index, value) for index, value in enumerate(logits)]]


def test_logit_delta_pairs_frames_and_counts_those_over_the_relative_threshold() -> None:
    """Relative to the reference frame's max |logit|, whichever tracker reports first."""
    reference = [np.array([[80.0, -40.0]]), np.array([[10.0, -2.0]]), np.zeros((1, 2))]
    candidate = [reference[0] + 0.07, reference[1] + 0.02, reference[2].copy()]  # 8.75e-4, 2e-3, exact
    delta = LogitDelta("onnxruntime", "torch")
    delta.add("torch", _results(reference[:2]))
    delta.add("onnxruntime", _results(candidate))
    delta.add("torch", [[_result(2, reference[2])]])
    delta.add("other", _results(candidate))  # ignored
    report = delta.report()
    assert report["frames"] == 3 and report["frames_over"] == 1 and not delta.pending
    assert report["max_relative"] == pytest.approx(2e-3) and report["max_abs"] == pytest.approx(0.07)
