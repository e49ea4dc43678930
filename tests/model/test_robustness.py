"""S_robust: bounded score, confidence statistics that mean what they say, trainable."""

from __future__ import annotations

import torch

from mqc_edge.model.robustness import RobustnessScorer, confidence_statistics


def test_confidence_statistics_of_known_maps():
    certain_object = torch.full((1, 1, 4, 4), 20.0)
    half = torch.cat([torch.full((1, 1, 2, 4), 20.0), torch.full((1, 1, 2, 4), -20.0)], dim=2)
    undecided = torch.zeros(1, 1, 4, 4)  # p = 0.5 everywhere
    stats = confidence_statistics(torch.cat([certain_object, half, undecided]))
    certainty, foreground_confidence, area, uncertain = stats.T
    assert torch.allclose(certainty, torch.tensor([1.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(foreground_confidence, torch.tensor([1.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(area, torch.tensor([1.0, 0.5, 0.0]))
    assert torch.allclose(uncertain, torch.tensor([0.0, 0.0, 1.0]))


def test_score_is_in_unit_interval_per_frame_and_trainable():
    torch.manual_seed(0)
    scorer = RobustnessScorer(feature_dim=256, hidden_dim=16)
    features = torch.randn(3, 256, 8, 8) * 50
    logits = torch.randn(3, 1, 32, 32) * 10
    score = scorer(features, logits, torch.tensor([0.0, 0.5, 10.0]))
    assert score.shape == (3,)
    assert ((score >= 0) & (score <= 1)).all()
    score.sum().backward()
    assert scorer.mlp[0].weight.grad.abs().sum() > 0


def test_area_change_moves_the_score():
    torch.manual_seed(0)
    scorer = RobustnessScorer(feature_dim=256, hidden_dim=16).eval()
    features, logits = torch.randn(1, 256, 8, 8), torch.randn(1, 1, 32, 32)
    steady = scorer(features, logits, torch.tensor([0.0]))
    jumped = scorer(features, logits, torch.tensor([5.0]))
    assert steady.item() != jumped.item()
