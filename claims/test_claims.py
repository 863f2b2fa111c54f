"""The paper's findings (claims/catalogue/paper.py; docs/method.md), one test per claim and side,
named `<claim>-<side>`.

A side is `moe` or `dense` (that model's own checks, reading its series only) or `contrast`
(MoE − dense on the same seeds and resamples). A test passes when every check replicates; its
failure message states the numbers. `-k moe` selects the MoE side (never loading the dense
series), `-k contrast` the comparisons, `-k ablate` the ablation claims.
"""

from __future__ import annotations

import pytest

from claims.catalogue.paper import claim_sides


@pytest.mark.parametrize("claim_id, side", [pytest.param(c, s, id=f"{c}-{s}") for c, s in claim_sides()])
def test_claim(check_claim, claim_id, side):
    check_claim(claim_id, side)
