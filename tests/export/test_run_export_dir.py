"""`mqc-edge run DIR --backend onnxruntime` against `--backend torch` on the same export dir,
compared on the saved logits (issue 12: per frame max |diff| <= 1e-3 of max |logit|; mask IoU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mqc_edge.cli import main
from mqc_edge.data.synth import random_scene, render_video

FRAMES = 24  # issue 12: clips of at least 24 frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory):
    video = render_video(random_scene(np.random.default_rng(5), (144, 112), FRAMES), FRAMES, seed=5)
    folder = tmp_path_factory.mktemp("clip")
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.png")
    ys, xs = np.nonzero(video.id_masks[0] == video.expressions[0].obj_id)
    return folder, [xs.min(), ys.min(), xs.max(), ys.max()], video.expressions[0].text


def _run(export_dir: Path, clip_dir: Path, out: Path, backend: str, prompt: list[str]) -> dict[str, np.ndarray]:
    code = main(["run", str(export_dir), "--backend", backend, "--video", str(clip_dir),
                 "--out", str(out), "--save-logits", "--threads", "1", *prompt])
    assert code == 0
    return {path.stem: np.load(path) for path in sorted((out / "logits").glob("*.npy"))}


@pytest.mark.parametrize("mode", ["sam2", "mqc"])
def test_onnxruntime_run_matches_torch_run_on_the_same_export(exported, clip, tmp_path: Path, mode: str) -> None:
    folder, box, text = clip
    prompt = ["--mode", mode, *(["--box", *map(str, box)] if mode == "sam2" else ["--text", text])]
    reference = _run(exported[0], folder, tmp_path / "torch", "torch", prompt)
    candidate = _run(exported[0], folder, tmp_path / "ort", "onnxruntime", prompt)
    assert sorted(reference) == sorted(candidate) and len(reference) == FRAMES
    ious = []
    for name, logits in reference.items():
        assert np.abs(candidate[name] - logits).max() <= 1e-3 * np.abs(logits).max(), name
        union = np.count_nonzero((logits > 0) | (candidate[name] > 0))
        ious.append(1.0 if union == 0 else np.count_nonzero((logits > 0) & (candidate[name] > 0)) / union)
    assert np.mean(ious) >= 0.999 and min(ious) >= 0.99


def test_onnxruntime_needs_an_export_directory(tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    code = main(["run", "--checkpoint", str(checkpoint), "--backend", "onnxruntime", "--video", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--box", "1", "2", "3", "4"])
    assert code == 2
    assert "runs an export directory; " + str(checkpoint) + " is not one" in capsys.readouterr().err
