"""TMCC: temporal motion-consistency calibration of the frame-0 mask R0 (DESIGN section 5 step 2).

A referring decoder sees one frame: it may cover half a target, or a static look-alike beside
it. A moving target has one displacement over all its pixels, so the flow over a few of the
next frames can grow R0 to the whole mover and drop what does not move with it. Torch-free
(numpy + OpenCV): the on-board runtime, the torch reference pipeline and training all call
`calibrate` on plain arrays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from mqc_edge.errors import BadFrameError, ConfigError

# DIS presets by name, so that a configuration stays readable and serialisable.
_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class TMCCConfig:
    """Thresholds of TMCC. The paper's numeric values were not available to us, so every
    default below is our choice, measured on textured synthetic scenes (tests/runtime/test_tmcc.py)."""

    n0: int = 1
    """First window length in frames: DIS loses a target that moves more than about half its
    width (a 24 px car at 3 px/frame read 2.8 px at n = 1, 0.7 at n = 2..8); slow targets
    still grow the window to n_max."""
    dn: int = 2
    """Window growth step in frames (1, 3, 5, 7, 8); 2 halves the flow computations against a step of 1."""
    n_max: int = 8
    """Largest window: bounds the start-up latency to 8 frames (0.3-0.8 s at 10-25 fps)."""
    tau_motion_px: float = 2.0
    """Motion threshold (pixels): DIS 'medium' read <= 0.5 px (99th percentile) on static ground."""
    cell_px: int = 8
    """Side of the square regions of R0 whose mean displacement is tested against tau_motion."""
    cell_min_fraction: float = 0.5
    """A region counts only when R0 covers this share of it, so boundary slivers cannot trigger."""
    roi_margin_px: int = 32
    """ROI margin around R0's box: holds n_max frames of a 3 px/frame target plus flow context."""
    roi_margin_fraction: float = 0.5
    """ROI margin relative to the larger box side, for targets bigger than the fixed margin."""
    roi_min_side_px: int = 128
    """Smallest ROI side: DIS builds its pyramid from the image size, and below ~128 px 'medium'
    keeps one level only, measured to under-read a 6 px shift as 3.8 px."""
    dis_preset: str = "medium"
    """DIS preset. 'medium' measured 7.9 px for a true 8 px shift where 'fast' read 5.1 and
    'ultrafast' 5.9; the calibration works on magnitudes, and on an ROI it costs about 2 ms."""
    dis_patch_px: int = 4
    """DIS patch side, overriding the preset's 8: an 8 px patch is as wide as a car or an
    aircraft's fuselage, so it spreads the target's motion onto the ground beside it and
    averages a 4 px train with the static ground (a 20 px car read 2.2 px for a true 5.9)."""
    dis_stride_px: int = 3
    """DIS patch stride (the preset's is 3): a stride of 2 measured 7.8 ms per 128 px flow on one
    thread against 4.8 ms for 3, with the synthetic mechanism tests passing alike."""
    dis_finest_scale: int = 0
    """Finest DIS pyramid level, overriding the preset's 1: 'medium' stops at half resolution,
    where a 4 px train or a 10 px car is 2-5 px and under-reads (a train at 6 px read 0.2)."""
    compensate_drift: bool = True
    """Subtract the median background flow: platform drift of a staring satellite moves the whole
    scene, which would make a static look-alike look as if it moved with the target."""
    drift_exclusion_px: int = 8
    """Band around R0 left out of the drift sample: DIS smooths the target's motion ~5 px outwards."""
    drift_min_pixels: int = 64
    """Fewest background pixels for a drift estimate; with fewer, no compensation is made."""
    robust_stats: bool = True
    """mu, sigma as median and 1.4826*MAD of the moving mode instead of mean and std of all R0:
    equal for Gaussian data, but they still describe the target when R0 is half or more a static
    distractor (the plain median of a half-static R0 measured 0.12 px for a 5 px mover)."""
    mode_band_fraction: float = 0.5
    """The moving mode: R0 pixels whose D is within this fraction of the fastest region's mean
    displacement (the one that stopped the window); wide enough for DIS's spread over a rigid
    target (sigma ~ 15 % of mu), narrow enough to leave the static pixels out."""
    sigma_floor_px: float = 0.25
    """Lower bound on sigma (pixels): a rigid translation gives sigma ~ 0, DIS noise does not."""
    sigma_floor_fraction: float = 0.15
    """Lower bound on sigma relative to |mu|: DIS errors grow with the displacement."""
    occlusion_relative: float = 0.01
    """Forward-backward check, relative term: the value of Sundaram et al. (ECCV 2010)."""
    occlusion_absolute_px2: float = 0.5
    """Forward-backward check, absolute term (squared pixels): Sundaram et al. (ECCV 2010)."""
    alpha: float = 1.5
    """Expand: neighbours with |D - mu| < alpha*sigma join (the paper's expand rule)."""
    beta: float = 3.0
    """Prune: R0 pixels with |D - mu| > beta*sigma leave; beta > alpha keeps a dead band."""
    score_lambda: float = 0.5
    """Weight of the boundary-distance term in a component's score against the anchor."""
    score_sigma_fraction: float = 0.5
    """Length scale sigma_s of the boundary-distance term, as a fraction of the anchor's size
    (square root of its area), so that a half-target R0 scores alike at 20 px and at 60 px."""
    score_threshold: float = 0.5
    """Components scoring below this are dropped: half inside the anchor and near it passes,
    a large motion-consistent area around a small anchor does not."""
    core_confidence: float = 0.9
    """Anchor pixels at or above this confidence form the anchor core united with the result."""
    close_px: int = 5
    """Side of the elliptic kernel of the final morphological closing."""
    warp_tolerance: float = 16.0
    """Grey levels: a pixel is carried by the target's displacement when frame n, read at the
    pixel moved by it, differs by less than this. This is what joins a target's uniform paint,
    where DIS under-reads the motion (a ship's hull between its hatches read 0.3 px of 4.3)."""
    colour_bins: int = 8
    """Histogram bins per RGB channel of the appearance cue: 32 grey levels a bin, coarse
    enough that R0's pixels populate the bins of the target's paint under blur and noise."""
    colour_ratio: float = 4.0
    """Appearance cue: a pixel may join only when its colour is at least 1/colour_ratio as
    frequent in R0 as in the ground around it. Flow moves a sun shadow, a ship's wake and ground
    that DIS smooths the target's motion onto with the target, but their colours are the
    ground's; 4 keeps target pixels whose grey level is common on textured ground too."""
    colour_ground_gap_px: int = 3
    """Band around R0 left out of the ground colour sample: R0's blurred boundary mixes
    target and ground colours."""
    max_removed_fraction: float = 0.2
    """Calibration that would remove more than this fraction of R0 is refused and R0 kept
    (flagged `rejected`). Chosen with `max_added_fraction` on the model card's selection split
    (48 videos, the shipped default's 95 frame-0 text starts, docs/model_card.md "TMCC's guards"):
    unguarded (0.7 and no growth limit) the calibration lowered frame-0 J from 0.442 to 0.391 (15
    starts worse, 3 better); with 0.2 and 0.5 it kept 0.442 (1 worse, 2 better). A thin train
    moving along its own axis gives DIS almost nothing to track: its pruning left 6 % IoU before
    any guard (tests/runtime/test_tmcc_synthetic.py)."""
    max_added_fraction: float = 0.5
    """Calibration that would add more than this fraction of |R0| is refused and R0 kept (flagged
    `rejected`): on the selection split the expand step grew text starts on a moving target to 2-6
    times the target's area (the flow spreads the target's displacement onto the ground around it
    and onto neighbours moving alike). `float("inf")` turns the limit off."""

    def __post_init__(self) -> None:
        checks = {
            "n0 >= 1": self.n0 >= 1,
            "dn >= 1": self.dn >= 1,
            "n_max >= n0": self.n_max >= self.n0,
            "tau_motion_px > 0": self.tau_motion_px > 0,
            "cell_px >= 1": self.cell_px >= 1,
            "beta > alpha > 0": self.beta > self.alpha > 0,
            "score_sigma_fraction > 0": self.score_sigma_fraction > 0,
            "0 < mode_band_fraction < 1": 0 < self.mode_band_fraction < 1,
            "close_px >= 1": self.close_px >= 1,
            "dis_patch_px >= dis_stride_px >= 1": self.dis_patch_px >= self.dis_stride_px >= 1,
            "dis_finest_scale >= 0": self.dis_finest_scale >= 0,
            "256 % colour_bins == 0": self.colour_bins >= 1 and 256 % self.colour_bins == 0,
            "colour_ratio >= 1": self.colour_ratio >= 1,
            "0 < max_removed_fraction <= 1": 0 < self.max_removed_fraction <= 1,
            "max_added_fraction > 0": self.max_added_fraction > 0,
            f"dis_preset in {sorted(_DIS_PRESETS)}": self.dis_preset in _DIS_PRESETS,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ConfigError(f"TMCCConfig: expected {', '.join(failed)}, got {self}")


@dataclass(frozen=True)
class TMCCResult:
    """Outcome of TMCC on one object; `mask` is what the anchor memory is encoded from."""

    mask: np.ndarray
    """bool [H, W]: the calibrated mask (R0 itself when `stationary`)."""
    window: int
    """Frames between frame 0 and the frame the flow was taken to; 0 when no flow was computed."""
    stationary: bool
    """No region of R0 moved tau_motion within the window limit (or R0 is empty): R0 kept."""
    motion_px: float
    """Largest region-mean displacement of R0 at `window` (pixels, drift-compensated)."""
    mu_px: float
    """Centre of the motion intensity D inside R0 (pixels)."""
    sigma_px: float
    """Spread of D inside R0 after the floors (pixels)."""
    drift_px: tuple[float, float]
    """Median background flow (dx, dy) subtracted from the flow; (0, 0) when not compensated."""
    added_px: int
    """Pixels in `mask` that were not in R0."""
    removed_px: int
    """Pixels of R0 that are not in `mask`."""
    roi: tuple[int, int, int, int]
    """(y0, y1, x0, x1) of the region the flow was computed on."""
    rejected: bool = False
    """The calibration would have removed more than `max_removed_fraction` of R0 or added more
    than `max_added_fraction` of it: R0 kept."""


def calibrate(
    r0: np.ndarray,
    anchor: np.ndarray,
    frames: Sequence[np.ndarray],
    config: TMCCConfig = TMCCConfig(),
) -> TMCCResult:
    """Calibrate R0 with the motion between frames[0] and frames[n], n in an adaptive window.

    `r0` is bool [H, W]; `anchor` the semantic anchor, bool [H, W] or a confidence map in [0, 1];
    `frames[0]` is the frame R0 was decoded on, the others the buffered next frames, uint8
    RGB [H, W, 3]. Fewer than n_max + 1 frames (a short video) shorten the window limit.
    """
    _check_inputs(r0, anchor, frames)
    confidence = anchor.astype(np.float32)
    if not r0.any():
        return _unchanged(r0, window=0, motion_px=0.0, drift=(0.0, 0.0), roi=(0, 0, 0, 0))
    y0, y1, x0, x1 = _roi_around(r0, config)
    crop = (slice(y0, y1), slice(x0, x1))
    r0_roi = r0[crop]
    flow_engine = _flow_engine(config)
    motion = _adaptive_window(r0_roi, [f[crop] for f in frames], flow_engine, config)
    if motion.motion_px <= config.tau_motion_px:
        return _unchanged(r0, motion.window, motion.motion_px, motion.drift_px, roi=(y0, y1, x0, x1))
    target_like = _colour_like_r0(frames[0][crop], r0_roi, config)
    mask_roi, mu, sigma = _expand_prune_score(r0_roi, confidence[crop], motion, target_like, flow_engine, config)
    mask = np.zeros_like(r0)
    mask[crop] = mask_roi
    removed, added = int((r0 & ~mask).sum()), int((mask & ~r0).sum())
    if removed > config.max_removed_fraction * r0.sum() or added > config.max_added_fraction * r0.sum():
        kept = _unchanged(r0, motion.window, motion.motion_px, motion.drift_px, roi=(y0, y1, x0, x1))
        return dataclasses.replace(kept, stationary=False, mu_px=mu, sigma_px=sigma, rejected=True)
    return TMCCResult(
        mask=mask,
        window=motion.window,
        stationary=False,
        motion_px=motion.motion_px,
        mu_px=mu,
        sigma_px=sigma,
        drift_px=motion.drift_px,
        added_px=added,
        removed_px=removed,
        roi=(y0, y1, x0, x1),
    )


def _expand_prune_score(
    r0: np.ndarray,
    confidence: np.ndarray,
    motion: _WindowMotion,
    target_like: np.ndarray,
    flow_engine: cv2.DISOpticalFlow,
    config: TMCCConfig,
) -> tuple[np.ndarray, float, float]:
    """The TMCC repair on the ROI: expand and prune by |D - mu| against alpha*sigma and beta*sigma,
    score the components against the anchor, unite with the anchor core, close and fill holes.

    Expansion and closing add only `target_like` pixels: motion alone cannot tell the target
    from its shadow or wake, nor from ground the flow smoothed its motion onto.
    Returns the calibrated ROI mask, mu and sigma.
    """
    mu, sigma = _intensity_stats(motion.intensity[r0], motion.motion_px, config)
    deviation = np.abs(motion.intensity - mu)
    outlier = deviation > config.beta * sigma
    occluded = _occluded(motion, flow_engine, config)
    agrees = (deviation < config.alpha * sigma) & ~occluded
    carried = _carried_by(motion, r0 & agrees, config.warp_tolerance)
    candidates = (agrees | carried) & target_like
    grown = _components_touching(candidates, r0 & ~outlier)
    kept = _keep_anchor_consistent(grown, confidence, config) | ((confidence >= config.core_confidence) & ~outlier)
    closed = kept | (_close(kept, config.close_px) & target_like)
    return _fill_holes(closed), mu, sigma


def _flow_engine(config: TMCCConfig) -> cv2.DISOpticalFlow:
    """DIS at the preset, with the patch and finest level refined for small targets."""
    engine = cv2.DISOpticalFlow_create(_DIS_PRESETS[config.dis_preset])
    engine.setPatchSize(config.dis_patch_px)
    engine.setPatchStride(config.dis_stride_px)
    engine.setFinestScale(config.dis_finest_scale)
    return engine


def _colour_like_r0(frame0: np.ndarray, r0: np.ndarray, config: TMCCConfig) -> np.ndarray:
    """Pixels whose colour is not much rarer in R0 than on the ground around it (appearance cue).

    Both densities are RGB histograms of frame 0 over the ROI, R0's smoothed over neighbouring
    bins so that blur and noise between the two halves of a target do not split its paint.
    """
    bins = config.colour_bins
    quantised = (frame0 // (256 // bins)).astype(np.int32)
    index = (quantised[..., 0] * bins + quantised[..., 1]) * bins + quantised[..., 2]
    gap = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * config.colour_ground_gap_px + 1,) * 2)
    ground = cv2.dilate(r0.astype(np.uint8), gap) == 0
    target_density = _max_over_neighbour_bins(_density(index[r0], bins), bins)
    ground_density = _density(index[ground], bins)
    return (config.colour_ratio * target_density >= ground_density)[index]


def _density(indices: np.ndarray, bins: int) -> np.ndarray:
    """Normalised histogram over the bins**3 colour cells."""
    counts = np.bincount(indices, minlength=bins**3).astype(np.float32)
    return counts / max(indices.size, 1)


def _max_over_neighbour_bins(density: np.ndarray, bins: int) -> np.ndarray:
    """Each colour cell takes the largest density of its 3x3x3 neighbourhood."""
    cube = np.pad(density.reshape(bins, bins, bins), 1)
    shifted = [cube[a : a + bins, b : b + bins, c : c + bins] for a in range(3) for b in range(3) for c in range(3)]
    return np.max(shifted, axis=0).ravel()


def _check_inputs(r0: np.ndarray, anchor: np.ndarray, frames: Sequence[np.ndarray]) -> None:
    """Reject inputs that do not describe one video frame, naming the array and the shapes."""
    if r0.dtype != np.bool_ or r0.ndim != 2:
        raise BadFrameError(f"TMCC R0 mask: expected bool [H, W], got {r0.dtype} {r0.shape}")
    if anchor.shape != r0.shape:
        raise BadFrameError(f"TMCC anchor: expected shape {r0.shape} (R0), got {anchor.shape}")
    if len(frames) < 2:
        raise BadFrameError(f"TMCC frames: expected frame 0 and at least 1 next frame, got {len(frames)}")
    for index, frame in enumerate(frames):
        if frame.dtype != np.uint8 or frame.shape != (*r0.shape, 3):
            raise BadFrameError(
                f"TMCC frame {index}: expected uint8 {(*r0.shape, 3)} (RGB, size of R0), "
                f"got {frame.dtype} {frame.shape}"
            )


def _unchanged(
    r0: np.ndarray, window: int, motion_px: float, drift: tuple[float, float], roi: tuple[int, int, int, int]
) -> TMCCResult:
    """R0 kept as it is: nothing moved (or nothing to calibrate), so motion cannot judge it."""
    return TMCCResult(
        mask=r0.copy(),
        window=window,
        stationary=True,
        motion_px=motion_px,
        mu_px=0.0,
        sigma_px=0.0,
        drift_px=drift,
        added_px=0,
        removed_px=0,
        roi=roi,
    )


def _roi_around(r0: np.ndarray, config: TMCCConfig) -> tuple[int, int, int, int]:
    """Bounding box of R0 grown by the margin, widened to the minimum side, kept in the frame:
    the flow runs only here, so its cost follows the target, not the frame."""
    rows, cols = np.nonzero(r0)
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    margin = max(config.roi_margin_px, int(config.roi_margin_fraction * max(y1 - y0, x1 - x0)))
    height, width = r0.shape
    rows = _grow_span(y0 - margin, y1 + margin, config.roi_min_side_px, height)
    cols = _grow_span(x0 - margin, x1 + margin, config.roi_min_side_px, width)
    return (*rows, *cols)


def _grow_span(start: int, stop: int, min_length: int, limit: int) -> tuple[int, int]:
    """Widen [start, stop) about its centre to min_length, then shift it inside [0, limit)."""
    missing = max(0, min_length - (stop - start))
    start, stop = start - missing // 2, stop + missing - missing // 2
    shift = max(0, -start) - max(0, stop - limit)
    return max(0, start + shift), min(limit, stop + shift)


@dataclass(frozen=True)
class _WindowMotion:
    """The flow at the window the search stopped at, and what was measured from it."""

    window: int
    flow: np.ndarray  # float32 [h, w, 2] over the ROI, frame 0 -> frame `window`
    gray0: np.ndarray  # uint8 [h, w] frame 0 over the ROI
    gray_window: np.ndarray  # uint8 [h, w] frame `window` over the ROI
    intensity: np.ndarray  # float32 [h, w] motion intensity D
    drift_px: tuple[float, float]
    motion_px: float


def _adaptive_window(
    r0: np.ndarray, frames: list[np.ndarray], flow_engine: cv2.DISOpticalFlow, config: TMCCConfig
) -> _WindowMotion:
    """Grow n = n0, n0+dn, ... until some region of R0 moved tau_motion (TMCC adaptive window).

    When nothing moved within the limit, the measurements of the last window tried come back.
    """
    gray0 = cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY)
    last = min(config.n_max, len(frames) - 1)
    windows = list(range(min(config.n0, last), last + 1, config.dn))
    if windows[-1] != last:
        windows.append(last)
    for window in windows:
        gray_window = cv2.cvtColor(frames[window], cv2.COLOR_RGB2GRAY)
        flow = flow_engine.calc(gray0, gray_window, None)
        intensity, drift = _motion_intensity(flow, r0, config)
        motion = _largest_region_motion(intensity, r0, config)
        if motion > config.tau_motion_px:
            break
    return _WindowMotion(window, flow, gray0, gray_window, intensity, drift, motion)


def _occluded(motion: _WindowMotion, flow_engine: cv2.DISOpticalFlow, config: TMCCConfig) -> np.ndarray:
    """Pixels whose forward and backward flow do not cancel: mostly ground the target covers.

    DIS fills such pixels with the target's displacement, so without this test the expansion
    would grow R0 by a band as wide as the displacement in front of the target. The test is the
    forward-backward check of Sundaram, Brox and Keutzer (ECCV 2010): occluded when
    |f + b|^2 > k_rel (|f|^2 + |b|^2) + k_abs, b the backward flow at x + f(x).
    """
    backward = flow_engine.calc(motion.gray_window, motion.gray0, None)
    height, width = motion.gray0.shape
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    forward = motion.flow
    back_at_target = cv2.remap(
        backward, grid_x + forward[..., 0], grid_y + forward[..., 1], cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mismatch = np.square(forward + back_at_target).sum(axis=2)
    scale = np.square(forward).sum(axis=2) + np.square(back_at_target).sum(axis=2)
    return mismatch > config.occlusion_relative * scale + config.occlusion_absolute_px2


def _carried_by(motion: _WindowMotion, target_pixels: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels that the target's displacement (median flow over `target_pixels`) explains within
    `tolerance` grey levels and at least as well as the drift does: brightness constancy under
    one rigid translation, sharp at the outline where DIS smooths, and, ties included, defined
    in uniform paint, where static textured ground still prefers the drift."""
    if not target_pixels.any():
        return np.zeros_like(target_pixels)
    moved = _residual(motion, np.median(motion.flow[target_pixels], axis=0))
    static = _residual(motion, np.asarray(motion.drift_px))
    return (moved < tolerance) & (moved <= static)


def _residual(motion: _WindowMotion, displacement: np.ndarray) -> np.ndarray:
    """|frame n at x + displacement - frame 0 at x| in grey levels, bilinear."""
    shift = np.float32([[1, 0, displacement[0]], [0, 1, displacement[1]]])
    height, width = motion.gray0.shape
    moved = cv2.warpAffine(
        motion.gray_window, shift, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.abs(moved.astype(np.int16) - motion.gray0.astype(np.int16))


def _motion_intensity(
    flow: np.ndarray, r0: np.ndarray, config: TMCCConfig
) -> tuple[np.ndarray, tuple[float, float]]:
    """Motion intensity map D = |flow - drift| over the ROI, drift the median background flow."""
    drift = np.zeros(2, np.float32)
    if config.compensate_drift:
        band = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * config.drift_exclusion_px + 1,) * 2)
        background = cv2.dilate(r0.astype(np.uint8), band) == 0
        if background.sum() >= config.drift_min_pixels:
            drift = np.median(flow[background], axis=0)
    intensity = np.linalg.norm(flow - drift, axis=2)
    return intensity, (float(drift[0]), float(drift[1]))


def _largest_region_motion(intensity: np.ndarray, r0: np.ndarray, config: TMCCConfig) -> float:
    """Largest mean of D over the square cells mostly covered by R0 ('some region of R0').

    Cells rather than all of R0, so that a target sharing R0 with a static look-alike still
    triggers; R0 too small to cover any cell is taken as one region.
    """
    cell = config.cell_px
    height, width = r0.shape
    rows, cols = -(-height // cell) * cell, -(-width // cell) * cell
    weights = np.zeros((rows, cols), np.float64)
    weights[:height, :width] = r0
    values = np.zeros((rows, cols), np.float64)
    values[:height, :width] = intensity * r0
    counts = weights.reshape(rows // cell, cell, cols // cell, cell).sum(axis=(1, 3))
    sums = values.reshape(rows // cell, cell, cols // cell, cell).sum(axis=(1, 3))
    covered = counts >= config.cell_min_fraction * cell * cell
    if not covered.any():
        return float(intensity[r0].mean())
    return float((sums[covered] / counts[covered]).max())


def _intensity_stats(values: np.ndarray, region_motion: float, config: TMCCConfig) -> tuple[float, float]:
    """mu, sigma of D inside R0 (TMCC expand/prune statistics), sigma floored against DIS noise.

    Robust statistics are taken on the moving mode around `region_motion`, the fastest region's
    mean D: TMCC reached this point because that region moved, so the target is the mover.
    """
    if config.robust_stats:
        moving = values[np.abs(values - region_motion) < config.mode_band_fraction * region_motion]
        values = moving if moving.size else values
        mu = float(np.median(values))
        sigma = 1.4826 * float(np.median(np.abs(values - mu)))
    else:
        mu, sigma = float(values.mean()), float(values.std())
    return mu, max(sigma, config.sigma_floor_px, config.sigma_floor_fraction * abs(mu))


def _components_touching(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Seeds plus the 8-connected candidate pixels linked to them (TMCC expand)."""
    count, labels = cv2.connectedComponents((candidates | seeds).astype(np.uint8), connectivity=8)
    touching = np.zeros(count, bool)
    touching[labels[seeds]] = True
    touching[0] = False
    return touching[labels]


def _keep_anchor_consistent(mask: np.ndarray, confidence: np.ndarray, config: TMCCConfig) -> np.ndarray:
    """Keep components with overlap + lambda*exp(-d/sigma_s) >= threshold (TMCC component score).

    overlap is the mean anchor confidence over the component; d the mean distance of its pixels
    to the anchor region (0 inside it), so a component far out of the anchor scores low;
    sigma_s scales with the anchor's size.
    """
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    outside_anchor = (confidence < 0.5).astype(np.uint8)
    distance = cv2.distanceTransform(outside_anchor, cv2.DIST_L2, 5)
    anchor_area = outside_anchor.size - int(outside_anchor.sum())
    sigma_s = max(1.0, config.score_sigma_fraction * float(np.sqrt(anchor_area)))
    sizes = np.maximum(np.bincount(labels.ravel(), minlength=count), 1).astype(np.float64)
    overlap = np.bincount(labels.ravel(), weights=confidence.ravel(), minlength=count) / sizes
    mean_distance = np.bincount(labels.ravel(), weights=distance.ravel(), minlength=count) / sizes
    score = overlap + config.score_lambda * np.exp(-mean_distance / sigma_s)
    keep = score >= config.score_threshold
    keep[0] = False
    return keep[labels]


def _close(mask: np.ndarray, size: int) -> np.ndarray:
    """Morphological closing: bridges the one-pixel cracks that flow noise leaves in a mover."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: a textureless patch inside a target has no flow but belongs to it."""
    padded = np.pad(mask, 1).astype(np.uint8)
    outside = padded.copy()
    cv2.floodFill(outside, None, (0, 0), 1)
    return (padded | (outside == 0))[1:-1, 1:-1].astype(bool)
