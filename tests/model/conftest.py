"""Shared, read-only model fixtures for tests/model: built once per session to keep the suite fast."""

from __future__ import annotations

import pytest
import torch

from mqc_edge.contract import MemorySplit
from mqc_edge.model.dami import DAMIMemory

# One intra-op thread: on a shared 2-core CI box, OpenMP spin-waiting made a 40 ms DAMI forward
# take 1.5 s (measured); the tests check behaviour, not throughput.
torch.set_num_threads(1)

IMAGE_SIZE = 128  # 8 x 8 stride-16 tokens: small enough for CPU tests, same code paths as 480
MAX_TOKENS = 16


@pytest.fixture(scope="session")
def tiny_sam():
    """Randomly initialised SAM 2.1 tiny in eval mode (no dropout)."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    return build_sam2(
        "configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", hydra_overrides_extra=[f"++model.image_size={IMAGE_SIZE}"]
    )


@pytest.fixture(scope="session")
def mqc_model():
    """MQC-SAM with MoGA and the uncertainty head on, so that every part exists; eval mode."""
    from mqc_edge.model.mqc_sam import MQCSAM, MQCSAMConfig

    torch.manual_seed(0)
    config = MQCSAMConfig(image_size=IMAGE_SIZE, max_text_tokens=MAX_TOKENS, moga=True, uncertainty_head=True)
    return MQCSAM(config).eval()


@pytest.fixture(scope="session")
def mqc_model_without_text():
    """`mqc_model` built without its frozen language model (box and point prompts only): what runs
    where MiniLM is not installed, as on the GPU machine of scripts/gpu_check.sh."""
    from mqc_edge.model.mqc_sam import MQCSAM, MQCSAMConfig

    torch.manual_seed(0)
    config = MQCSAMConfig(image_size=IMAGE_SIZE, max_text_tokens=MAX_TOKENS, moga=True, uncertainty_head=True)
    return MQCSAM(config, text_model=False).eval()


def random_memory(split: MemorySplit, batch: int = 1, hw: int = 64, seed: int = 0) -> DAMIMemory:
    """A full memory (every slot and pointer valid) of SAM 2.1 tiny's widths: C_mem 64, 4 pointer tokens."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    slots, pointers = split.memory_slots, split.pointer_slots
    return DAMIMemory(
        features=normal(batch, slots, hw, 64),
        pos=normal(batch, slots, hw, 64),
        slot_valid=torch.ones(batch, slots, dtype=torch.bool),
        fifo_age=torch.arange(split.fifo_slots).expand(batch, -1).clone(),
        pointers=normal(batch, pointers, 4, 64),
        pointer_pos=normal(batch, pointers, 4, 64),
        pointer_valid=torch.ones(batch, pointers, dtype=torch.bool),
        pointer_fifo_age=torch.arange(split.fifo_pointers).expand(batch, -1).clone(),
    )


@pytest.fixture
def make_memory():
    """`random_memory` as a fixture, so test modules need not import conftest by name."""
    return random_memory
