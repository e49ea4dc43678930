"""The memory encoder's storage: bfloat16 rounds every slot as Meta's predictor stores it, float32
leaves it unrounded, and only the rounding turns a float32-sized difference into a bfloat16-sized one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mqc_edge.errors import ConfigError
from mqc_edge.model.sam2_build import build_sam21
from mqc_edge.model.torch_backend import TorchBackend, load

IMAGE_SIZE = 128


@pytest.fixture(scope="module")
def backends() -> dict[str, TorchBackend]:
    sam = build_sam21("tiny", IMAGE_SIZE, seed=3)
    return {storage: TorchBackend(sam, memory_storage=storage) for storage in ("bfloat16", "float32")}


def _inputs(feat_scale: float = 1.0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    feat = torch.randn(1, 256, IMAGE_SIZE // 16, IMAGE_SIZE // 16, generator=generator)
    lowres = 8 * torch.randn(1, 1, IMAGE_SIZE // 4, IMAGE_SIZE // 4, generator=generator)
    return {"feat": feat * feat_scale, "mask_lowres": lowres, "object_score": torch.tensor([[3.0]]),
            "binarize": torch.tensor([False])}


def _memory(backend: TorchBackend, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    return backend.run("memory_encoder", inputs)["memory"].numpy()


def _is_bfloat16(values: np.ndarray) -> np.ndarray:
    return (values.view(np.uint32) & 0xFFFF) == 0


def test_bfloat16_storage_is_the_float32_memory_rounded(backends) -> None:
    rounded, exact = _memory(backends["bfloat16"], _inputs()), _memory(backends["float32"], _inputs())
    assert _is_bfloat16(rounded).all()
    assert not _is_bfloat16(exact).all()
    np.testing.assert_array_equal(torch.from_numpy(exact).to(torch.bfloat16).float().numpy(), rounded)


def test_only_the_rounding_amplifies_a_float32_sized_difference(backends) -> None:
    """A 1e-6 relative change of the features (the size of an onnxruntime-vs-torch difference)
    stays that size in float32 storage; in bfloat16 some slot values flip by a whole bfloat16 ulp."""
    base, nudged = _inputs(), _inputs(1 + 1e-6)
    exact = np.abs(_memory(backends["float32"], base) - _memory(backends["float32"], nudged))
    scale = np.abs(_memory(backends["float32"], base)).max()
    assert exact.max() <= 1e-5 * scale
    rounded = _memory(backends["bfloat16"], base)
    flipped = np.abs(rounded - _memory(backends["bfloat16"], nudged))
    assert flipped.max() >= 2.0**-9 * np.abs(rounded[flipped == flipped.max()]).min()
    assert flipped.max() > 100 * exact.max()


def test_an_unknown_storage_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="memory storage: expected one of \\['bfloat16', 'float32'\\], got 'fp8'"):
        load(variant="tiny", image_size=IMAGE_SIZE, memory_storage="fp8")
