"""How the Tracker calls each stage: host arrays in, handles out, every call timed.

Shared by SAM 2 mode (runtime/sam2/mode.py) and MQC mode (runtime/mqc/mode.py), so that both
modes prompt, decode, encode memory and build results the same way, with the header their
per-object states share (`StateHeader`). Pre- and post-processing are the backend's
(`StageBackend.preprocess` / `postprocess`: numpy on the host by default, on the device for the
torch backend on CUDA); hole filling and the boundary uncertainty always run here, on the host
(OpenCV components and morphology on the low-res arrays the gates read anyway). Torch-free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mqc_edge.contract import TRACKING_PROMPT_TOKENS, stage_specs
from mqc_edge.errors import ConfigError, PromptError
from mqc_edge.runtime.backends.stage_backend import Handle, StageBackend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.postprocess import fill_holes
from mqc_edge.runtime.prompts import PointPrompt, mask_prompt_input, point_prompt
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.text import TextSource
from mqc_edge.runtime.text_cache import cached_embedding
from mqc_edge.runtime.uncertainty import boundary_uncertainty

MASK_PROMPT_SCORE = 10.0
"""Object score logit of a frame prompted with a non-empty mask (sam2_base.py `_use_mask_as_output`)."""

Timings = dict[str, float]


@dataclass(frozen=True)
class EncodedFrame:
    """A frame with its image_encoder outputs: computed once, then read by every object tracked
    on it (runtime/multi_tracker.py), since the image encoder does not depend on the object."""

    rgb: np.ndarray  # uint8 [H, W, 3]; TMCC's flow reads the pixels
    features: dict[str, Handle]  # image_encoder outputs (fpn0, fpn1, feat)
    timings: Timings  # each object's share of the preprocess and image_encoder ms; its result starts from a copy


@dataclass
class StateHeader:
    """What one object's state holds in either mode (`SAM2State`, `MQCState`)."""

    frame_index: int  # index of the last frame segmented
    frame_size: tuple[int, int]  # (H, W) of the video
    tracking_prompt: dict[str, Handle]  # sparse/dense prompts of a tracking frame (constant)

    @property
    def next_index(self) -> int:
        return self.frame_index + 1


class StageCalls:
    """One backend, one config: the stage calls of a frame, with their timings in ms."""

    def __init__(self, backend: StageBackend, config: TrackerConfig) -> None:
        self.backend = backend
        self.config = config
        self.geometry = backend.geometry
        self.has_uncertainty = self.geometry.mqc is not None and self.geometry.mqc.uncertainty
        if config.needs_uncertainty and not self.has_uncertainty:
            raise ConfigError("uncertainty gate / memory weighting: this model has no uncertainty_head stage "
                              "(export a checkpoint trained with the head, training/uncertainty.py)")

    def run(self, stage: str, timings: Timings, **inputs: Handle) -> dict[str, Handle]:
        begin = time.perf_counter()
        outputs = self.backend.run(stage, inputs)
        timings[stage] = timings.get(stage, 0.0) + 1e3 * (time.perf_counter() - begin)
        return outputs

    def host(self, array: np.ndarray) -> Handle:
        return self.backend.from_host(array)

    def read(self, handle: Handle) -> np.ndarray:
        return self.backend.to_host(handle)

    def scalar(self, handle: Handle) -> float:
        return float(self.read(handle).reshape(-1)[0])

    def flag(self, value: bool) -> Handle:
        return self.host(np.array([value]))

    def encode_frame(self, frame: np.ndarray, objects: int) -> EncodedFrame:
        """Preprocess and image_encoder, once for the `objects` tracked on the frame: each gets
        1/objects of their time, so the objects' timings add up to the frame's."""
        timings: Timings = {}
        begin = time.perf_counter()
        image = self.backend.preprocess(frame, self.geometry.image_size)
        timings["preprocess"] = 1e3 * (time.perf_counter() - begin)
        features = self.run("image_encoder", timings, image=image)
        return EncodedFrame(frame, features, {stage: ms / objects for stage, ms in timings.items()})

    def prompt(self, prompt: PointPrompt, mask: np.ndarray | None, timings: Timings) -> dict[str, Handle]:
        spec = stage_specs(self.geometry)["prompt_encoder"].input("mask_prompt")
        mask_input = np.zeros(spec.shape, np.float32) if mask is None else mask
        return self.run(
            "prompt_encoder", timings, point_coords=self.host(prompt.coords), point_labels=self.host(prompt.labels),
            mask_prompt=self.host(mask_input), use_mask=self.flag(mask is not None),
        )

    def decode(self, conditioned: Handle, features: dict[str, Handle], prompt: dict[str, Handle], multimask: bool,
               timings: Timings) -> dict[str, Handle]:
        return self.run(
            "mask_decoder", timings, feat_conditioned=conditioned, fpn0=features["fpn0"], fpn1=features["fpn1"],
            sparse_prompt=prompt["sparse_prompt"], dense_prompt=prompt["dense_prompt"], multimask=self.flag(multimask),
        )

    def encode_memory(self, features: dict[str, Handle], mask_lowres: Handle, object_score: Handle, binarize: bool,
                      timings: Timings) -> Handle:
        return self.run(
            "memory_encoder", timings, feat=features["feat"], mask_lowres=mask_lowres,
            object_score=object_score, binarize=self.flag(binarize),
        )["memory"]

    def uncertainty(self, features: dict[str, Handle], mask_lowres: Handle, timings: Timings) -> np.ndarray | None:
        """CroBIM-U uncertainty float32 [S/4, S/4] in [0, 1] of one object's chosen low-res mask
        (stage `uncertainty_head`), on the host; None when the model has no head."""
        if not self.has_uncertainty:
            return None
        out = self.run("uncertainty_head", timings, fpn0=features["fpn0"], mask_lowres=mask_lowres)
        return self.read(out["uncertainty"])[0, 0]

    def tracking_prompt(self, timings: Timings) -> dict[str, Handle]:
        """SAM 2 prompts a tracking frame with 'no point' tokens only (point_inputs=None)."""
        prompt = self.prompt(PointPrompt.empty(TRACKING_PROMPT_TOKENS), None, timings)
        return {"sparse_prompt": prompt["sparse_prompt"], "dense_prompt": prompt["dense_prompt"]}

    def mask_as_lowres(self, mask: np.ndarray, frame_size: tuple[int, int], timings: Timings) -> Handle:
        """A bool mask at frame size -> +-10 low-res logits, as SAM 2 turns a mask prompt into output."""
        mask_input = mask_prompt_input(mask, frame_size, self.geometry)
        return self.prompt(PointPrompt.empty(TRACKING_PROMPT_TOKENS), mask_input, timings)["mask_prompt_lowres"]

    def decode_first_frame(self, features: dict[str, Handle], frame_size: tuple[int, int], prompts: Mapping[str, object],
                           text_source: TextSource, timings: Timings) -> dict[str, Handle]:
        """The prompted frame: text (MQC), a mask, or a box and/or points (SAM 2's prompt path)."""
        text, mask = prompts.get("text"), prompts.get("mask")
        given = [name for name in ("text", "box", "points", "mask") if prompts.get(name) is not None]
        if len(given) > 1 and (text is not None or mask is not None):
            raise PromptError(f"prompt: give a text, a mask, or a box and/or points; got {' and '.join(given)}")
        if text is not None:
            return self._decode_text_prompt(features, str(text), text_source, timings)
        if mask is not None:
            return self._decode_mask_prompt(features, mask_prompt_input(mask, frame_size, self.geometry), timings)
        prompt = point_prompt(
            prompts.get("box"), prompts.get("points"), prompts.get("labels"), frame_size, self.geometry
        )
        encoded = self.prompt(prompt, None, timings)
        conditioned = self.run("no_memory", timings, feat=features["feat"])["feat_conditioned"]
        return self.decode(conditioned, features, encoded, self.config.multimask(prompt.num_points), timings)

    def _decode_text_prompt(self, features: dict[str, Handle], text: str, text_source: TextSource,
                            timings: Timings) -> dict[str, Handle]:
        """CroBIM-V frame 0: text encoder -> fusion with the no-memory features -> SAM decoder,
        multimask or the single-mask token per `TrackerConfig.text_start_multimask`."""
        if self.geometry.mqc is None:
            raise ConfigError(
                "text prompt: this model has no text encoder (a plain SAM 2.1 model); give a box, points or a mask"
            )
        encoded = self._encode_text(text, text_source, timings)
        conditioned = self.run("no_memory", timings, feat=features["feat"])["feat_conditioned"]
        fused = self.run(
            "prompt_fusion", timings, feat_conditioned=conditioned, text_tokens=encoded["text_tokens"],
            text_mask=encoded["text_mask"],
        )
        return self.decode(conditioned, features, fused, self.config.text_start_multimask, timings)

    def _encode_text(self, text: str, text_source: TextSource, timings: Timings) -> dict[str, Handle]:
        """The text_encoder stage's outputs: precomputed at export when the text is known (no
        tokenizer or BERT needed on board), else tokenised here and run through the stage."""
        if text_source.cache is not None and (text in text_source.cache or text_source.tokenizer is None):
            return {name: self.host(array) for name, array in cached_embedding(text_source.cache, text).items()}
        if text_source.tokenizer is None:
            raise ConfigError("text prompt: no tokenizer and no precomputed texts in this model directory")
        tokens = text_source.tokenizer.encode(text)
        return self.run("text_encoder", timings, **{name: self.host(array) for name, array in tokens.items()})

    def _decode_mask_prompt(self, features: dict[str, Handle], mask: np.ndarray, timings: Timings) -> dict[str, Handle]:
        """The mask itself is the output (`use_mask_input_as_output_without_sam`); the decoder,
        on the frame's raw features with the mask as dense prompt, only makes the pointer."""
        encoded = self.prompt(PointPrompt.empty(TRACKING_PROMPT_TOKENS), mask, timings)
        decoded = self.decode(features["feat"], features, encoded, False, timings)
        return {
            **decoded,
            "mask_lowres": encoded["mask_prompt_lowres"],
            "object_score": self.host(np.array([[MASK_PROMPT_SCORE]], np.float32)),
            "iou": self.host(np.ones((1, 1), np.float32)),
        }

    def hole_filled(self, mask_lowres: Handle) -> tuple[Handle, np.ndarray]:
        """Host copy of the low-res logits with holes filled, and a handle to the same values."""
        lowres = self.read(mask_lowres)[0, 0]
        filled = fill_holes(lowres, self.config.fill_hole_area)
        if filled is lowres:
            return mask_lowres, lowres
        return self.host(filled[None, None]), filled

    def result(self, index: int, frame_size: tuple[int, int], lowres: np.ndarray, decoded: dict[str, Handle],
               timings: Timings, uncertainty: np.ndarray | None = None, **extra: object) -> FrameResult:
        """Upsample to the frame (as Meta's predictor, `StageBackend.postprocess`) and collect
        scores; `extra` sets flags, quality, or a `mask` that replaces logits > 0 (TMCC on frame 0).
        `uncertainty` (low-res, `StageCalls.uncertainty`) is upsampled the same way and scored on
        the mask's boundary band (on the host, from the low-res arrays)."""
        begin = time.perf_counter()
        outputs = self.backend.postprocess(lowres, frame_size, uncertainty)
        if uncertainty is not None:
            extra["uncertainty"] = outputs.uncertainty
            extra["boundary_uncertainty"] = boundary_uncertainty(uncertainty, lowres, self.config.uncertainty_band_px)
        timings["postprocess"] = 1e3 * (time.perf_counter() - begin)
        mask = extra.pop("mask") if "mask" in extra else outputs.mask
        return FrameResult(
            frame_index=index,
            logits=outputs.logits,
            mask=mask,
            logits_lowres=lowres,
            object_score=self.scalar(decoded["object_score"]),
            iou=self.scalar(decoded["iou"]),
            timings_ms=timings,
            **extra,
        )
