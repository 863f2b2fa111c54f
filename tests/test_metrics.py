"""Metrics against hand-computed values on small known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lpi_core.metrics import (
    ablation_drop,
    bootstrap_interval,
    jaccard,
    knowledge_onset,
    pearson,
    pearson_rows,
    positive_gain_concentration,
    random_set_jaccard,
    ranks,
    resample_weights,
    resampled_means,
    rho_avg,
    sigma_rel,
    spearman,
    top_fraction,
    topk_jaccard,
)


def test_top_fraction_uses_absolute_scores():
    scores = torch.tensor([0.1, -5.0, 3.0, 0.0, 2.0, -0.5, 0.2, 0.3, 0.4, 0.6])
    assert set(top_fraction(scores, 0.2).tolist()) == {1, 2}
    assert top_fraction(scores, 0.001).tolist() == [1]  # at least one unit


def test_jaccard_by_hand():
    assert jaccard(torch.tensor([1, 2, 3]), torch.tensor([2, 3, 4, 5])) == pytest.approx(2 / 5)
    a = torch.tensor([0.0, 9.0, 8.0, 1.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0])
    b = torch.tensor([9.0, 8.0, 0.0, 0.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0])
    assert topk_jaccard(a, b, 0.3) == pytest.approx(2 / 4)  # {1,2,6} vs {0,1,6}


def test_random_set_control_matches_simulation():
    assert random_set_jaccard(1000) == pytest.approx(10 / 1990)
    generator = torch.Generator().manual_seed(0)
    sims = [
        jaccard(torch.randperm(1000, generator=generator)[:10], torch.randperm(1000, generator=generator)[:10])
        for _ in range(4000)
    ]
    assert sum(sims) / len(sims) == pytest.approx(random_set_jaccard(1000), rel=0.15)


def test_positive_gain_concentration_by_hand():
    previous = torch.zeros(2, 100)
    current = torch.zeros(2, 100)
    current[0, :10] = 1.0  # layer 0: gain 10 spread over 10 units; top-1 holds 1/10
    current[1, 0], current[1, 1] = 3.0, 1.0  # layer 1: top-1 holds 3/4
    current[1, 2] = -5.0  # losses are no gains
    assert positive_gain_concentration(previous, current) == pytest.approx((0.1 + 0.75) / 2)
    assert math.isnan(positive_gain_concentration(current, current))


def test_rho_avg_and_sigma_rel_by_hand():
    p1, p2, p3 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0]), torch.tensor([3.0, 2.0, 1.0])
    assert rho_avg([p1, p2, p3]) == pytest.approx((1.0 + -1.0) / 2)
    # layer means 2, 8/3, 10/3; population stds sqrt(2/3), sqrt(8/9), sqrt(38/9)
    expected = (math.sqrt(2 / 3) / 2 + math.sqrt(8 / 9) / (8 / 3) + math.sqrt(38 / 9) / (10 / 3)) / 3
    assert sigma_rel([p1, p2, p3]) == pytest.approx(expected)


def test_ablation_drop_and_bootstrap():
    assert ablation_drop(0.5, 0.45) == pytest.approx(10.0)
    assert math.isnan(ablation_drop(0.0, 0.0))
    low, high = bootstrap_interval(list(range(101)))
    assert (low, high) == pytest.approx((2.5, 97.5))
    weights = resample_weights(7, 5, seed=1)
    assert weights.shape == (5, 7) and (weights.sum(1) == 7).all()
    assert torch.equal(weights, resample_weights(7, 5, seed=1))


def test_resampled_means_by_hand_and_whatever_the_thread_count():
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    counts = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    expected = torch.tensor([[1.0, 10.0], [7 / 3, 70 / 3], [10 / 3, 100 / 3]])
    torch.testing.assert_close(resampled_means(x, counts), expected)

    per_example = torch.randn(906, 16, 384, generator=torch.Generator().manual_seed(0))
    counts = resample_weights(906, 20)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = resampled_means(per_example, counts)
        torch.set_num_threads(2)
        two = resampled_means(per_example, counts)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two) and one.shape == (20, 16, 384)
    torch.testing.assert_close(one, (counts / 906 @ per_example.reshape(906, -1)).reshape(20, 16, 384))


def test_ranks_and_spearman_by_hand():
    assert ranks(torch.tensor([10.0, 30.0, 20.0, 10.0])).tolist() == [1.5, 4.0, 3.0, 1.5]
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    assert spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 8.0, 27.0, 64.0])) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, -5.0, -9.0])) == pytest.approx(-1.0)


def test_knowledge_onset_on_a_hand_made_trajectory():
    steps = [10, 20, 30, 40, 50, 60]
    hit = [0.01, 0.02, 0.20, 0.31, 0.45, 0.61]  # final gain over chance 0.01: 0.60, half of it: 0.30
    assert knowledge_onset(steps, hit, chance=0.01) == 40  # 0.31 - 0.01 >= 0.30; 0.20 is not
    assert knowledge_onset(steps, [0.5, 0.55, 0.6, 0.6, 0.6, 0.6], chance=0.01) == 10  # competent from the start
    assert knowledge_onset(steps, [0.01] * 6, chance=0.01) is None  # never learned
    assert knowledge_onset(steps, [0.01, 0.3, 0.05, 0.1, 0.2, 0.21], chance=0.01) == 20  # the first crossing


def test_a_profile_constant_up_to_rounding_has_no_correlation():
    # 0.1 six times: its mean is not exactly 0.1 in binary, so the centred values are rounding residues
    flat, other = torch.full((6,), 0.1, dtype=torch.float64), torch.arange(6.0, dtype=torch.float64)
    assert math.isnan(pearson(flat, other)) and math.isnan(pearson(other, flat))
    rows = pearson_rows(np.stack([flat.numpy(), other.numpy()]), np.stack([other.numpy(), 2 * other.numpy() + 1]))
    assert math.isnan(rows[0]) and rows[1] == pytest.approx(1.0)
    assert math.isnan(rho_avg([flat, flat, flat]))
