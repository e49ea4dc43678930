"""DAMI gate mechanism tests: innovation, confidence maps, ambiguity, robustness."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mqc_edge.errors import ConfigError, ManifestMismatchError
from mqc_edge.runtime.mqc import gates
from mqc_edge.runtime.mqc.gates import GateConfig


def _features(rng: np.random.Generator, shape: tuple[int, ...] = (8, 8, 16)) -> np.ndarray:
    return rng.normal(0.0, 1.0, shape).astype(np.float32)


def test_repeated_features_never_register_and_a_change_does() -> None:
    config = GateConfig()
    state = gates.new_innovation_state(config)
    rng = np.random.default_rng(0)
    for _ in range(20):  # a varied start, so that the percentile has a real history
        gates.update_innovation_gate(state, _features(rng), config)
    repeated = _features(rng)
    state = gates.new_innovation_state(config, reference=repeated)
    decisions = [gates.update_innovation_gate(state, repeated, config) for _ in range(50)]
    assert not any(d.register for d in decisions)
    assert all(d.score == 0.0 for d in decisions)
    changed = gates.update_innovation_gate(state, repeated + 0.5, config)
    assert changed.register and changed.score == pytest.approx(0.5)


def test_after_warmup_repeats_stop_registering_in_a_varied_stream() -> None:
    """A frame seen again after the stream moved on is news once, then no longer."""
    config = GateConfig()
    state = gates.new_innovation_state(config)
    rng = np.random.default_rng(1)
    for _ in range(40):
        gates.update_innovation_gate(state, _features(rng), config)
    repeated = _features(rng) + 3.0  # clearly unlike the stream so far
    decisions = [gates.update_innovation_gate(state, repeated, config) for _ in range(30)]
    assert decisions[0].register
    assert not any(d.register for d in decisions[5:])


def test_steady_stream_registers_about_the_percentile_complement() -> None:
    config = GateConfig(innovation_percentile=70.0, innovation_history=64)
    state = gates.new_innovation_state(config)
    rng = np.random.default_rng(2)
    decisions = [gates.update_innovation_gate(state, _features(rng), config) for _ in range(400)]
    rate = np.mean([d.register for d in decisions[config.innovation_warmup + 1 :]])
    assert 0.15 < rate < 0.45
    assert state.history.shape == (64,) and state.seen == 399


def test_innovation_score_does_not_care_about_the_feature_layout() -> None:
    for shape in [(256,), (16, 16, 32), (1, 64, 64, 8)]:
        reference = np.zeros(shape, np.float32)
        assert gates.innovation_score(reference + 0.25, reference) == pytest.approx(0.25)


def test_innovation_shape_change_is_named() -> None:
    state = gates.new_innovation_state(reference=np.zeros((8, 8, 16)))
    with pytest.raises(ManifestMismatchError, match=r"\(8, 8, 16\).*\(4, 4, 16\)"):
        gates.update_innovation_gate(state, np.zeros((4, 4, 16)))


def test_confidence_maps_are_finite_and_ordered_for_extreme_logits() -> None:
    logits = np.array([-1e4, -20.0, -2.0, 0.0, 2.0, 20.0, 1e4], np.float32)
    probability = gates.foreground_probability(logits)
    uncertainty = gates.uncertainty_map(logits)
    assert np.all(np.isfinite(probability)) and np.all(np.isfinite(uncertainty))
    assert np.all(np.diff(probability) >= 0) and np.all(np.diff(probability[1:-1]) > 0)
    assert probability[3] == pytest.approx(0.5) and uncertainty[3] == pytest.approx(1.0)
    assert uncertainty[0] == pytest.approx(0.0, abs=1e-6) and uncertainty[-1] == pytest.approx(0.0, abs=1e-6)
    moderate = logits[1:-1].astype(np.float64)
    assert probability[1:-1] == pytest.approx(1.0 / (1.0 + np.exp(-moderate)), rel=1e-5)
    p = probability[2]
    assert uncertainty[2] == pytest.approx(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)), rel=1e-4)


def test_bernoulli_kl_matches_the_probability_formula() -> None:
    p_logits = np.array([-3.0, -0.5, 0.0, 1.0, 4.0])
    q_logits = np.array([2.0, 0.5, 0.0, -1.0, 3.0])
    p, q = 1 / (1 + np.exp(-p_logits)), 1 / (1 + np.exp(-q_logits))
    expected = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    assert gates.bernoulli_kl(p_logits, q_logits) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert gates.bernoulli_kl(p_logits, p_logits) == pytest.approx(np.zeros(5), abs=1e-12)


def _blob(top: int, left: int, side: int = 12, size: int = 64) -> np.ndarray:
    """Logits of a confident square mask: +6 inside, -6 outside."""
    logits = np.full((size, size), -6.0, np.float32)
    logits[top : top + side, left : left + side] = 6.0
    return logits


def test_ambiguity_fires_for_hypotheses_on_two_lookalikes() -> None:
    hypotheses = np.stack([_blob(10, 10), _blob(10, 40), _blob(10, 10, side=30)])
    result = gates.assess_ambiguity(hypotheses, np.array([0.81, 0.80, 0.40]))
    assert result.ambiguous and result.best == 0
    assert result.divergence > GateConfig().tau_amb


def test_ambiguity_stays_quiet_for_near_identical_hypotheses() -> None:
    hypotheses = np.stack([_blob(10, 10), _blob(10, 11)])
    result = gates.assess_ambiguity(hypotheses, np.array([0.80, 0.81]))
    assert not result.ambiguous and result.best == 1
    assert result.divergence < GateConfig().tau_amb


def test_ambiguity_needs_the_decoder_in_doubt() -> None:
    hypotheses = np.stack([_blob(10, 10), _blob(10, 40)])
    result = gates.assess_ambiguity(hypotheses, np.array([0.95, 0.50]))
    assert not result.ambiguous and result.divergence > GateConfig().tau_amb


def test_ambiguity_rejects_a_single_hypothesis() -> None:
    with pytest.raises(ManifestMismatchError, match=r"K>=2"):
        gates.assess_ambiguity(_blob(10, 10)[None], np.array([0.9]))


def test_robustness_rewards_a_stable_confident_lookalike_of_the_anchor() -> None:
    rng = np.random.default_rng(3)
    anchor = _features(rng, (256,))
    logits = _blob(10, 10)
    area = int((logits > 0).sum())
    good = gates.robustness_score(anchor + 0.1 * _features(rng, (256,)), anchor, logits, area)
    steady = gates.robustness_score(anchor, anchor, logits, area)
    jumped = gates.robustness_score(anchor, anchor, logits, 3 * area)
    unlike = gates.robustness_score(-anchor, anchor, logits, area)
    unsure = gates.robustness_score(anchor, anchor, logits / 12.0, area)
    assert good > GateConfig().tau_reg
    assert jumped == pytest.approx(steady / 3)
    assert unlike == pytest.approx(0.0, abs=1e-6)
    assert unsure < good


def test_prototype_registration_needs_ambiguity_and_robustness() -> None:
    ambiguous = gates.assess_ambiguity(np.stack([_blob(10, 10), _blob(10, 40)]), np.array([0.8, 0.8]))
    clear = gates.assess_ambiguity(np.stack([_blob(10, 10), _blob(10, 10)]), np.array([0.8, 0.8]))
    assert gates.should_register_prototype(ambiguous, 0.9)
    assert not gates.should_register_prototype(ambiguous, 0.2)
    assert not gates.should_register_prototype(clear, 0.9)


def test_config_rejects_out_of_range_values() -> None:
    with pytest.raises(ConfigError, match="eta"):
        GateConfig(eta=0.0)


def test_imports_without_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import mqc_edge.runtime.mqc.gates"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
