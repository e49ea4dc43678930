"""Pre- and post-processing on the stage backend's device: the torch twin of runtime/preprocess.py
and runtime/postprocess.py (which stay torch-free and are the reference).

- `preprocess_frame`: Pillow's bicubic resize to S x S, reproduced in integer arithmetic (Pillow's
  fixed-point filter weights, applied as a float64 matrix product: every product and sum is an
  integer below 2^53, so the result is exact on any device), then SAM 2's ImageNet normalisation
  in the same float64 -> float32 steps as the numpy path. Bit-exact with `runtime.preprocess`.
- `upsample_logits`: `F.interpolate(bilinear, align_corners=False)` to the frame size, which the
  numpy path reproduces from torch's CPU kernel (bit-exact on CPU; CUDA's kernel rounds without a
  fused multiply-add, within a few float32 ulps of the logits' magnitude).
- `threshold_mask`: logits > 0, as Meta's predictor thresholds.
Hole filling stays on the host (runtime/postprocess.py `fill_holes`, OpenCV components).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from mqc_edge.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD

PRECISION_BITS = 22
"""Pillow's fixed-point fraction bits for 8-bit resampling (libImaging/Resample.c: 32 - 8 - 2)."""
BICUBIC_SUPPORT = 2.0
"""Pillow's bicubic filter reaches two source pixels either side at scale 1."""


def _pillow_bicubic(x: float) -> float:
    """Pillow's bicubic kernel (a = -0.5, libImaging/Resample.c `bicubic_filter`)."""
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _pillow_weights(in_size: int, out_size: int) -> np.ndarray:
    """float64 [out_size, in_size] integer weights of Pillow's resize along one axis (its
    `precompute_coeffs` + `normalize_coeffs_8bpc`), scaled by 2^PRECISION_BITS."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filter_scale
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        taps = [_pillow_bicubic((x - center + 0.5) / filter_scale) for x in range(first, last)]
        total = sum(taps)
        for x, tap in zip(range(first, last), taps):
            normalised = tap / total if total != 0.0 else tap
            weights[out, x] = math.trunc(normalised * (1 << PRECISION_BITS) + (-0.5 if normalised < 0 else 0.5))
    return weights


@lru_cache(maxsize=16)
def _device_weights(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """`_pillow_weights` transposed, float64 [in_size, out_size], on `device`: built and uploaded
    once per size pair (a 1920 px axis to 1024 is 15 MB, too much to copy every frame)."""
    with torch.inference_mode(False):  # a normal tensor, usable in and out of inference mode
        return torch.from_numpy(np.ascontiguousarray(_pillow_weights(in_size, out_size).T)).to(device)


@lru_cache(maxsize=4)
def _imagenet_statistics(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std float32 [3, 1, 1] on `device`, uploaded once."""
    with torch.inference_mode(False):
        return torch.from_numpy(IMAGENET_MEAN).to(device), torch.from_numpy(IMAGENET_STD).to(device)


def _resample_last_axis(pixels: torch.Tensor, out_size: int) -> torch.Tensor:
    """float64 integer-valued [..., n] -> [..., out_size], one Pillow pass with its rounding and
    clipping to 0..255; no pass when the size is already right (Pillow skips it too)."""
    if pixels.shape[-1] == out_size:
        return pixels
    fixed = pixels @ _device_weights(pixels.shape[-1], out_size, pixels.device) + float(1 << (PRECISION_BITS - 1))
    return torch.floor(fixed / float(1 << PRECISION_BITS)).clamp_(0.0, 255.0)


def resize_like_pillow(frame: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [H, W, 3] on any device -> float64 [3, size, size] holding Pillow's uint8 result of
    `Image.resize((size, size), BICUBIC)`: horizontal pass first, then vertical, as Pillow does."""
    channels_first = frame.permute(2, 0, 1).to(torch.float64)
    horizontal = _resample_last_axis(channels_first, size)
    return _resample_last_axis(horizontal.transpose(1, 2), size).transpose(1, 2)


def preprocess_frame(frame: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 RGB [H, W, 3] on the device -> float32 [1, 3, S, S] on it, as `runtime.preprocess.preprocess_frame`."""
    scaled = (resize_like_pillow(frame, image_size) / 255.0).to(torch.float32)
    mean, std = _imagenet_statistics(frame.device)
    return ((scaled - mean) / std)[None]


def upsample_logits(logits_lowres: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float32 [..., h, w] low-resolution logits -> [..., height, width] frame-size logits (bilinear,
    align_corners=False, as Meta's predictor)."""
    leading = logits_lowres.shape[:-2]
    flat = logits_lowres.reshape(-1, 1, *logits_lowres.shape[-2:])
    upsampled = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return upsampled.reshape(*leading, height, width)


def threshold_mask(logits: torch.Tensor) -> torch.Tensor:
    """Logits of any shape -> bool mask of the same shape: foreground where the logit is > 0."""
    return logits > 0
