"""The configuration of mqc-edge's shipped default MQC-SAM (docs/model_card.md)."""

from __future__ import annotations

from mqc_edge.model.mqc_sam import MQCSAMConfig

DEFAULT_MODEL_CONFIG = MQCSAMConfig(
    sam2_variant="compact",  # sam2_build.COMPACT_OVERRIDES: 10.6 M parameters in SAM 2's part
    image_size=256,  # 16x16 stride-16 grid; synthetic targets of 7-30 px at this size stay 2-8 px in the low-res mask
    fusion_layers=1,  # one bidirectional image<->text round keeps the shipped fp16 file under 25 MB
    fusion_mlp_ratio=2,
    fusion_positional_values=True,  # the text reads where the image content is (eighth session: text J&F 0.29 -> 0.37)
    uncertainty_head=True,  # CroBIM-U head (7,249 parameters), trained after the rest by training/uncertainty.py
)
