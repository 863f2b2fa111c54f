"""The paper's 14 findings (SPEC.md's catalogue), each a test parametrized over the model family.

A test passes when its claim replicates; its failure message states the numbers. `-k moe` selects
the MoE side, `-k ablate` the ablation claims.
"""
from __future__ import annotations

import pytest

from claims.evaluate import claim_by_id


def families(claim_id: str) -> list:
    return [pytest.param(f, id=f) for f in claim_by_id(claim_id).families]


@pytest.mark.parametrize("family", families("ffn-concentration"))
def test_ffn_concentration(check_claim, family):
    check_claim("ffn-concentration", family)


@pytest.mark.parametrize("family", families("ffn-stability-early"))
def test_ffn_stability_early(check_claim, family):
    check_claim("ffn-stability-early", family)


@pytest.mark.parametrize("family", families("ffn-stability-late"))
def test_ffn_stability_late(check_claim, family):
    check_claim("ffn-stability-late", family)


@pytest.mark.parametrize("family", families("ffn-stability-final"))
def test_ffn_stability_final(check_claim, family):
    check_claim("ffn-stability-final", family)


@pytest.mark.parametrize("family", families("ffn-explore-refine-consolidate"))
def test_ffn_explore_refine_consolidate(check_claim, family):
    check_claim("ffn-explore-refine-consolidate", family)


@pytest.mark.parametrize("family", families("attn-stability"))
def test_attn_stability(check_claim, family):
    check_claim("attn-stability", family)


@pytest.mark.parametrize("family", families("attn-concentration"))
def test_attn_concentration(check_claim, family):
    check_claim("attn-concentration", family)


@pytest.mark.parametrize("family", families("ffn-layer-consolidation"))
def test_ffn_layer_consolidation(check_claim, family):
    check_claim("ffn-layer-consolidation", family)


@pytest.mark.parametrize("family", families("attn-layer-consolidation"))
def test_attn_layer_consolidation(check_claim, family):
    check_claim("attn-layer-consolidation", family)


@pytest.mark.parametrize("family", families("moe-full-run-consolidation"))
def test_moe_full_run_consolidation(check_claim, family):
    check_claim("moe-full-run-consolidation", family)


@pytest.mark.parametrize("family", families("early-lock-in"))
def test_early_lock_in(check_claim, family):
    check_claim("early-lock-in", family)


@pytest.mark.parametrize("family", families("ablate-top1-head"))
def test_ablate_top1_head(check_claim, family):
    check_claim("ablate-top1-head", family)


@pytest.mark.parametrize("family", families("ablate-top10-heads"))
def test_ablate_top10_heads(check_claim, family):
    check_claim("ablate-top10-heads", family)


@pytest.mark.parametrize("family", families("ablate-top1pct-ffn"))
def test_ablate_top1pct_ffn(check_claim, family):
    check_claim("ablate-top1pct-ffn", family)
