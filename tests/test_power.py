"""What an inconclusive check needs (seeds for 80% power), the p-value the verdict rule implies, and Holm over a
run, whose adjusted verdict decides."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t as student_t

from claims.catalogue.evaluate import CheckResult, ClaimResult
from claims.catalogue.multiplicity import adjust, holm
from claims.statistics.intervals import Estimate, interval, one_sided_p, seeds_needed
from claims.statistics.verdicts import INCONCLUSIVE, NOT_MEASURED, NOT_REPLICATED, REPLICATED, verdict


def _estimate(point: float, replicates, seed_points=None, example_means=None) -> Estimate:
    seeds = None if seed_points is None else np.asarray(seed_points, dtype=float)
    rows = None if example_means is None else np.asarray(example_means, dtype=float)
    return Estimate(point, np.asarray(replicates, dtype=float), [1, 2], seed_points=seeds, example_means=rows)


def test_seeds_needed_where_the_seed_spread_sets_the_width():
    # 3 seeds at 0, 1, 2 (mean 1, sd 1), examples noise nil: 80% power once (t_{0.975,n-1} + t_{0.8,n-1}) / √n ≤ 1
    # (the gap to 0): n = 9 gives (2.306 + 0.889) / 3 = 1.065, n = 10 gives (2.262 + 0.883) / 3.162 = 0.995
    estimate = _estimate(1.0, np.full(1000, 1.0), [0.0, 1.0, 2.0])
    assert verdict(">", 0.0, interval(estimate, False)) == INCONCLUSIVE
    assert seeds_needed(estimate, False, 0.0) == 10
    assert (
        seeds_needed(_estimate(-1.0, np.full(1000, -1.0), [-2.0, -1.0, 0.0]), False, 0.0) == 10
    )  # the other side alike


def test_seeds_needed_where_the_examples_set_the_width():
    # bootstrap replicates: 2.5% percentile 0.5 below the point 1.0 (standard error 0.5 / 1.96 = 0.2551);
    # threshold 0.8 (gap 0.2); seeds nearly equal; no shared example part given: the error shrinks as √(3 / n):
    # n = 40 gives (2.023 + 0.851) · 0.2551 · √(3/40) = 0.2008, n = 41 gives (2.021 + 0.851) · 0.0690 = 0.1982 ≤ 0.2
    replicates = np.array([0.5] * 50 + [1.0] * 900 + [1.5] * 50)
    estimate = _estimate(1.0, replicates, [0.99, 1.0, 1.01])
    assert verdict(">", 0.8, interval(estimate, False)) == INCONCLUSIVE
    assert seeds_needed(estimate, False, 0.8) == 41


def test_more_seeds_cannot_average_away_the_examples_every_seed_shares():
    # the seeds' mean varies over example resamples with sd 0.2: (1.96 + 0.84) · 0.2 = 0.56 ≥ the gap 0.5
    rows = 1.0 + 0.2 * np.random.default_rng(0).standard_normal(4000)
    rows = 1.0 + 0.2 * (rows - rows.mean()) / rows.std(ddof=1)
    estimate = _estimate(1.0, rows, [0.99, 1.0, 1.01], example_means=rows)
    assert seeds_needed(estimate, False, 0.5) == "not by seeds"
    # gap 0.6: the t quantiles must come down to 0.6 / √(0.01² / n + 0.2²) ≈ 3.0: n = 15 gives (2.145 + 0.868) · 0.2
    # = 0.603, n = 16 gives (2.131 + 0.866) · 0.2 = 0.599
    assert seeds_needed(estimate, False, 0.4) == 16


def test_seeds_needed_says_when_no_count_or_no_effect_would_decide():
    noisy = _estimate(0.001, np.zeros(1000), [-1.0, 0.003, 1.0])
    assert seeds_needed(noisy, False, 0.0) == "> 100"
    assert seeds_needed(_estimate(0.5, np.zeros(1000), [0.0, 0.5, 1.0]), False, 0.5) == "no effect measurable"
    assert seeds_needed(_estimate(1.0, np.zeros(1000)), False, 0.0) is None  # one seed: no seed spread to scale
    untestable = Estimate.not_testable("window holds 1 checkpoint", [1], 1000)
    assert seeds_needed(untestable, False, 0.0) is None


def test_the_p_value_of_a_seeds_t_interval_is_students_one_sided_p():
    # examples add nothing (replicates all at the mean): the interval at every level is the t interval of 1, 2, 3
    estimate = _estimate(2.0, np.full(1000, 2.0), [1.0, 2.0, 3.0])
    by_hand = float(student_t.sf(2.0 / (1.0 / np.sqrt(3)), 2))  # t = 3.464 on 2 degrees of freedom: 0.0371
    assert one_sided_p(estimate, False, ">", 0.0) == pytest.approx(by_hand, abs=1e-6)
    assert one_sided_p(estimate, False, "<", 0.0) == 1.0  # no interval lies below 0


def test_the_p_value_of_one_seeds_percentile_interval_is_the_share_of_replicates_past_the_threshold():
    replicates = np.arange(1000) / 1000  # 0.000 .. 0.999: 10% of them at or below 0.0995
    assert one_sided_p(_estimate(0.5, replicates), False, ">", 0.0995) == pytest.approx(0.1, abs=2e-3)


def test_a_p_value_beyond_what_the_resamples_resolve_follows_a_normal_tail():
    # 1,000 replicates ~ N(5, 1): none at or below 0, so the share of replicates would floor p at 1 / 1,000;
    # beyond 5 replicates a tail the interval is extended normally, and p comes out near Φ(-5) = 2.9e-7
    from statistics import NormalDist

    replicates = 5.0 + np.array([NormalDist().inv_cdf((i + 0.5) / 1000) for i in range(1000)])
    p = one_sided_p(_estimate(5.0, replicates), False, ">", 0.0)
    assert NormalDist().cdf(-5.0) / 2 < p < 2 * NormalDist().cdf(-5.0)


@pytest.mark.parametrize("shift", [-0.9, -0.3, -0.05, 0.0, 0.05, 0.3, 0.9])
def test_a_check_is_replicated_exactly_when_its_p_value_is_below_two_and_a_half_percent(shift):
    rng = np.random.default_rng(3)
    estimate = _estimate(shift, shift + 0.1 * rng.normal(size=1000), shift + 0.3 * rng.normal(size=4))
    for op in (">", "<"):
        decided = verdict(op, 0.0, interval(estimate, False))
        assert (one_sided_p(estimate, False, op, 0.0) < 0.025) == (decided == REPLICATED), (op, shift)


def test_holm_by_hand():
    # m = 4 defined: sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert holm([0.6, 0.5]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def _check(p: float | None, p_opposite: float | None, outcome: str) -> CheckResult:
    return CheckResult(
        label="q",
        side="moe",
        paper="",
        source="",
        op=">",
        threshold=0.0,
        value=0.0,
        interval=(0.0, 0.0),
        verdict=outcome,
        checkpoints={},
        method="",
        magnitudes={},
        shown="",
        threshold_shown="",
        p_value=p,
        p_value_opposite=p_opposite,
    )


def test_holm_over_the_catalogues_family_counts_the_checks_not_in_the_run():
    # 2 of a family of 5: the smaller p is multiplied by 5, not 2 (the others count as p = 1)
    assert holm([0.004, 0.02], family=5) == pytest.approx([0.02, 0.08])
    assert holm([0.004, 0.02]) == pytest.approx([0.008, 0.02])


def test_co_primary_checks_are_one_hypothesis_at_their_larger_p():
    first, second = _check(0.001, 0.999, REPLICATED), _check(0.009, 0.991, REPLICATED)
    first.coprimary = second.coprimary = "stability"
    alone = _check(0.012, 0.988, REPLICATED)
    results = [
        ClaimResult("a", "contrast", "", [first, second], REPLICATED, {}, [0]),
        ClaimResult("b", "moe", "", [alone], REPLICATED, {}, [0]),
    ]
    summary = adjust(results)
    # two hypotheses: the pair at max(0.001, 0.009) = 0.009 · 2 = 0.018, then 0.012 · 1 → max(0.018, 0.012)
    assert first.holm_p == second.holm_p == pytest.approx(0.018) and alone.holm_p == pytest.approx(0.018)
    assert [r.holm_verdict for r in results] == [REPLICATED, REPLICATED] and summary["hypotheses"] == 2


def test_holm_verdicts_over_a_run():
    checks = [
        _check(0.001, 0.999, REPLICATED),
        _check(0.02, 0.98, REPLICATED),
        _check(0.999, 0.001, NOT_REPLICATED),
        _check(None, None, NOT_MEASURED),
    ]
    results = [
        ClaimResult("a", "moe", "", checks[:2], REPLICATED, {}, [0]),
        ClaimResult("b", "moe", "", checks[2:], NOT_REPLICATED, {}, [0]),
    ]
    summary = adjust(results)
    # claimed side: 3 defined, 0.001·3 = 0.003 < 0.025, 0.02·2 = 0.04 > 0.025; opposite side: 0.001·3 = 0.003
    assert [c.holm_verdict for c in checks] == [REPLICATED, INCONCLUSIVE, NOT_REPLICATED, NOT_MEASURED]
    assert checks[1].holm_p == pytest.approx(0.04)
    assert [r.holm_verdict for r in results] == [INCONCLUSIVE, NOT_REPLICATED]
    assert summary == {
        "decides": "holm",
        "family": 3,
        "hypotheses": 3,
        "tests": 2,
        "tests_replicated": 1,
        "tests_replicated_holm": 0,
        "checks": 3,
        "alpha_one_sided": 0.025,
        "expected_false_replications": pytest.approx(0.075),
        "replicated": 2,
        "replicated_holm": 1,
        "not_replicated": 1,
        "not_replicated_holm": 1,
    }
