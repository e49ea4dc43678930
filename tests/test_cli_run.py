"""`mqc-edge run` round trips in both modes, and bad input as one line + exit 2 with the frames
before the failure left on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mqc_edge.cli import main

HEIGHT, WIDTH = 96, 128
IMAGE_SIZE = 128


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random MQC-SAM checkpoint (mqc-edge format) and a random SAM 2.1 tiny one (Meta's format)."""
    import torch

    from mqc_edge.model.checkpoint import save_checkpoint
    from mqc_edge.model.mqc_sam import MQCSAM, MQCSAMConfig
    from mqc_edge.model.sam2_build import build_sam21, save_weights

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    save_checkpoint(MQCSAM(MQCSAMConfig(image_size=IMAGE_SIZE, max_text_tokens=16)), folder / "mqc.safetensors")
    save_weights(build_sam21("tiny", IMAGE_SIZE, seed=9), folder / "sam21.pt")
    return {"mqc": folder / "mqc.safetensors", "sam2": folder / "sam21.pt"}


def _write_frames(folder: Path, count: int) -> list[str]:
    """A bright block moving right over textured ground, as PNGs named f000, f001, ..."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    ground = rng.integers(40, 90, size=(HEIGHT, WIDTH + 3 * count, 3), dtype=np.uint8)
    names = []
    for t in range(count):
        frame = ground[:, t : t + WIDTH].copy()
        frame[36:60, 30 + 3 * t : 62 + 3 * t] = 220
        names.append(f"f{t:03d}")
        Image.fromarray(frame).save(folder / f"{names[-1]}.png")
    return names


def _run(checkpoint: Path, frames: Path, out: Path, *extra: str) -> int:
    return main(["run", "--checkpoint", str(checkpoint), "--video", str(frames), "--out", str(out),
                 "--threads", "1", *extra])


def _check_outputs(out: Path, names: list[str]) -> list[dict]:
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == names
    assert sorted(path.stem for path in (out / "masks").glob("*.png")) == names
    for line in lines:
        assert {"score", "object_score", "object_present", "flags", "timings_ms"} <= set(line)
        logits = np.load(out / "logits" / f"{line['frame']}.npy")
        mask = np.asarray(Image.open(out / "masks" / f"{line['frame']}.png"))
        assert logits.dtype == np.float32 and logits.shape == mask.shape == (HEIGHT, WIDTH)
        assert set(np.unique(mask)) <= {0, 255}
        if line["frame_index"] > 0:  # frame 0 may carry TMCC's calibrated mask instead
            np.testing.assert_array_equal(mask == 255, logits > 0)
    return lines


def test_mqc_mode_from_text_writes_masks_results_and_logits(checkpoints, tmp_path, capsys) -> None:
    names = _write_frames(tmp_path / "frames", 5)
    code = _run(checkpoints["mqc"], tmp_path / "frames", tmp_path / "out", "--text", "the bright block",
                "--save-logits")
    assert code == 0, capsys.readouterr().err
    lines = _check_outputs(tmp_path / "out", names)
    assert "anchor" in lines[0]["flags"] and "tmcc_window" in lines[0]["quality"]
    assert "text_encoder" in lines[0]["timings_ms"] and "dami_attention" in lines[1]["timings_ms"]
    err = capsys.readouterr().err
    assert "frame/s" in err and "wrote 5 frames" in err


@pytest.mark.parametrize("prompt", [["--box", "30", "36", "62", "60"], ["--points", "46,48,1", "5,5,0"]])
def test_sam2_mode_from_a_meta_checkpoint(checkpoints, tmp_path, capsys, prompt: list[str]) -> None:
    names = _write_frames(tmp_path / "frames", 4)
    code = _run(checkpoints["sam2"], tmp_path / "frames", tmp_path / "out", "--mode", "sam2",
                "--image-size", str(IMAGE_SIZE), "--model-config", "sam2.1_hiera_t", "--save-logits", *prompt)
    assert code == 0, capsys.readouterr().err
    lines = _check_outputs(tmp_path / "out", names)
    assert "memory_attention" in lines[1]["timings_ms"] and "dami_attention" not in lines[1]["timings_ms"]


def _one_line_error(capsys: pytest.CaptureFixture, code: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("mqc-edge: error: "), err
    assert "Traceback" not in "\n".join(err)
    for needle in needles:
        assert needle in err[-1], err[-1]


def test_a_plain_sam_checkpoint_refuses_mqc_mode(checkpoints, tmp_path, capsys) -> None:
    _write_frames(tmp_path / "frames", 2)
    code = _run(checkpoints["sam2"], tmp_path / "frames", tmp_path / "out", "--image-size", str(IMAGE_SIZE),
                "--box", "30", "36", "62", "60")
    _one_line_error(capsys, code, "mode 'sam2' only")


@pytest.mark.parametrize("text, needle", [("  ", "the text is empty"), ("the small white car " * 5, "at most 16")])
def test_bad_text_is_one_line(checkpoints, tmp_path, capsys, text: str, needle: str) -> None:
    _write_frames(tmp_path / "frames", 2)
    _one_line_error(capsys, _run(checkpoints["mqc"], tmp_path / "frames", tmp_path / "out", "--text", text), needle)


@pytest.mark.parametrize("damage", ["unreadable", "resized"])
def test_a_bad_frame_stops_the_run_after_writing_the_frames_before_it(checkpoints, tmp_path, capsys, damage) -> None:
    names = _write_frames(tmp_path / "frames", 5)
    bad = tmp_path / "frames" / f"{names[3]}.png"
    if damage == "unreadable":
        bad.write_bytes(b"\x89PNG not really")
    else:
        Image.new("RGB", (WIDTH + 8, HEIGHT)).save(bad)
    code = _run(checkpoints["mqc"], tmp_path / "frames", tmp_path / "out", "--text", "the bright block")
    _one_line_error(capsys, code, names[3])
    assert sorted(path.stem for path in (tmp_path / "out" / "masks").glob("*.png")) == names[:3]
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == names[:3]
