"""DAMI quality gates: whether a frame is written into a memory bank, and into which
(DESIGN section 5 step 4).

Memory that stores every frame also stores every drift and every confusion with a look-alike;
these gates keep the short-term bank for frames that bring something new and the prototype bank
for frames segmented well while the decoder was in doubt. They only decide: where a frame goes
in a bank and what it evicts is the bank's (runtime/mqc/dami_memory.py), and the memory encoder
stage weights a write by sigmoid(logits), as SAM 2 does. Torch-free and shape-agnostic: the
features are the small summaries the stage graphs hand out (pooled [C] or low-resolution
[h, w, C]); the torch pipeline and training call the same functions on detached values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mqc_edge.errors import ConfigError, ManifestMismatchError

_LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the DAMI gates. The paper's numeric values were not available to us; each
    default is our choice, with the reason beside it."""

    eta: float = 0.5
    """Weight of the newest short-term entry in the reference f_hat: with 6 FIFO slots the oldest
    keeps 1.6 % of the weight, so f_hat is close to the exact weighted mean of the FIFO."""
    innovation_percentile: float = 70.0
    """Register when G exceeds this percentile of recent G: in steady footage about 30 % of the
    frames are written, so 6 short-term slots span ~20 frames instead of SAM 2's 6."""
    innovation_history: int = 64
    """How many recent G values the percentile is taken over (a ring buffer, see below)."""
    innovation_warmup: int = 8
    """Below this many G values the percentile is not trusted; only `innovation_floor` applies,
    so the empty FIFO fills with the first distinct frames."""
    innovation_floor: float = 1e-6
    """G at or below this never registers: a repeated frame is not news, whatever the history."""
    tau_amb: float = 1.0
    """Ambiguous when the top-2 hypotheses' mean symmetric KL over their support exceeds this
    (nats): masks of two different objects at logits +-3 give 2.7, a 1 px shift of a 20 px
    square 0.26, so 1 nat separates a different object from a boundary disagreement."""
    tau_score_gap: float = 0.15
    """...and their predicted IoUs differ by less than this: the decoder cannot prefer one."""
    tau_reg: float = 0.5
    """A frame under ambiguity enters the prototype bank when its robustness score exceeds this."""

    def __post_init__(self) -> None:
        checks = {
            "0 < eta <= 1": 0 < self.eta <= 1,
            "0 <= innovation_percentile <= 100": 0 <= self.innovation_percentile <= 100,
            "innovation_history >= 1": self.innovation_history >= 1,
            "innovation_warmup >= 0": self.innovation_warmup >= 0,
            "tau_amb >= 0": self.tau_amb >= 0,
            "tau_score_gap >= 0": self.tau_score_gap >= 0,
            "0 <= tau_reg <= 1": 0 <= self.tau_reg <= 1,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ConfigError(f"GateConfig: expected {', '.join(failed)}, got {self}")


# ---------------------------------------------------------------- innovation gate


@dataclass
class InnovationGateState:
    """Per-object state of the innovation gate; bounded: one feature summary and a G ring.

    The running percentile is taken over a fixed window of the latest G values rather than a
    streaming quantile estimator (P-square): the window is exact, costs 64 floats, and forgets,
    so the threshold follows a video whose activity changes, where P-square would converge to
    the quantile of the whole past.
    """

    history: np.ndarray
    """float64 [innovation_history]: ring buffer of recent G values."""
    seen: int = 0
    """How many G values were pushed (the ring is full once seen >= its length)."""
    reference: np.ndarray | None = field(default=None)
    """f_hat: exponentially weighted mean of the features written to the FIFO; None until the first."""


@dataclass(frozen=True)
class InnovationDecision:
    """What the innovation gate decided for one frame, for the tracker's flags and logs."""

    register: bool
    score: float
    """G_t; +inf for the first frame of an object (nothing to compare with)."""
    threshold: float
    """The threshold G_t was compared with."""


def new_innovation_state(
    config: GateConfig = GateConfig(), reference: np.ndarray | None = None
) -> InnovationGateState:
    """A gate for a new object; `reference` seeds f_hat (frame 0's summary, whose memory is the
    anchor rather than a FIFO entry), else the first updated frame becomes it."""
    seed = None if reference is None else reference.astype(np.float64)
    return InnovationGateState(history=np.zeros(config.innovation_history, np.float64), reference=seed)


def innovation_score(features: np.ndarray, reference: np.ndarray) -> float:
    """G_t = mean over positions of |f_t - f_hat_t| (DAMI innovation), |.| the channel-mean L1.

    The mean over every element is the mean over positions of the per-position channel mean,
    so the same formula serves a pooled [C] and a map [h, w, C].
    """
    if features.shape != reference.shape:
        raise ManifestMismatchError(
            f"innovation features: expected shape {reference.shape} (as on this object's first "
            f"frame), got {features.shape}; the stage graphs changed within one video"
        )
    return float(np.mean(np.abs(features.astype(np.float64) - reference)))


def innovation_threshold(state: InnovationGateState, config: GateConfig) -> float:
    """The running percentile of the G history, or the floor alone during warm-up."""
    if state.seen < max(config.innovation_warmup, 1):
        return config.innovation_floor
    recent = state.history[: min(state.seen, state.history.size)]
    return max(float(np.percentile(recent, config.innovation_percentile)), config.innovation_floor)


def update_innovation_gate(
    state: InnovationGateState, features: np.ndarray, config: GateConfig = GateConfig()
) -> InnovationDecision:
    """Decide whether this frame goes to the short-term FIFO; record G; fold a written frame
    into f_hat (f_hat <- (1 - eta) f_hat + eta f_t). Without a seeded f_hat, the first frame
    registers and becomes it."""
    if state.reference is None:
        state.reference = features.astype(np.float64)
        return InnovationDecision(register=True, score=float("inf"), threshold=config.innovation_floor)
    score = innovation_score(features, state.reference)
    threshold = innovation_threshold(state, config)
    state.history[state.seen % state.history.size] = score
    state.seen += 1
    register = score > threshold
    if register:
        state.reference = (1.0 - config.eta) * state.reference + config.eta * features
    return InnovationDecision(register=register, score=score, threshold=threshold)


# ---------------------------------------------------------------- confidence


def foreground_probability(logits: np.ndarray) -> np.ndarray:
    """sigmoid(logits), computed without overflow for the +-1e4 logits of empty SAM outputs."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))).astype(np.float32)


def uncertainty_map(logits: np.ndarray) -> np.ndarray:
    """Pixel-wise binary entropy of the decoder, normalised to [0, 1] (CroBIM-U uncertainty).

    H(p) = softplus(x) - x p for p = sigmoid(x), exact and overflow-free in the logit x.
    """
    x = logits.astype(np.float64)
    probability = 0.5 * (1.0 + np.tanh(0.5 * x))
    entropy = np.logaddexp(0.0, x) - x * probability
    return np.clip(entropy / _LN2, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- ambiguity and prototypes


@dataclass(frozen=True)
class Ambiguity:
    """The ambiguity check of one frame: the top-2 decoder hypotheses compared."""

    ambiguous: bool
    divergence: float
    """Mean symmetric KL (nats) between the top-2 hypotheses over the union of their masks."""
    score_gap: float
    """Predicted IoU of the best hypothesis minus that of the second."""
    best: int
    """Index of the hypothesis with the highest predicted IoU."""


def bernoulli_kl(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """Per-pixel KL(Bern(sigmoid(p)) || Bern(sigmoid(q))) in nats, exact in the logits.

    With log sigmoid(x) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x), the KL is
    s_p (softplus(-q) - softplus(-p)) + (1 - s_p) (softplus(q) - softplus(p)).
    """
    p, q = logits_p.astype(np.float64), logits_q.astype(np.float64)
    s_p = 0.5 * (1.0 + np.tanh(0.5 * p))
    return s_p * (np.logaddexp(0.0, -q) - np.logaddexp(0.0, -p)) + (1.0 - s_p) * (
        np.logaddexp(0.0, q) - np.logaddexp(0.0, p)
    )


def assess_ambiguity(
    multimask_logits: np.ndarray, iou_scores: np.ndarray, config: GateConfig = GateConfig()
) -> Ambiguity:
    """Ambiguous when the top-2 multimask hypotheses differ and the decoder cannot choose.

    DESIGN writes "KL below tau_amb"; taken literally that flags two near-identical hypotheses,
    where the choice does not matter, and passes two masks on two look-alikes. We read it as:
    symmetric KL over the hypotheses' support above tau_amb (they segment different things)
    while their predicted IoUs are within tau_score_gap (the decoder is in doubt). The KL is
    averaged over the union of the two masks, not the frame, so a small target counts as much
    as a large one. `multimask_logits` is [K, h, w] with K >= 2, `iou_scores` [K].
    """
    count = multimask_logits.shape[0] if multimask_logits.ndim == 3 else 0
    if count < 2 or iou_scores.shape != (count,):
        raise ManifestMismatchError(
            f"mask decoder outputs: expected multimask logits [K>=2, h, w] and IoU scores [K], "
            f"got {multimask_logits.shape} and {iou_scores.shape}"
        )
    second, best = np.argsort(iou_scores, kind="stable")[-2:]
    logits_best, logits_second = multimask_logits[best], multimask_logits[second]
    support = (logits_best > 0) | (logits_second > 0)
    if support.any():
        forward, backward = bernoulli_kl(logits_best, logits_second), bernoulli_kl(logits_second, logits_best)
        symmetric = 0.5 * (forward + backward)
        divergence = float(symmetric[support].mean())
    else:
        divergence = 0.0
    score_gap = float(iou_scores[best] - iou_scores[second])
    ambiguous = divergence > config.tau_amb and score_gap < config.tau_score_gap
    return Ambiguity(ambiguous=ambiguous, divergence=divergence, score_gap=score_gap, best=int(best))


def robustness_score(
    features: np.ndarray, anchor_features: np.ndarray, logits: np.ndarray, previous_area: int | None
) -> float:
    """s_t = S_robust(features, confidence, area change), a fixed formula in [0, 1]:

    s_t = similarity * certainty * stability, where similarity = (1 + cos(f_t, f_anchor)) / 2
    (the frame still looks like the anchored target), certainty = 1 - mean normalised entropy
    over the predicted mask (the decoder is sure where it put the object), stability =
    min(A_t, A_prev) / max(A_t, A_prev) (the area did not jump; 1 without a previous area).
    A product, so that one bad factor is enough to keep a frame out of the prototype bank.
    The learnable scorer of later training replaces this formula on the torch side.
    """
    return _similarity(features, anchor_features) * _certainty(logits) * _stability(logits, previous_area)


def _similarity(features: np.ndarray, anchor_features: np.ndarray) -> float:
    """(1 + cosine) / 2 of the flattened summaries; 0 for an all-zero summary."""
    if features.shape != anchor_features.shape:
        raise ManifestMismatchError(
            f"robustness features: expected shape {anchor_features.shape} (anchor), got {features.shape}"
        )
    a, b = features.ravel().astype(np.float64), anchor_features.ravel().astype(np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if norms == 0.0 else 0.5 * (1.0 + float(a @ b) / norms)


def _certainty(logits: np.ndarray) -> float:
    """1 - mean normalised entropy over the predicted foreground; 0 for an empty prediction."""
    foreground = logits > 0
    return float(1.0 - uncertainty_map(logits)[foreground].mean()) if foreground.any() else 0.0


def _stability(logits: np.ndarray, previous_area: int | None) -> float:
    """Ratio of the smaller to the larger of this and the previous foreground area."""
    area = int((logits > 0).sum())
    if previous_area is None:
        return 1.0
    larger = max(area, previous_area)
    return 1.0 if larger == 0 else min(area, previous_area) / larger


def should_register_prototype(
    ambiguity: Ambiguity, robustness: float, config: GateConfig = GateConfig()
) -> bool:
    """A frame joins the prototype bank when it was ambiguous and still robustly segmented:
    such frames show the target next to what it can be confused with (DAMI prototypes)."""
    return ambiguity.ambiguous and robustness > config.tau_reg
