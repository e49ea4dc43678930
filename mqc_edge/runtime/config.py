"""How the Tracker drives the stages, in one frozen configuration (DESIGN section 5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mqc_edge.errors import ConfigError
from mqc_edge.runtime.mqc.gates import GateConfig
from mqc_edge.runtime.mqc.tmcc import TMCCConfig

MODES = ("sam2", "mqc")
ROBUSTNESS_SCORERS = ("learned", "formula")
MEMORY_WEIGHTINGS = ("confidence", "uncertainty")


@dataclass(frozen=True)
class TrackerConfig:
    """Defaults of the SAM 2 fields reproduce Meta's SAM2VideoPredictor; the MQC fields are
    used in mode "mqc" only."""

    mode: str = "sam2"  # "sam2": SAM 2's memory selection (Meta parity); "mqc": TMCC + DAMI (CroBIM-V)
    fill_hole_area: int = 8  # build_sam.py video predictor override; 0 = Meta without its sam2._C extension
    multimask_for_tracking: bool = True  # sam2.1_hiera_*.yaml multimask_output_for_tracking
    multimask_min_points: int = 0  # sam2.1_hiera_*.yaml multimask_min_pt_num (a box counts 2 points)
    multimask_max_points: int = 1  # sam2.1_hiera_*.yaml multimask_max_pt_num
    binarize_prompted_memory: bool = True  # build_sam.py override binarize_mask_from_pts_for_mem_enc
    # MQC text start's decoder output: best of the three multimask outputs by predicted IoU (True, SAM 2's
    # rule for a prompt of no points), or the single-mask token with SAM's stability fallback (False)
    text_start_multimask: bool = True
    tmcc: TMCCConfig | None = field(default_factory=TMCCConfig)  # None: no calibration, no start-up delay
    gates: GateConfig = field(default_factory=GateConfig)  # DAMI write gates (runtime/mqc/gates.py)
    robustness: str = "learned"  # S_robust: the model's trained scorer, or gates.robustness_score's formula
    uncertainty_band_px: int = 2  # boundary band half-width, low-res px, of FrameResult.boundary_uncertainty (ours)
    uncertainty_gate: float | None = None  # MQC: no FIFO write when boundary_uncertainty exceeds it; None: off
    memory_weighting: str = "confidence"  # MQC memory writes: sigmoid(logits) (SAM 2), or "uncertainty": x (1 - u)
    frame_step: bool = False  # SAM 2 mode: tracking frames through the backend's captured step (torch on CUDA: one CUDA graph)
    # the image encoder of frame t+1 in a worker thread while frame t's memory stages run; results one call later
    encode_ahead: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"tracker mode: expected one of {MODES}, got {self.mode!r}")
        if self.fill_hole_area < 0:
            raise ConfigError(f"fill_hole_area: expected >= 0, got {self.fill_hole_area}")
        if self.robustness not in ROBUSTNESS_SCORERS:
            raise ConfigError(f"robustness: expected one of {ROBUSTNESS_SCORERS}, got {self.robustness!r}")
        if self.memory_weighting not in MEMORY_WEIGHTINGS:
            raise ConfigError(f"memory_weighting: expected one of {MEMORY_WEIGHTINGS}, got {self.memory_weighting!r}")
        if self.frame_step and self.mode != "sam2":
            raise ConfigError("frame_step: the captured tracking step is SAM 2 mode's; MQC mode's gates decide "
                              "between its stages on the host")
        if self.encode_ahead and self.frame_step:
            raise ConfigError("encode_ahead with frame_step: the captured step runs the image encoder inside the "
                              "tracking frame's replay, so there is no encoder call to run ahead")
        if self.uncertainty_band_px < 1 or not (self.uncertainty_gate is None or 0 <= self.uncertainty_gate <= 1):
            raise ConfigError(f"uncertainty: expected uncertainty_band_px >= 1 and uncertainty_gate None or in "
                              f"[0, 1], got {self.uncertainty_band_px} and {self.uncertainty_gate}")

    @property
    def needs_uncertainty(self) -> bool:
        """Whether this configuration reads the uncertainty head (gate or memory weighting on)."""
        return self.uncertainty_gate is not None or self.memory_weighting == "uncertainty"

    def multimask(self, num_points: int) -> bool:
        """SAM 2's `_use_multimask` (multimask_output_in_sam is on in every SAM 2.1 config)."""
        return self.multimask_min_points <= num_points <= self.multimask_max_points
