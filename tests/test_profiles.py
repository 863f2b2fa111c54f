"""The claims' layer-profile statistics on hand-made profiles: σ_norm, σ_rel's largest layer share, the lock-in ρ."""

from __future__ import annotations

import numpy as np
import pytest

from claims.statistics.profiles import lock_in_rho_rows, sigma_norm_rows, sigma_rel_largest_share_rows
from lpi_core.metrics import rho_avg_rows, sigma_rel_rows


def test_sigma_norm_by_hand_and_where_sigma_rel_is_set_by_one_layer():
    # two checkpoints, three layers; layer 2's mean is 0.01, so σ_rel's term for it is 100 times its std
    profiles = np.array([[[1.0, 2.0, 0.00], [3.0, 2.0, 0.02]]])
    stds = np.array([1.0, 0.0, 0.01])  # population std over the two checkpoints
    mean_abs = np.abs(profiles).mean()  # (1 + 2 + 0 + 3 + 2 + 0.02) / 6
    assert sigma_norm_rows(profiles)[0] == pytest.approx(stds.mean() / mean_abs)
    terms = stds / np.array([2.0, 2.0, 0.01])  # 0.5, 0, 1.0
    assert sigma_rel_rows(profiles)[0] == pytest.approx(terms.mean())
    assert sigma_rel_largest_share_rows(profiles)[0] == pytest.approx(1.0 / 1.5)  # layer 2 makes 2/3 of σ_rel
    assert np.isnan(sigma_norm_rows(np.zeros((1, 2, 3))))[0]


def test_lock_in_rho_compares_the_first_profile_with_each_later_one():
    first = np.array([1.0, 2.0, 3.0])
    same, reversed_ = first * 2 + 1, first[::-1]  # ρ = 1 and ρ = -1 against the first
    profiles = np.stack([first, same, reversed_])[None]
    assert lock_in_rho_rows(profiles)[0] == pytest.approx(
        0.0
    )  # (1 + -1) / 2; ρ_avg of neighbours would be (1 - 1) / 2 too
    drifting = np.stack([first, np.array([1.0, 3.0, 2.0]), np.array([3.0, 1.0, 2.0])])[None]
    # against the first: ρ(123, 132) = 0.5, ρ(123, 312) = -0.5; neighbours would give 0.5 and ρ(132, 312) = -0.5 as well
    assert lock_in_rho_rows(drifting)[0] == pytest.approx(0.0)
    stays = np.stack([first, first + 0.1 * np.array([1.0, -1.0, 1.0]), first + 0.1 * np.array([-1.0, 1.0, -1.0])])[None]
    assert lock_in_rho_rows(stays)[0] > 0.95
    # a profile that flips once and then stays: its neighbours mostly agree (ρ_avg 1/3), but it did not
    # stay as formed (-1/3)
    flips = np.stack([first, first, reversed_, reversed_])[None]
    assert rho_avg_rows(flips)[0] == pytest.approx(1 / 3) and lock_in_rho_rows(flips)[0] == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="at least 2 checkpoints"):
        lock_in_rho_rows(first[None, None])
