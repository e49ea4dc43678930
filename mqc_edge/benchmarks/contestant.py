"""What one contestant's run on one clip records; every contestant fills the same record."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ContestantRun:
    """Timings of one pass over a clip (all milliseconds, wall clock, synchronous)."""

    name: str
    first_mask_ms: float
    """From the first frame arriving to its mask being available (prompting, TMCC window in MQC mode)."""
    frame_ms: list[float] = field(default_factory=list)
    """One entry per tracked frame (frames after the prompted one)."""
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    """Per stage, one entry per call; empty for contestants that cannot be split into stages."""
    resident_bytes: list[int] = field(default_factory=list)
    """Resident host memory after each tracked frame."""
    syncs: list[int] = field(default_factory=list)
    """Host-device synchronisations of each tracked frame (the torch backend's counter); empty
    for contestants that do not count them."""
