"""`mqc-edge export --no-text-encoder`: no text_encoder stage, the manifest says so, box and point
prompts in both modes on onnxruntime equal torch, and a text prompt is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mqc_edge.cli import main
from mqc_edge.contract import stage_specs
from mqc_edge.data.synth import random_scene, render_video
from mqc_edge.export import model_export
from mqc_edge.export.parity import track_clip
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.manifest import geometry_from_json, load_manifest
from mqc_edge.runtime.model_source import load_model
from mqc_edge.runtime.text import MissingTextEncoder


@pytest.fixture(scope="module")
def bare_export(exported, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict]:
    """(dir, CLI exit code, manifest) of `export --no-text-encoder` of the session export's weights.

    Its graphs are copied from the session export instead of traced again (two minutes on the
    shared 2-core box): a stage's graph does not depend on the language model, and the export's own
    parity run, torch without the language model against these graphs, would catch one that did."""
    source = exported[0]
    out = tmp_path_factory.mktemp("no_text") / "model"

    def copy_graph(module, spec, example, path: Path, opset: int) -> None:
        shutil.copyfile(source / f"{spec.name}.onnx", path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_export, "export_stage", copy_graph)
        code = main(["export", "--checkpoint", str(source / "weights.safetensors"), "--out", str(out),
                     "--no-text-encoder"])
    return out, code, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def clip() -> tuple[list[np.ndarray], list[int]]:
    """Eight synthetic frames and the first referent's frame-0 box."""
    video = render_video(random_scene(np.random.default_rng(11), (144, 112), 8), 8, seed=11)
    ys, xs = np.nonzero(video.id_masks[0] == video.expressions[0].obj_id)
    return video.frames, [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def test_no_text_encoder_stage_file_or_tokenizer_and_the_manifest_says_so(bare_export, exported) -> None:
    out, code, manifest = bare_export
    assert code == 0
    assert manifest["model"]["geometry"]["mqc"]["text_encoder"] is False
    assert not (out / "text_encoder.onnx").exists() and not (out / "tokenizer.json").exists()
    assert set(manifest["stages"]) == set(stage_specs(geometry_from_json(manifest["model"]["geometry"])))
    assert set(manifest["stages"]) == set(exported[2]["stages"]) - {"text_encoder"}
    assert manifest["aux_files"] == {"weights": "weights.safetensors"}
    assert not load_manifest(out).geometry.mqc.text_encoder  # re-hashes every file, re-derives every signature
    parity = manifest["parity"]
    assert parity["passed"] and set(parity["end_to_end"]) == {"sam2", "mqc"}
    assert all(set(report["prompt"]) == {"box"} for report in parity["end_to_end"].values())


@pytest.mark.parametrize("mode", ["sam2", "mqc"])
@pytest.mark.parametrize("prompt", ["box", "points"])
def test_box_and_points_on_onnxruntime_equal_torch(bare_export, clip, mode: str, prompt: str) -> None:
    frames, box = clip
    given = {"box": box} if prompt == "box" else {"points": [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]],
                                                  "labels": [1]}
    runs = []
    for backend in ("torch", "onnxruntime"):
        source = load_model(bare_export[0], backend, threads=1)
        assert "text_encoder" not in source.backend.specs and isinstance(source.tokenizer, MissingTextEncoder)
        runs.append(track_clip(source.backend, frames, TrackerConfig(mode=mode), source.tokenizer, **given))
    reference, candidate = runs
    assert len(reference) == len(candidate) == len(frames)
    for ref, got in zip(reference, candidate):
        assert np.abs(got.logits - ref.logits).max() <= 1e-3 * np.abs(ref.logits).max()


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_a_text_prompt_is_refused_in_one_line_naming_the_export_and_the_fix(bare_export, clip, tmp_path, capsys,
                                                                            backend: str) -> None:
    for index, frame in enumerate(clip[0][:2]):
        Image.fromarray(frame).save(tmp_path / f"{index:05d}.png")
    code = main(["run", str(bare_export[0]), "--backend", backend, "--video", str(tmp_path), "--out",
                 str(tmp_path / "out"), "--mode", "mqc", "--text", "the white plane", "--threads", "1"])
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the progress bar
    assert code == 2 and len(lines) == 1, lines
    assert f"'the white plane': {bare_export[0]} was made without the text encoder" in lines[0]
    assert "re-export it without --no-text-encoder, or with --texts" in lines[0]


@pytest.mark.parametrize(("extra", "message"), [
    (["--texts", "expressions.txt"], "--texts expressions.txt with --no-text-encoder: precomputing texts needs"),
    (["--model-config", "sam2.1_hiera_t"], "--no-text-encoder: expected an MQC-SAM .safetensors checkpoint"),
])
def test_arguments_that_need_the_text_encoder_are_refused_in_one_line(tmp_path, capsys, extra, message) -> None:
    code = main(["export", "--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "out"),
                 "--no-text-encoder", *extra])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and message in error, error
