"""The streaming tracker: one object, one prompt on the first frame, one result per frame.

Written once, torch-free, for every backend (DESIGN sections 3 and 5). In "sam2" mode it is
SAM 2's video inference (sam2_video_predictor.py `add_new_points_or_box` / `add_new_mask`,
`propagate_in_video`) with memory in fixed slots (runtime/memory.py). The Tracker reads only
small arrays from the backend: low-resolution logits, scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mqc_edge.contract import TRACKING_PROMPT_TOKENS, stage_specs
from mqc_edge.errors import BadFrameError, ConfigError, PromptError
from mqc_edge.runtime.backend import Handle, StageBackend
from mqc_edge.runtime.memory import (
    MemoryBank,
    attention_inputs,
    new_memory_bank,
    register_conditioning_frame,
    register_frame,
)
from mqc_edge.runtime.postprocess import fill_holes, upsample_logits
from mqc_edge.runtime.preprocess import check_frame, preprocess_frame
from mqc_edge.runtime.prompts import PointPrompt, mask_prompt_input, point_prompt

MASK_PROMPT_SCORE = 10.0
"""Object score logit of a frame prompted with a non-empty mask (sam2_base.py `_use_mask_as_output`)."""


@dataclass(frozen=True)
class TrackerConfig:
    """How the Tracker drives the stages; defaults reproduce Meta's SAM2VideoPredictor."""

    mode: str = "sam2"  # "sam2": SAM 2 memory selection; "mqc" (TMCC + DAMI) joins later
    fill_hole_area: int = 8  # build_sam.py video predictor override; 0 = Meta without its sam2._C extension
    multimask_for_tracking: bool = True  # sam2.1_hiera_*.yaml multimask_output_for_tracking
    multimask_min_points: int = 0  # sam2.1_hiera_*.yaml multimask_min_pt_num (a box counts 2 points)
    multimask_max_points: int = 1  # sam2.1_hiera_*.yaml multimask_max_pt_num
    binarize_prompted_memory: bool = True  # build_sam.py override binarize_mask_from_pts_for_mem_enc

    def __post_init__(self) -> None:
        if self.mode != "sam2":
            raise ConfigError(f"tracker mode: expected 'sam2', got {self.mode!r}")
        if self.fill_hole_area < 0:
            raise ConfigError(f"fill_hole_area: expected >= 0, got {self.fill_hole_area}")

    def multimask(self, num_points: int) -> bool:
        """SAM 2's `_use_multimask` (multimask_output_in_sam is on in every SAM 2.1 config)."""
        return self.multimask_min_points <= num_points <= self.multimask_max_points


@dataclass
class FrameResult:
    """One frame's output at frame resolution, plus what the Tracker read to make it."""

    frame_index: int
    logits: np.ndarray  # float32 [H, W] mask logits at frame size
    mask: np.ndarray  # bool [H, W], logits > 0
    logits_lowres: np.ndarray  # float32 [S/4, S/4] after hole filling
    object_score: float  # object presence logit (> 0: present)
    iou: float  # the decoder's predicted IoU of the chosen mask
    timings_ms: dict[str, float] = field(default_factory=dict)  # per stage, plus pre/postprocess


@dataclass
class TrackerState:
    """Everything one video's tracking carries from frame to frame."""

    frame_index: int  # index of the last processed frame
    frame_size: tuple[int, int]  # (H, W) of the video
    bank: MemoryBank
    tracking_prompt: dict[str, Handle]  # sparse/dense prompts of a tracking frame (constant)


class Tracker:
    """Owns one video's `TrackerState`; `start` on the prompted frame, then `step` per frame."""

    def __init__(self, backend: StageBackend, config: TrackerConfig | None = None) -> None:
        self.backend = backend
        self.config = config or TrackerConfig()
        self.geometry = backend.geometry
        self.state: TrackerState | None = None

    def start(
        self,
        frame0: np.ndarray,
        box: object = None,
        points: object = None,
        labels: object = None,
        mask: object = None,
    ) -> FrameResult:
        """Segment the prompted frame (index 0) and make it the conditioning memory."""
        check_frame(frame0, "0")
        height, width = frame0.shape[:2]
        timings: dict[str, float] = {}
        features = self._encode(frame0, timings)
        if mask is not None:
            if box is not None or points is not None:
                raise PromptError("prompt: give a mask, or a box and/or points, not both")
            mask_input = mask_prompt_input(mask, (height, width), self.geometry)
            decoded = self._decode_mask_prompt(features, mask_input, timings)
        else:
            prompt = point_prompt(box, points, labels, (height, width), self.geometry)
            decoded = self._decode_point_prompt(features, prompt, timings)
        mask_handle, lowres = self._hole_filled(decoded["mask_lowres"])
        memory = self._encode_memory(features, mask_handle, decoded, self.config.binarize_prompted_memory, timings)
        bank = new_memory_bank(self.backend)
        register_conditioning_frame(bank, self.backend, 0, memory, decoded["obj_ptr"])
        self.state = TrackerState(0, (height, width), bank, self._tracking_prompt(timings))
        return self._result(0, lowres, decoded, timings)

    def step(self, frame: np.ndarray) -> FrameResult:
        """Segment the next frame from memory, then register it in memory."""
        state = self._started()
        index = state.frame_index + 1
        check_frame(frame, str(index))
        if frame.shape[:2] != state.frame_size:
            raise BadFrameError(f"frame {index}: expected size {state.frame_size}, got {frame.shape[:2]}")
        timings: dict[str, float] = {}
        features = self._encode(frame, timings)
        slots = attention_inputs(state.bank, index, self.geometry)
        conditioned = self._run(
            "memory_attention", timings, feat=features["feat"], memory=state.bank.memory, obj_ptrs=state.bank.obj_ptrs,
            **{name: self.backend.from_host(array) for name, array in slots.items()},
        )["feat_conditioned"]
        multimask = self.config.multimask_for_tracking and self.config.multimask(0)
        decoded = self._decode(conditioned, features, state.tracking_prompt, multimask, timings)
        memory = self._encode_memory(features, decoded["mask_lowres"], decoded, False, timings)
        register_frame(state.bank, self.backend, index, memory, decoded["obj_ptr"])
        state.frame_index = index
        _, lowres = self._hole_filled(decoded["mask_lowres"])
        return self._result(index, lowres, decoded, timings)

    def _started(self) -> TrackerState:
        if self.state is None:
            raise PromptError("tracker: call start(frame0, box/points/mask) before step(frame)")
        return self.state

    def _run(self, stage: str, timings: dict[str, float], **inputs: Handle) -> dict[str, Handle]:
        begin = time.perf_counter()
        outputs = self.backend.run(stage, inputs)
        timings[stage] = timings.get(stage, 0.0) + 1e3 * (time.perf_counter() - begin)
        return outputs

    def _encode(self, frame: np.ndarray, timings: dict[str, float]) -> dict[str, Handle]:
        begin = time.perf_counter()
        image = self.backend.from_host(preprocess_frame(frame, self.geometry.image_size))
        timings["preprocess"] = 1e3 * (time.perf_counter() - begin)
        return self._run("image_encoder", timings, image=image)

    def _flag(self, value: bool) -> Handle:
        return self.backend.from_host(np.array([value]))

    def _prompt(self, prompt: PointPrompt, mask: np.ndarray | None, timings: dict[str, float]) -> dict[str, Handle]:
        spec = stage_specs(self.geometry)["prompt_encoder"].input("mask_prompt")
        mask_input = np.zeros(spec.shape, np.float32) if mask is None else mask
        host = self.backend.from_host
        return self._run(
            "prompt_encoder", timings, point_coords=host(prompt.coords), point_labels=host(prompt.labels),
            mask_prompt=host(mask_input), use_mask=self._flag(mask is not None),
        )

    def _decode(self, conditioned: Handle, features: dict[str, Handle], prompt: dict[str, Handle], multimask: bool,
                timings: dict[str, float]) -> dict[str, Handle]:
        return self._run(
            "mask_decoder", timings, feat_conditioned=conditioned, fpn0=features["fpn0"], fpn1=features["fpn1"],
            sparse_prompt=prompt["sparse_prompt"], dense_prompt=prompt["dense_prompt"], multimask=self._flag(multimask),
        )

    def _encode_memory(self, features: dict[str, Handle], mask_lowres: Handle, decoded: dict[str, Handle],
                       binarize: bool, timings: dict[str, float]) -> Handle:
        return self._run(
            "memory_encoder", timings, feat=features["feat"], mask_lowres=mask_lowres,
            object_score=decoded["object_score"], binarize=self._flag(binarize),
        )["memory"]

    def _tracking_prompt(self, timings: dict[str, float]) -> dict[str, Handle]:
        """SAM 2 prompts a tracking frame with 'no point' tokens only (point_inputs=None)."""
        prompt = self._prompt(PointPrompt.empty(TRACKING_PROMPT_TOKENS), None, timings)
        return {"sparse_prompt": prompt["sparse_prompt"], "dense_prompt": prompt["dense_prompt"]}

    def _decode_point_prompt(self, features: dict[str, Handle], prompt: PointPrompt,
                             timings: dict[str, float]) -> dict[str, Handle]:
        encoded = self._prompt(prompt, None, timings)
        conditioned = self._run("no_memory", timings, feat=features["feat"])["feat_conditioned"]
        return self._decode(conditioned, features, encoded, self.config.multimask(prompt.num_points), timings)

    def _decode_mask_prompt(self, features: dict[str, Handle], mask: np.ndarray,
                            timings: dict[str, float]) -> dict[str, Handle]:
        """The mask itself is the output (`use_mask_input_as_output_without_sam`); the decoder,
        on the frame's raw features with the mask as dense prompt, only makes the pointer."""
        encoded = self._prompt(PointPrompt.empty(TRACKING_PROMPT_TOKENS), mask, timings)
        decoded = self._decode(features["feat"], features, encoded, False, timings)
        return {
            "mask_lowres": encoded["mask_prompt_lowres"],
            "object_score": self.backend.from_host(np.array([[MASK_PROMPT_SCORE]], np.float32)),
            "iou": self.backend.from_host(np.ones((1, 1), np.float32)),
            "obj_ptr": decoded["obj_ptr"],
        }

    def _hole_filled(self, mask_lowres: Handle) -> tuple[Handle, np.ndarray]:
        """Host copy of the low-res logits with holes filled, and a handle to the same values."""
        lowres = self.backend.to_host(mask_lowres)[0, 0]
        filled = fill_holes(lowres, self.config.fill_hole_area)
        if filled is lowres:
            return mask_lowres, lowres
        return self.backend.from_host(filled[None, None]), filled

    def _result(self, index: int, lowres: np.ndarray, decoded: dict[str, Handle],
                timings: dict[str, float]) -> FrameResult:
        begin = time.perf_counter()
        height, width = self._started().frame_size
        logits = upsample_logits(lowres, height, width)
        timings["postprocess"] = 1e3 * (time.perf_counter() - begin)
        return FrameResult(
            frame_index=index,
            logits=logits,
            mask=logits > 0,
            logits_lowres=lowres,
            object_score=float(self.backend.to_host(decoded["object_score"]).reshape(-1)[0]),
            iou=float(self.backend.to_host(decoded["iou"]).reshape(-1)[0]),
            timings_ms=timings,
        )
