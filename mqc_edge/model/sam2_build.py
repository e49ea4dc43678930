"""Build a SAM 2.1 network from the configs inside Meta's sam2 package, with seeded random
weights or a checkpoint, and read its `ModelGeometry`.

No pretrained weights exist offline, so tests and demos use seeded random weights; a real
checkpoint is Meta's `{"model": state_dict}` .pt file or a safetensors file of the same keys.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base

from mqc_edge.contract import ModelGeometry
from mqc_edge.errors import CheckpointError, ConfigError

SAM21_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "compact": "configs/sam2.1/sam2.1_hiera_t.yaml",  # + COMPACT_OVERRIDES
}
"""Variant -> the config file inside Meta's sam2 package it is built from."""

COMPACT_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=48",
    "++model.image_encoder.trunk.stages=[1,1,3,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3,4]",
    "++model.image_encoder.neck.backbone_channel_list=[384,192,96,48]",
    "++model.memory_attention.num_layers=1",
)
"""mqc-edge's compact SAM 2.1 (our default model): sam2.1_hiera_t with a half-width, 6-block Hiera
and one memory-attention layer, built by Meta's own code from its tiny config plus these overrides,
so Meta's predictor runs it too. Chosen by measurement (docs/model_card.md): 10.4 M parameters
(20 MB in fp16, under the 25 MB shipping budget) and about 3x cheaper per training step than
tiny on 2 CPU cores. Global attention sits at blocks 3 and 4 (stage 3's second and third block):
a global block at a stage's first, pooling block breaks sam2's Hiera."""

VARIANT_OVERRIDES = {"compact": COMPACT_OVERRIDES}
"""Variant -> hydra overrides on top of its config file (none for Meta's four)."""

SAM21_CONFIG_NAMES = {Path(config).stem: variant for variant, config in SAM21_CONFIGS.items() if variant != "compact"}
"""Config file stem (the CLI's --model-config, e.g. sam2.1_hiera_t) -> variant."""


def hydra_overrides(variant: str, image_size: int) -> list[str]:
    """The overrides that build `variant` at `image_size` from `SAM21_CONFIGS[variant]`: what our
    builder and Meta's `build_sam2_video_predictor` are both given."""
    if variant not in SAM21_CONFIGS:
        raise ConfigError(f"SAM 2.1 variant: expected one of {sorted(SAM21_CONFIGS)}, got {variant!r}")
    return [f"++model.image_size={image_size}", *VARIANT_OVERRIDES.get(variant, ())]


def build_sam21(
    variant: str = "tiny", image_size: int = 1024, seed: int = 0, checkpoint: Path | None = None
) -> SAM2Base:
    """A SAM2Base in eval mode on the CPU; random weights from `seed` unless `checkpoint`.

    Built with `apply_postprocessing=True`, as Meta's video predictor is, so the mask decoder
    falls back to the best multimask output when the single mask is unstable.
    """
    overrides = hydra_overrides(variant, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam2(SAM21_CONFIGS[variant], ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.eval()


def load_weights(model: SAM2Base, checkpoint: Path) -> None:
    """Load a `{"model": state_dict}` .pt (weights only) or a .safetensors file, strictly."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: no such checkpoint file")
    if checkpoint.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(checkpoint))
    else:
        state = read_meta_state(checkpoint)
    _check_state(checkpoint, model.state_dict(), state)
    model.load_state_dict(state)


def read_meta_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of Meta's SAM 2.1 format, `{"model": {key: tensor}}`, read with
    `weights_only=True`; every way the file can be wrong is a `CheckpointError` naming it."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"checkpoint {path}: holds Python objects besides tensors, refused by torch.load(weights_only=True)"
        ) from None
    except Exception as error:  # zip, EOF and IO errors have no common base; all mean "unreadable"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path}: not a readable torch file ({first_line})") from None
    state = content.get("model") if isinstance(content, dict) else None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(
            f"checkpoint {path}: expected Meta's SAM 2 layout {{'model': state_dict}} of tensors, got something else"
        )
    return state


def _check_state(path: Path, expected: dict, got: dict) -> None:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    for name, tensor in expected.items():
        if tuple(got[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} expected shape {list(tensor.shape)}, got {list(got[name].shape)}"
            )


def save_weights(model: SAM2Base, path: Path) -> None:
    """Write Meta's checkpoint layout, so Meta's own builders can load the same weights."""
    torch.save({"model": model.state_dict()}, Path(path))


def geometry_of(model: SAM2Base) -> ModelGeometry:
    """Read the contract geometry off a built network (never assumed from the config name)."""
    return ModelGeometry(
        image_size=model.image_size,
        backbone_stride=model.backbone_stride,
        hidden_dim=model.hidden_dim,
        mem_dim=model.mem_dim,
        num_maskmem=model.num_maskmem,
        max_obj_ptrs=model.max_obj_ptrs_in_encoder,
        num_mask_tokens=model.sam_mask_decoder.num_mask_tokens,
    )
