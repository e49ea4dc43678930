"""`mqc-edge export`: every contract stage to ONNX, the source weights, and a manifest whose
parity report proves, stage by stage and end to end, that the graphs compute the model.

Order matters: graphs and weights are written and hashed first, so that both backends of
the parity run load from the export directory exactly as a user's run will.

`text_encoder=False` (`--no-text-encoder`) builds the model without its frozen language model: no
text_encoder.onnx and no tokenizer.json, the manifest's geometry says `text_encoder: false`, and
MQC mode's parity starts from the box SAM 2 mode uses. It needs neither transformers nor the
MiniLM package, so a machine without them (the GPU check's) can export and bench.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import onnxscript
import onnxslim
import torch

import mqc_edge
from mqc_edge.contract import MEMORY_STORAGE_DEFAULT
from mqc_edge.data.synth import random_scene, render_video
from mqc_edge.errors import ConfigError
from mqc_edge.export.inputs import RecordingBackend, random_inputs
from mqc_edge.export.onnx_export import EXPORTER, export_stage
from mqc_edge.export.parity import ParityThresholds, stage_parity, track_clip, tracker_parity
from mqc_edge.export.reference import WEIGHTS_NAME, load_reference, save_weights
from mqc_edge.export.wrappers import exportable_stages
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.sam2_build import SAM21_CONFIG_NAMES
from mqc_edge.model.torch_backend import TorchBackend, load
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.manifest import geometry_to_json, sha256_of, signature, write_manifest
from mqc_edge.runtime.backends.ort_backend import OrtBackend
from mqc_edge.runtime.text import TextTokenizer
from mqc_edge.runtime.text_cache import read_expressions, write_text_embeddings

TOKENIZER_NAME = "tokenizer.json"
TEXTS_NAME = "texts.npz"


@dataclasses.dataclass(frozen=True)
class ParityClip:
    """The synthetic clip both backends track for the end-to-end parity report."""

    frames: int = 24  # issue 12: at least 24 frames
    size: tuple[int, int] = (160, 120)  # (width, height); not the model size, so pre/postprocess resize
    seed: int = 0  # random_scene / render_video seed


def export_model(
    checkpoint: Path,
    out: Path,
    model_config: str | None = None,
    image_size: int | None = None,
    opset: int = 18,
    texts: Path | None = None,
    clip: ParityClip = ParityClip(),
    thresholds: ParityThresholds = ParityThresholds(),
    text_encoder: bool = True,
    memory_storage: str = MEMORY_STORAGE_DEFAULT,
) -> dict[str, Any]:
    """Export `checkpoint` into `out`; returns the manifest (its "parity" entry says whether it passed).
    `text_encoder=False`: without the language model (module docstring). `memory_storage`: the
    memory encoder's rounding (`contract.MEMORY_STORAGE`), recorded in the manifest so that the
    torch reference of the export rounds alike. ConfigError for arguments that do not fit the
    checkpoint, CheckpointError for a checkpoint that cannot be read."""
    if opset < 18:
        raise ConfigError(f"opset: expected >= 18 (Resize antialias, LayerNormalization), got {opset}")
    if texts is not None and not text_encoder:
        raise ConfigError(f"--texts {texts} with --no-text-encoder: precomputing texts needs the text encoder; "
                          "drop one of the two")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend = _source_backend(Path(checkpoint), model_config, image_size, text_encoder, memory_storage)
    expressions = read_expressions(texts) if texts is not None else None
    if expressions is not None and backend.geometry.mqc is None:
        raise ConfigError(f"--texts {texts}: the model has no text encoder (a SAM 2.1 checkpoint); nothing to embed")
    if backend.geometry.mqc is None and model_config not in SAM21_CONFIG_NAMES:
        raise ConfigError(
            f"--model-config: a SAM 2.1 checkpoint needs one of {sorted(SAM21_CONFIG_NAMES)}, got {model_config!r}"
        )
    stage_files = _export_graphs(backend, out, opset)
    aux = {"weights": save_weights(backend.model, out / WEIGHTS_NAME)}
    if backend.tokenizer_file is not None:
        aux["tokenizer"] = shutil.copyfile(backend.tokenizer_file, out / TOKENIZER_NAME).name
    content = _manifest(backend, model_config, out, opset, stage_files, aux, thresholds)
    write_manifest(out, content)
    candidate = OrtBackend(out, threads=1)
    if expressions is not None:
        aux["texts"] = write_text_embeddings(candidate, _tokenizer(candidate), expressions, out / TEXTS_NAME)
        content = _manifest(backend, model_config, out, opset, stage_files, aux, thresholds)
        write_manifest(out, content)
        candidate = OrtBackend(out, threads=1)
    content["parity"] = check_parity(load_reference(out), candidate, clip, thresholds)
    write_manifest(out, content)
    return content


def _source_backend(checkpoint: Path, model_config: str | None, image_size: int | None,
                    text_encoder: bool, memory_storage: str = MEMORY_STORAGE_DEFAULT) -> TorchBackend:
    """The torch model to export, loaded as `mqc-edge run` loads it; without `text_encoder`, an
    MQC-SAM checkpoint built without its language model. ConfigError for --model-config or
    --image-size then (our checkpoints carry both), CheckpointError for a file not in our format."""
    if not text_encoder and (model_config is not None or image_size is not None or checkpoint.suffix != ".safetensors"):
        raise ConfigError(f"--no-text-encoder: expected an MQC-SAM .safetensors checkpoint (its config and size "
                          f"inside, no --model-config or --image-size), got {checkpoint}; a SAM 2.1 one has no "
                          "text encoder to leave out")
    return load(checkpoint=checkpoint, model_config=model_config, image_size=image_size,
                text_model=None if text_encoder else False, memory_storage=memory_storage)


def _export_graphs(backend: TorchBackend, out: Path, opset: int) -> dict[str, str]:
    """One ONNX file per stage of the contract (never a hand-written list of stages)."""
    files = {}
    with exportable_stages(backend) as modules:
        for index, (name, spec) in enumerate(backend.specs.items()):
            example = {key: torch.from_numpy(value) for key, value in random_inputs(spec, seed=index).items()}
            export_stage(modules[name], spec, example, out / f"{name}.onnx", opset)
            files[name] = f"{name}.onnx"
    return files


def _manifest(backend: TorchBackend, model_config: str | None, out: Path, opset: int, stage_files: dict[str, str],
              aux: dict[str, str], thresholds: ParityThresholds) -> dict[str, Any]:
    model = backend.model
    files = sorted([*stage_files.values(), *aux.values()])
    return {
        "mqc_edge_version": mqc_edge.__version__,
        "model": {
            "kind": "mqc-sam" if isinstance(model, MQCSAM) else "sam2.1",
            "sam2_variant": (model.config.sam2_variant if isinstance(model, MQCSAM)
                             else SAM21_CONFIG_NAMES[model_config]),
            "description": backend.description,
            "geometry": geometry_to_json(backend.geometry),
            "config": dataclasses.asdict(model.config) if isinstance(model, MQCSAM) else None,
            "memory_storage": backend.memory_storage,
        },
        "runtime": dataclasses.asdict(TrackerConfig()),
        "opset": opset,
        "stages": {name: {"file": file, "exporter": EXPORTER, **signature(backend.specs[name])}
                   for name, file in stage_files.items()},
        "aux_files": aux,
        "files": {name: sha256_of(out / name) for name in files},
        "versions": {
            "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnxscript": onnxscript.__version__, "onnxslim": onnxslim.__version__, "exporter": EXPORTER,
        },
        "parity_thresholds": dataclasses.asdict(thresholds),
    }


def check_parity(reference: TorchBackend, candidate: OrtBackend, clip: ParityClip,
                 thresholds: ParityThresholds) -> dict[str, Any]:
    """Stage parity on random and recorded inputs, and Tracker parity per mode on one clip."""
    video = render_video(random_scene(np.random.default_rng(clip.seed), clip.size, clip.frames), clip.frames, clip.seed)
    recorder = RecordingBackend(reference)
    tokenizer = _tokenizer(candidate)
    prompts = {"sam2": {"box": _box(video.id_masks[0], video.expressions[0].obj_id)}}
    if candidate.geometry.mqc is not None:
        prompts["mqc"] = {"text": video.expressions[0].text} if tokenizer is not None else prompts["sam2"]
    end_to_end = {}
    for mode, prompt in prompts.items():
        config = TrackerConfig(mode=mode)
        torch_run = track_clip(recorder, video.frames, config, tokenizer, **prompt)
        ort_run = track_clip(candidate, video.frames, config, tokenizer, **prompt)
        end_to_end[mode] = {"prompt": {k: np.asarray(v).tolist() for k, v in prompt.items()},
                            **tracker_parity(torch_run, ort_run, thresholds)}
    stages = {}
    for index, (name, spec) in enumerate(reference.specs.items()):
        calls = recorder.calls.get(name, [])
        inputs = {"random": random_inputs(spec, seed=1000 + index)}
        inputs.update({f"real_{which}": calls[at] for which, at in (("first", 0), ("last", -1)) if calls})
        stages[name] = {kind: stage_parity(reference, candidate, name, arrays, thresholds)
                        for kind, arrays in inputs.items()}
    passed = all(r["passed"] for r in end_to_end.values()) and all(
        r["passed"] for per_stage in stages.values() for r in per_stage.values())
    return {"passed": passed, "clip": dataclasses.asdict(clip), "end_to_end": end_to_end, "stages": stages}


def _tokenizer(backend: OrtBackend) -> TextTokenizer | None:
    """The export's host tokenizer; None for a model without a text encoder (SAM 2.1, --no-text-encoder)."""
    mqc = backend.geometry.mqc
    if mqc is None or backend.tokenizer_file is None:
        return None
    return TextTokenizer(backend.tokenizer_file, mqc.text_tokens)


def _box(ids: np.ndarray, obj_id: int) -> list[int]:
    """[x0, y0, x1, y1] of object `obj_id` on frame 0."""
    ys, xs = np.nonzero(ids == obj_id)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
