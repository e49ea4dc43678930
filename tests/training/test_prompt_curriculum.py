"""The prompt curriculum: position first (content zeroed, box targets), content faded in, then text;
only the prompt path trains, and a run is reproducible from its config."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mqc_edge.model.checkpoint import load_checkpoint, save_checkpoint
from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.training.prompt_curriculum import (
    PROMPT_PARTS,
    TEXT_PARTS,
    CurriculumConfig,
    feature_scale,
    filled_boxes,
    phase_learning_rate,
    train_prompts,
)

pytestmark = pytest.mark.slow

TINY = dataclasses.replace(DEFAULT_MODEL_CONFIG, image_size=64, max_text_tokens=16)
SMALL = CurriculumConfig(images=3, text_images=3, validation_images=2, position_steps=2, fade_steps=2,
                         full_steps=1, text_steps=2, warmup_steps=1, max_objects=3)


def test_content_is_zero_during_position_then_fades_in_linearly() -> None:
    config = CurriculumConfig(position_steps=10, fade_steps=4)
    assert [feature_scale(config, s) for s in (0, 9, 10, 11, 12, 13, 20)] == [0, 0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_phase_rate_warms_up_then_decays_to_five_percent() -> None:
    assert phase_learning_rate(1.0, 0, 100, 10) == pytest.approx(0.1)
    assert phase_learning_rate(1.0, 10, 100, 10) == pytest.approx(1.0)
    assert phase_learning_rate(1.0, 100, 100, 10) == pytest.approx(0.05)


def test_filled_boxes_cover_each_mask_bounding_box() -> None:
    masks = torch.zeros(2, 8, 8)
    masks[0, 1, 2] = masks[0, 3, 5] = 1  # box rows 1..3, cols 2..5
    masks[1, 6, 6] = 1
    boxes = filled_boxes(masks)
    assert boxes[0].sum() == 3 * 4 and boxes[0, 1:4, 2:6].all()
    assert boxes[1].sum() == 1 and boxes[1, 6, 6] == 1


def _run(tmp_path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    init = tmp_path / "init.safetensors"
    if not init.exists():
        save_checkpoint(MQCSAM(TINY), init)
    report = train_prompts(init, tmp_path / name, SMALL, progress=False)
    model, _ = load_checkpoint(tmp_path / name / "model.safetensors")
    return report, {k: v for k, v in model.state_dict().items() if "language_model" not in k}


def test_only_the_prompt_path_trains_and_a_run_repeats_exactly(tmp_path) -> None:
    report, trained = _run(tmp_path, "a")
    _, again = _run(tmp_path, "b")
    initial, _ = load_checkpoint(tmp_path / "init.safetensors")
    before = initial.state_dict()
    changed = {k for k, v in trained.items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(PROMPT_PARTS + TEXT_PARTS) for k in changed)
    assert any(k.startswith("sam.sam_mask_decoder") for k in changed)
    assert any(k.startswith("fusion.") for k in changed)
    assert all(torch.equal(trained[k], again[k]) for k in trained)
    assert set(report) == {"box_own", "box_other", "text_own", "text_other"}
    assert all(0.0 <= report[key] <= 1.0 for key in ("box_own", "text_own"))
    assert all(value is None or 0.0 <= value <= 1.0 for value in report.values())
    lines = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    assert [line.split('"phase": ')[1].split(",")[0] for line in lines] == ['"position"', '"content"', '"text"']
