"""Calibration for reduced precision: prompted clips, and the stage feeds the FP32 pipeline
gives its stages while tracking them (DESIGN section 6: never random scales)."""

from mqc_edge.calibration.clips import ClipSet, PromptedClip, load_clips, synthetic_clips
from mqc_edge.calibration.reader import StageFeedReader, record_stage_feeds

__all__ = ["ClipSet", "PromptedClip", "StageFeedReader", "load_clips", "record_stage_feeds", "synthetic_clips"]
