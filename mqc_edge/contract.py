"""The stage contract: every stage's name, inputs and outputs, declared once (DESIGN section 4).

The exporter, every backend, the Tracker and the tests read these specs; no stage name or
shape is typed anywhere else. numpy-level only (no torch), so the torch-free runtime can use it.

Shapes are static and resolved from a `ModelGeometry`, so that ONNX graphs and TensorRT
engines need no dynamic profile and a step can be captured as a CUDA graph:
- memory is `num_maskmem` fixed slots with a validity mask and integer temporal ids that the
  stage looks up in `maskmem_tpos_enc` itself;
- object pointers are a fixed block of `max_obj_ptrs` with a validity mask and signed frame
  distances that the stage turns into sine encodings itself.
Two dimensions are symbolic:
- `prompt_tokens` (SAM prompt tokens: user points + box corners + one padding point): 2 on
  every tracking frame, and free only on the prompted frame;
- `objects`, the leading dimension of the per-object tensors of memory attention, the mask
  decoder and the memory encoder: several objects on one frame run as one batch, reading the
  frame's features (batch 1) once. A single object is a batch of one; a TensorRT engine
  takes it as an optimisation profile (1 .. `MAX_OBJECTS`).

A model with MQC parts (`ModelGeometry.mqc` set) adds four stages: `text_encoder`,
`prompt_fusion`, `dami_attention` (memory in the fixed anchor / FIFO / prototype slots of the
DAMI split) and `quality_head` (the small summaries the DAMI gates read on the host); one with
the CroBIM-U head (`MQCGeometry.uncertainty`) a fifth, `uncertainty_head` (pixel-wise
uncertainty of the chosen low-res mask, model/uncertainty.py). One built without its language
model (`MQCGeometry.text_encoder` False, `mqc-edge export --no-text-encoder`) has no
`text_encoder` stage: its MQC mode starts from boxes, points or masks only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mqc_edge.errors import ConfigError, StageContractError

PROMPT_TOKENS = "prompt_tokens"
"""Symbolic dimension: number of sparse prompt tokens (see module docstring)."""
OBJECTS = "objects"
"""Symbolic dimension: objects tracked together in one batch (see module docstring)."""
MAX_OBJECTS = 64
"""Largest `objects` batch an export accepts (ours: the benchmark goes to 16)."""

TRACKING_PROMPT_TOKENS = 2
"""SAM 2 feeds one 'no point' plus the prompt encoder's padding point on tracking frames
(sam2_base.py _forward_sam_heads with point_inputs=None)."""


MEMORY_STORAGE = ("bfloat16", "float32")
"""How a memory slot leaves the memory encoder. bfloat16: rounded as `SAM2VideoPredictor` stores it
(the reference Meta's predictor is matched against, and what training sees). float32: unrounded.
Rounding is a step function: a float32 difference of one ulp between two correct implementations
(onnxruntime vs torch) flips a value sitting on a bfloat16 rounding boundary by one bfloat16 ulp
(2^-8 of it), and the memory carries the flip into later frames; float32 storage has no such
boundary (docs/model_card.md 'Export parity': 10 of 2,752 test frames under IoU 0.999 with
bfloat16, none with float32, J&F equal to 0.001)."""

MEMORY_STORAGE_DEFAULT = MEMORY_STORAGE[0]
"""Storage of an export or torch backend that names none, and of exports from before the choice
existed: bfloat16, Meta's (the shipped default's export chooses float32: `default_model`)."""


def check_memory_storage(storage: str) -> None:
    """ConfigError naming the choices unless `storage` is one of `MEMORY_STORAGE`."""
    if storage not in MEMORY_STORAGE:
        raise ConfigError(f"memory storage: expected one of {list(MEMORY_STORAGE)}, got {storage!r}")


BANKS = ("anchor", "fifo", "prototypes")
"""DAMI's memory banks, in slot order: memory slots and pointer slots are both ordered so."""


@dataclass(frozen=True)
class MemorySplit:
    """How DAMI's fixed memory and pointer slots divide among its banks (CroBIM-V DAMI).

    Declared once, here, and read by the model config (`MQCSAMConfig.memory_split`), the model
    (`model/dami.py`), the contract (`MQCGeometry` is a split plus the other MQC sizes) and the
    runtime's DAMI bank. A pointer joins the bank of its frame; SAM 2 itself reads up to 16
    recent pointers, so pointer counts are separate from slot counts.
    """

    anchor_slots: int = 1  # paper: one semantic anchor, frame 0 with its TMCC-calibrated mask
    fifo_slots: int = 4  # short-term recent frames; with the rest, 1 + 4 + 2 = paper N_max = 7
    prototype_slots: int = 2  # discriminative prototypes from ambiguous frames
    anchor_pointers: int = 1  # one object pointer per memory frame by default (ours)
    fifo_pointers: int = 4
    prototype_pointers: int = 2

    def __post_init__(self) -> None:
        if min(self.slot_counts + self.pointer_counts) < 0 or self.memory_slots < 1:
            raise ConfigError(
                f"memory split: slots (anchor, fifo, prototypes) {self.slot_counts} and pointers "
                f"{self.pointer_counts} must be >= 0 with at least one slot"
            )

    @property
    def slot_counts(self) -> tuple[int, int, int]:
        """Memory slots per bank, in `BANKS` order."""
        return self.anchor_slots, self.fifo_slots, self.prototype_slots

    @property
    def pointer_counts(self) -> tuple[int, int, int]:
        """Pointer slots per bank, in `BANKS` order."""
        return self.anchor_pointers, self.fifo_pointers, self.prototype_pointers

    @property
    def memory_slots(self) -> int:
        """N_max: anchor + FIFO + prototype slots, in this order."""
        return sum(self.slot_counts)

    @property
    def pointer_slots(self) -> int:
        """Pointer slots: anchor + FIFO + prototype pointers, in this order."""
        return sum(self.pointer_counts)

    def bank_slots(self, bank: str) -> tuple[slice, slice]:
        """Memory-slot and pointer-slot ranges of `bank` (one of `BANKS`)."""
        index = BANKS.index(bank)
        return _range(self.slot_counts, index), _range(self.pointer_counts, index)


def _range(counts: tuple[int, ...], index: int) -> slice:
    start = sum(counts[:index])
    return slice(start, start + counts[index])


@dataclass(frozen=True)
class MQCGeometry(MemorySplit):
    """Sizes of the MQC stages: the DAMI split (the inherited fields) plus the text and fusion
    token counts; read off an `MQCSAMConfig` (model/mqc_sam.py) by the backend."""

    text_tokens: int = 32  # T: MQCSAMConfig.max_text_tokens (the text encoder's fixed length)
    fusion_tokens: int = 2  # K: MQCSAMConfig.sparse_prompt_tokens (sparse prompts out of the fusion)
    moga: bool = False  # MQCSAMConfig.moga: the DAMI stage then also takes the gating pointer
    uncertainty: bool = False  # MQCSAMConfig.uncertainty_head: adds the `uncertainty_head` stage
    text_encoder: bool = True  # False: no `text_encoder` stage (MQCSAM text_model=False, export --no-text-encoder)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.anchor_slots != 1 or self.text_tokens < 3 or self.fusion_tokens < 1:
            raise StageContractError(
                f"MQC geometry: expected exactly 1 anchor slot (the runtime writes frame 0 there, once), "
                f"text_tokens >= 3 and fusion_tokens >= 1; got anchor_slots {self.anchor_slots}, text_tokens "
                f"{self.text_tokens}, fusion_tokens {self.fusion_tokens}"
            )


SUMMARY_ROWS = 2
"""Rows of the quality head's feature summary: the frame mean and the target-weighted mean."""


@dataclass(frozen=True)
class ModelGeometry:
    """Sizes that fix every tensor shape of a SAM 2 family model."""

    image_size: int = 1024  # S: SAM 2.1 configs (sam2.1_hiera_*.yaml model.image_size)
    backbone_stride: int = 16  # stride of the top feature map (SAM2Base default)
    hidden_dim: int = 256  # transformer width (FpnNeck d_model in every SAM 2.1 config)
    mem_dim: int = 64  # memory channels (MemoryEncoder out_dim in every SAM 2.1 config)
    num_maskmem: int = 7  # N_max slots: 1 conditioning + 6 recent (SAM 2 num_maskmem; paper N_max = 7)
    max_obj_ptrs: int = 16  # pointer slots (SAM2Base max_obj_ptrs_in_encoder)
    num_mask_tokens: int = 4  # 1 single-mask + 3 multimask outputs (MaskDecoder num_multimask_outputs=3)
    mqc: MQCGeometry | None = None  # None: a plain SAM 2.1 model, SAM 2 mode stages only

    def __post_init__(self) -> None:
        if self.image_size % self.backbone_stride or self.hidden_dim % self.mem_dim:
            raise StageContractError(
                f"geometry: image_size {self.image_size} must be a multiple of the stride "
                f"{self.backbone_stride} and hidden_dim {self.hidden_dim} of mem_dim {self.mem_dim}"
            )
        if self.mqc is not None and self.mqc.fifo_slots > self.num_maskmem:
            raise StageContractError(
                f"geometry: {self.mqc.fifo_slots} FIFO slots need as many temporal encodings, "
                f"the model has num_maskmem {self.num_maskmem}"
            )

    @property
    def feat_size(self) -> int:
        """Side of the top (stride 16) feature map."""
        return self.image_size // self.backbone_stride

    @property
    def lowres_size(self) -> int:
        """Side of SAM's low-resolution mask logits (stride 4)."""
        return self.image_size // 4

    @property
    def tokens_per_ptr(self) -> int:
        """SAM 2 splits each hidden_dim pointer into mem_dim-wide memory tokens."""
        return self.hidden_dim // self.mem_dim


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a stage; a str dimension is symbolic (`PROMPT_TOKENS`, `OBJECTS`)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def resolved(self, sizes: dict[str, int]) -> "TensorSpec":
        """This spec with its symbolic dimensions set, e.g. `{OBJECTS: 1}` for one object's buffer."""
        return TensorSpec(self.name, self.dtype, tuple(sizes[d] if isinstance(d, str) else d for d in self.shape))

    def check(self, stage: str, shape: tuple[int, ...], dtype: str) -> None:
        """Raise `StageContractError` when an actual tensor does not fit this spec."""
        fits = len(shape) == len(self.shape) and all(
            isinstance(want, str) or want == got for want, got in zip(self.shape, shape)
        )
        if not fits or np.dtype(dtype) != np.dtype(self.dtype):
            raise StageContractError(
                f"stage {stage!r} tensor {self.name!r}: expected {self.dtype}{list(self.shape)}, "
                f"got {dtype}{list(shape)}"
            )


@dataclass(frozen=True)
class StageSpec:
    """A stage: tensors in, tensors out, in this order (the ONNX graph's I/O order)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.name, self.inputs, name)

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.name, self.outputs, name)

    def check_tensors(self, specs: tuple[TensorSpec, ...], given: dict[str, tuple[tuple[int, ...], str]]) -> None:
        """Raise `StageContractError` unless every tensor of `specs` is in `given` (name ->
        (shape, numpy dtype name)) and fits, a symbolic dimension having one size across them;
        `CheckedBackend` (runtime/backends/stage_backend.py) checks every stage call of every backend here."""
        missing = [spec.name for spec in specs if spec.name not in given]
        if missing:
            raise StageContractError(f"stage {self.name!r}: missing tensors {missing}")
        bound: dict[str, tuple[int, str]] = {}
        for spec in specs:
            shape = given[spec.name][0]
            spec.check(self.name, *given[spec.name])
            for want, got in zip(spec.shape, shape):
                if isinstance(want, str):
                    size, first = bound.setdefault(want, (got, spec.name))
                    if size != got:
                        raise StageContractError(
                            f"stage {self.name!r}: {want} is {size} in {first!r} but {got} in {spec.name!r}"
                        )


def _by_name(stage: str, specs: tuple[TensorSpec, ...], name: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise StageContractError(f"stage {stage!r} has no tensor {name!r}; it has {[s.name for s in specs]}")


def _f32(name: str, *shape: int | str) -> TensorSpec:
    return TensorSpec(name, "float32", shape)


def stage_specs(g: ModelGeometry) -> dict[str, StageSpec]:
    """Every stage of geometry `g`: the SAM 2 mode stages, plus the MQC stages when `g.mqc` is set."""
    stages = _sam2_stage_specs(g)
    if g.mqc is not None:
        stages.update(_mqc_stage_specs(g, g.mqc))
    return stages


def _sam2_stage_specs(g: ModelGeometry) -> dict[str, StageSpec]:
    s, low, hid, mem, o = g.feat_size, g.lowres_size, g.hidden_dim, g.mem_dim, OBJECTS
    feat = _f32("feat", 1, hid, s, s)
    fpn0 = _f32("fpn0", 1, hid // 8, 4 * s, 4 * s)
    fpn1 = _f32("fpn1", 1, hid // 4, 2 * s, 2 * s)
    conditioned = _f32("feat_conditioned", 1, hid, s, s)
    sparse = _f32("sparse_prompt", 1, PROMPT_TOKENS, hid)
    dense = _f32("dense_prompt", 1, hid, s, s)
    mask_lowres = _f32("mask_lowres", o, 1, low, low)
    object_score = _f32("object_score", o, 1)
    conditioned_batch = _f32("feat_conditioned", o, hid, s, s)
    stages = (
        StageSpec("image_encoder", (_f32("image", 1, 3, g.image_size, g.image_size),), (fpn0, fpn1, feat)),
        StageSpec(
            "prompt_encoder",
            (
                _f32("point_coords", 1, PROMPT_TOKENS, 2),
                TensorSpec("point_labels", "int32", (1, PROMPT_TOKENS)),
                _f32("mask_prompt", 1, 1, g.image_size, g.image_size),
                TensorSpec("use_mask", "bool", (1,)),
            ),
            (sparse, dense, _f32("mask_prompt_lowres", 1, 1, low, low)),
        ),
        StageSpec("no_memory", (feat,), (conditioned,)),
        StageSpec(
            "memory_attention",
            (
                feat,
                _f32("memory", o, g.num_maskmem, mem, s, s),
                TensorSpec("memory_tpos", "int64", (o, g.num_maskmem)),
                TensorSpec("memory_valid", "bool", (o, g.num_maskmem)),
                _f32("obj_ptrs", o, g.max_obj_ptrs, hid),
                TensorSpec("obj_ptr_tpos", "int64", (o, g.max_obj_ptrs)),
                TensorSpec("obj_ptr_valid", "bool", (o, g.max_obj_ptrs)),
            ),
            (conditioned_batch,),
        ),
        StageSpec(
            "mask_decoder",
            (
                conditioned_batch, fpn0, fpn1, _f32("sparse_prompt", o, PROMPT_TOKENS, hid),
                _f32("dense_prompt", o, hid, s, s), TensorSpec("multimask", "bool", (1,)),
            ),
            (
                _f32("masks_lowres_all", o, g.num_mask_tokens, low, low),
                _f32("ious_all", o, g.num_mask_tokens),
                mask_lowres,
                _f32("iou", o, 1),
                _f32("obj_ptr", o, hid),
                object_score,
            ),
        ),
        StageSpec(
            "memory_encoder",
            (feat, mask_lowres, object_score, TensorSpec("binarize", "bool", (1,))),
            (_f32("memory", o, mem, s, s),),
        ),
    )
    return {stage.name: stage for stage in stages}


def _mqc_stage_specs(g: ModelGeometry, m: MQCGeometry) -> dict[str, StageSpec]:
    """The MQC stages. Token ids come from the host tokenizer (runtime/text.py); DAMI memory
    slots are ordered anchor, FIFO, prototypes; FIFO ages rank the FIFO slots by recency
    (0 = newest) and select both the temporal encoding and DAMI's learnable temporal bias."""
    s, low, hid, mem, t = g.feat_size, g.lowres_size, g.hidden_dim, g.mem_dim, m.text_tokens
    feat = _f32("feat", 1, hid, s, s)
    conditioned = _f32("feat_conditioned", 1, hid, s, s)
    text_tokens = _f32("text_tokens", 1, t, hid)
    text_mask = TensorSpec("text_mask", "bool", (1, t))
    dami_inputs = (
        feat,
        _f32("memory", m.memory_slots, mem, s, s),
        TensorSpec("memory_valid", "bool", (m.memory_slots,)),
        TensorSpec("fifo_age", "int64", (m.fifo_slots,)),
        _f32("obj_ptrs", m.pointer_slots, hid),
        TensorSpec("obj_ptr_tpos", "int64", (m.pointer_slots,)),
        TensorSpec("obj_ptr_valid", "bool", (m.pointer_slots,)),
        TensorSpec("ptr_fifo_age", "int64", (m.fifo_pointers,)),
    ) + ((_f32("gate_obj_ptr", 1, hid),) if m.moga else ())
    text_encoder = StageSpec(
        "text_encoder",
        (TensorSpec("input_ids", "int64", (1, t)), TensorSpec("attention_mask", "int64", (1, t))),
        (text_tokens, text_mask, _f32("text_pooled", 1, hid)),
    )
    stages = ((text_encoder,) if m.text_encoder else ()) + (
        StageSpec(
            "prompt_fusion",
            (conditioned, text_tokens, text_mask),
            (_f32("sparse_prompt", 1, m.fusion_tokens, hid), _f32("dense_prompt", 1, hid, s, s)),
        ),
        StageSpec("dami_attention", dami_inputs, (conditioned,)),
        StageSpec(
            "quality_head",
            (feat, _f32("mask_lowres", 1, 1, low, low), _f32("area_change", 1)),
            (_f32("feat_summary", 1, SUMMARY_ROWS, hid), _f32("robustness", 1)),
        ),
    ) + ((_uncertainty_stage_spec(g),) if m.uncertainty else ())
    return {stage.name: stage for stage in stages}


def _uncertainty_stage_spec(g: ModelGeometry) -> StageSpec:
    """CroBIM-U head: the frame's fpn0 (batch 1, shared by its objects) and each object's chosen
    low-res logits -> per-pixel uncertainty in [0, 1] at the same stride-4 resolution."""
    low, o = g.lowres_size, OBJECTS
    return StageSpec(
        "uncertainty_head",
        (_f32("fpn0", 1, g.hidden_dim // 8, low, low), _f32("mask_lowres", o, 1, low, low)),
        (_f32("uncertainty", o, 1, low, low),),
    )
