"""Fixed slots both memory banks share: FIFO eviction."""

from __future__ import annotations

import pytest

from mqc_edge.errors import ConfigError
from mqc_edge.runtime.slots import choose_fifo_to_evict


def test_fifo_eviction_fills_empty_slots_then_drops_the_oldest() -> None:
    assert choose_fifo_to_evict([12, -1, 14, -1]) == 1
    assert choose_fifo_to_evict([12, 9, 14, 11]) == 1
    with pytest.raises(ConfigError):
        choose_fifo_to_evict([])
