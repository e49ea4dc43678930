"""MQC mode of the Tracker: TMCC on the start-up window, the semantic anchor, and per-frame DAMI
with its quality-gated memory writes (CroBIM-V, arXiv 2601.12076; DESIGN section 5).

Start-up: frame 0 is decoded (R0) but not emitted; the next frames are buffered until TMCC's
window limit n_max, then R0 is calibrated with their motion, the anchor is encoded from frame 0
and the calibrated mask, and frame 0 and the buffered frames are emitted at once: latency is
bounded by n_max frames and no frame beyond the window is ever read. Each later frame: DAMI
memory attention -> decoder -> quality head -> gates (innovation -> FIFO; ambiguity and
robustness -> prototypes) -> one memory encoding shared by the banks it enters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mqc_edge.runtime.backends.stage_backend import Handle
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.mqc.dami_memory import DAMIBank, new_dami_bank
from mqc_edge.runtime.mqc.gates import (
    InnovationGateState,
    assess_ambiguity,
    foreground_probability,
    new_innovation_state,
    robustness_score,
    should_register_prototype,
    update_innovation_gate,
)
from mqc_edge.runtime.postprocess import upsample_logits
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.stage_calls import EncodedFrame, StageCalls, StateHeader, Timings
from mqc_edge.runtime.uncertainty import boundary_uncertainty, uncertainty_weighted_logits
from mqc_edge.runtime.mqc.tmcc import TMCCResult, calibrate


@dataclass
class PendingStart:
    """Frame 0 decoded and waiting for TMCC's window; everything here is dropped once emitted."""

    frame0: np.ndarray  # uint8 [H, W, 3]
    features: dict[str, Handle]  # frame 0's image_encoder outputs (feat encodes the anchor)
    decoded: dict[str, Handle]  # frame 0's decoder outputs (R0)
    mask_lowres: Handle  # R0's hole-filled low-res logits
    lowres: np.ndarray  # host copy of the same
    timings: Timings
    buffered: list[EncodedFrame] = field(default_factory=list)  # frames 1..k, k <= n_max, encoded on arrival


@dataclass
class MQCState(StateHeader):
    """Everything one object's MQC tracking carries from frame to frame; bounded whatever the video
    length. `frame_index` is the last frame emitted."""

    bank: DAMIBank
    pending: PendingStart | None  # frame 0 until TMCC has run
    innovation: InnovationGateState | None = None  # set when the anchor is written
    anchor_summary: np.ndarray | None = None  # quality head summary of frame 0 with the anchor mask
    previous_area: int | None = None  # foreground pixels of the last low-res mask (S_robust area change)
    last_obj_ptr: Handle | None = None  # gates MoGA's adapters on the next frame

    @property
    def next_index(self) -> int:
        """Index of the next frame received: buffered frames are received, not yet segmented."""
        return self.frame_index + 1 + (len(self.pending.buffered) if self.pending else 0)


class MQCMode:
    """The verbs of a mode (as `SAM2Mode`): `start`, `step`, `flush`, each over the K objects' states.
    DAMI's stage takes one object, so the objects run one after the other."""

    def __init__(self, calls: StageCalls) -> None:
        self.calls = calls

    def start(self, frame0: EncodedFrame, decoded: list[dict[str, Handle]],
              timings: list[Timings]) -> tuple[list[MQCState], list[list[FrameResult]]]:
        """Hold each object's frame 0 for TMCC, or anchor it at once when TMCC is off."""
        calls, frame_size = self.calls, frame0.rgb.shape[:2]
        states = []
        for one, one_timings in zip(decoded, timings):
            tracking_prompt = calls.tracking_prompt(one_timings)
            mask_lowres, lowres = calls.hole_filled(one["mask_lowres"])
            pending = PendingStart(frame0.rgb, frame0.features, one, mask_lowres, lowres, one_timings)
            states.append(MQCState(0, frame_size, tracking_prompt, new_dami_bank(calls.backend), pending))
        return states, self.flush(states) if calls.config.tmcc is None else [[] for _ in states]

    def step(self, states: list[MQCState], frame: EncodedFrame) -> list[list[FrameResult]]:
        """Buffer during start-up (emitting everything when the window is full), else track.
        Buffered frames arrive encoded: the image encoder runs as frames come, not in a burst at
        the flush, and objects sharing a frame share its encoding (at most n_max frames of features
        held)."""
        return [self._step_one(state, frame) for state in states]

    def flush(self, states: list[MQCState]) -> list[list[FrameResult]]:
        """Calibrate each R0 on the frames buffered so far, anchor, emit frame 0, track the buffer."""
        return [self._flush_one(state) for state in states]

    def _step_one(self, state: MQCState, frame: EncodedFrame) -> list[FrameResult]:
        if state.pending is None:
            return [_track(self.calls, state, frame)]
        state.pending.buffered.append(frame)
        if len(state.pending.buffered) >= self.calls.config.tmcc.n_max:
            return self._flush_one(state)
        return []

    def _flush_one(self, state: MQCState) -> list[FrameResult]:
        pending = state.pending
        if pending is None:
            return []
        first = _anchor(self.calls, state, pending)
        state.pending = None
        state.frame_index = 0
        return [first] + [_track(self.calls, state, frame) for frame in pending.buffered]


def _anchor(calls: StageCalls, state: MQCState, pending: PendingStart) -> FrameResult:
    """TMCC (DESIGN section 5 step 2) then the semantic anchor (step 3), encoded like SAM 2's
    prompted frame: from a binarized mask."""
    timings = pending.timings
    logits0 = upsample_logits(pending.lowres, *state.frame_size)
    r0 = logits0 > 0
    tmcc = _calibrate(calls, pending, r0, logits0)
    flags, quality = _tmcc_report(tmcc)
    mask, anchor_lowres = r0, pending.mask_lowres
    if tmcc is not None and not tmcc.stationary and tmcc.mask.any() and (tmcc.mask != r0).any():
        mask, anchor_lowres = tmcc.mask, calls.mask_as_lowres(tmcc.mask, state.frame_size, timings)
    decoded = pending.decoded
    binarize = calls.config.binarize_prompted_memory
    memory = calls.encode_memory(pending.features, anchor_lowres, decoded["object_score"], binarize, timings)
    state.bank.register_anchor(0, memory, decoded["obj_ptr"])
    area = int((calls.read(anchor_lowres) > 0).sum())
    summary, _ = _quality(calls, pending.features, anchor_lowres, 0.0, timings)
    state.innovation = new_innovation_state(calls.config.gates, reference=summary)
    state.anchor_summary, state.previous_area, state.last_obj_ptr = summary, area, decoded["obj_ptr"]
    uncertainty = calls.uncertainty(pending.features, pending.mask_lowres, timings)
    return calls.result(0, state.frame_size, pending.lowres, decoded, timings, uncertainty=uncertainty, mask=mask,
                        flags=("anchor", *flags), quality=quality)


def _calibrate(calls: StageCalls, pending: PendingStart, r0: np.ndarray, logits0: np.ndarray) -> TMCCResult | None:
    """TMCC needs at least one buffered frame; the semantic anchor confidence is sigmoid(R0 logits)."""
    if calls.config.tmcc is None or not pending.buffered:
        return None
    frames = [pending.frame0, *(frame.rgb for frame in pending.buffered)]
    return calibrate(r0, foreground_probability(logits0), frames, calls.config.tmcc)


def _tmcc_report(tmcc: TMCCResult | None) -> tuple[tuple[str, ...], dict[str, float]]:
    if tmcc is None:
        return ("tmcc_skipped",), {}
    flag = "tmcc_stationary" if tmcc.stationary else "tmcc_rejected" if tmcc.rejected else "tmcc_calibrated"
    return (flag,), {
        "tmcc_window": float(tmcc.window), "tmcc_motion_px": tmcc.motion_px,
        "tmcc_added_px": float(tmcc.added_px), "tmcc_removed_px": float(tmcc.removed_px),
    }


def _quality(calls: StageCalls, features: dict[str, Handle], mask_lowres: Handle, area_change: float,
             timings: Timings) -> tuple[np.ndarray, float]:
    """The quality head's feature summary [2, C] and learnable robustness score, on the host."""
    out = calls.run("quality_head", timings, feat=features["feat"], mask_lowres=mask_lowres,
                    area_change=calls.host(np.array([area_change], np.float32)))
    return calls.read(out["feat_summary"])[0], calls.scalar(out["robustness"])


@dataclass(frozen=True)
class _Reading:
    """What the Tracker reads of one tracked frame (small host arrays) for the gates."""

    lowres: np.ndarray  # float32 [S/4, S/4] hole-filled logits of the chosen mask
    summary: np.ndarray  # float32 [2, C] quality head feature summary
    learned_robustness: float  # the model's S_robust
    hypotheses: np.ndarray  # float32 [3, S/4, S/4] multimask logits
    ious: np.ndarray  # float32 [3] their predicted IoUs
    object_score: float
    uncertainty: np.ndarray | None  # float32 [S/4, S/4] CroBIM-U map of `lowres`; None without the head

    def finite(self) -> bool:
        scalars = np.array([self.learned_robustness, self.object_score])
        arrays = (self.lowres, self.summary, self.hypotheses, self.ious, scalars)
        return all(np.isfinite(a).all() for a in arrays + ((self.uncertainty,) if self.uncertainty is not None else ()))


def _track(calls: StageCalls, state: MQCState, frame: EncodedFrame) -> FrameResult:
    """One frame of DAMI tracking (section 5 step 4)."""
    index = state.frame_index + 1
    timings = dict(frame.timings)
    features = frame.features
    decoded = _decode(calls, state, index, features, timings)
    mask_lowres, lowres = calls.hole_filled(decoded["mask_lowres"])
    area = int((lowres > 0).sum())
    previous = state.previous_area
    area_change = abs(area - previous) / max(previous, 1) if previous is not None else 0.0
    summary, learned = _quality(calls, features, mask_lowres, area_change, timings)
    reading = _Reading(lowres, summary, learned, calls.read(decoded["masks_lowres_all"])[0, 1:],
                       calls.read(decoded["ious_all"])[0, 1:], calls.scalar(decoded["object_score"]),
                       calls.uncertainty(features, mask_lowres, timings))
    state.frame_index = index
    if not reading.finite():
        return calls.result(index, state.frame_size, lowres, decoded, timings, flags=("nonfinite",))
    flags, quality = _gate_and_write(calls, state, index, features, decoded, reading, timings)
    state.previous_area, state.last_obj_ptr = area, decoded["obj_ptr"]
    return calls.result(index, state.frame_size, lowres, decoded, timings, uncertainty=reading.uncertainty,
                        flags=flags, quality=quality)


def _decode(calls: StageCalls, state: MQCState, index: int, features: dict[str, Handle],
            timings: Timings) -> dict[str, Handle]:
    slots = {name: calls.host(array) for name, array in state.bank.dami_inputs(index).items()}
    if calls.geometry.mqc.moga:
        slots["gate_obj_ptr"] = state.last_obj_ptr
    conditioned = calls.run("dami_attention", timings, feat=features["feat"], memory=state.bank.memory,
                            obj_ptrs=state.bank.obj_ptrs, **slots)["feat_conditioned"]
    multimask = calls.config.multimask_for_tracking and calls.config.multimask(0)
    return calls.decode(conditioned, features, state.tracking_prompt, multimask, timings)


def _gate_and_write(calls: StageCalls, state: MQCState, index: int, features: dict[str, Handle],
                    decoded: dict[str, Handle], reading: _Reading,
                    timings: Timings) -> tuple[tuple[str, ...], dict[str, float]]:
    """The DAMI gates decide; one memory encoding (`_memory_mask`) serves every bank the frame
    enters. With `uncertainty_gate` set, a frame whose boundary uncertainty exceeds it does not
    enter the FIFO (flag "fifo_skipped_uncertain"); the innovation gate has still recorded its G
    and folded it into f_hat, as for any frame it registered."""
    config = calls.config
    innovation = update_innovation_gate(state.innovation, reading.summary, config.gates)
    register_fifo = innovation.register and not _too_uncertain(config, reading)
    ambiguity = assess_ambiguity(reading.hypotheses, reading.ious, config.gates)
    if config.robustness == "learned":
        robustness = reading.learned_robustness
    else:
        robustness = robustness_score(reading.summary, state.anchor_summary, reading.lowres, state.previous_area)
    prototype = should_register_prototype(ambiguity, robustness, config.gates)
    flags = ["ambiguous"] if ambiguity.ambiguous else []
    if innovation.register and not register_fifo:
        flags.append("fifo_skipped_uncertain")
    if register_fifo or prototype:
        memory = calls.encode_memory(features, _memory_mask(calls, decoded, reading), decoded["object_score"], False,
                                     timings)
        if register_fifo:
            state.bank.register_fifo(index, memory, decoded["obj_ptr"])
            flags.append("fifo_write")
        if prototype and state.bank.register_prototype(index, memory, decoded["obj_ptr"], robustness):
            flags.append("prototype_write")
    quality = {
        "innovation": innovation.score, "innovation_threshold": innovation.threshold,
        "ambiguity_kl": ambiguity.divergence, "ambiguity_score_gap": ambiguity.score_gap, "robustness": robustness,
    }
    return tuple(flags), quality


def _too_uncertain(config: TrackerConfig, reading: _Reading) -> bool:
    """The uncertainty gate: boundary uncertainty above `uncertainty_gate` (never when it is None)."""
    if config.uncertainty_gate is None:
        return False
    band = boundary_uncertainty(reading.uncertainty, reading.lowres, config.uncertainty_band_px)
    return band > config.uncertainty_gate


def _memory_mask(calls: StageCalls, decoded: dict[str, Handle], reading: _Reading) -> Handle:
    """The memory encoder's mask input: the decoder's logits, which the stage squashes with a
    sigmoid (SAM 2's confidence weighting), or with memory_weighting "uncertainty" logits whose
    sigmoid is sigmoid(x) (1 - u) (CroBIM-U: the head's confidence weights the write)."""
    if calls.config.memory_weighting != "uncertainty":
        return decoded["mask_lowres"]
    weighted = uncertainty_weighted_logits(calls.read(decoded["mask_lowres"])[0, 0], reading.uncertainty)
    return calls.host(weighted[None, None])
